#!/usr/bin/env python3
"""Markdown tables of forgetting runs: every results.json under the given directories.

usage: python3 tools/results_md.py runs/real [more run roots]
"""
import json
import pathlib
import sys


def fmt(value):
    return "-" if value is None else f"{value:.2f}"


for root in sys.argv[1:]:
    for results in sorted(pathlib.Path(root).rglob("results.json")):
        run = results.parent
        config = json.loads((run / "config.json").read_text())
        tasks = json.loads(results.read_text())
        replay = config["replay"]
        print(f"\n**{run}**: {config['method']}, replay {replay['kind']} {replay['value']}, "
              f"{config['epochs']} epochs, BND {config['bnd']}\n")
        print("| task | acc_f before | acc_r before | acc_f | acc_r | acc_o | H | seconds |")
        print("|---|---|---|---|---|---|---|---|")
        for t in tasks:
            print(f"| {t['task']} | {fmt(t['acc_f_before'])} | {fmt(t['acc_r_before'])} | "
                  f"{fmt(t['acc_f'])} | {fmt(t['acc_r'])} | {fmt(t['acc_o'])} | "
                  f"{fmt(t['h_mean'])} | {t['seconds']:.0f} |")
