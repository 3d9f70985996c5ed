#!/usr/bin/env python3
"""The seeds × fused-ops table of docs/results.md from the runs of the embedded main job.

usage: python3 tools/seed_table.py ROOT
ROOT holds s-S-on/ and s-S-off/ run directories (`forget_cub --seed S --out ROOT/s-S-on`, and
`--fused off` into s-S-off with the on run's pretrained/ copied in) and their logs s-S-*.log
(the pretraining accuracy is read from s-S-pretrain.log, else s-S-on.log). Unfinished runs are
left out.
Prints the Markdown rows and the counts against the targets (acc_f <= 5, acc_r >= before - 3)."""
import json
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
runs = sorted(root.glob("s-*-o*/results.json"), key=lambda p: (int(p.parent.name.split("-")[1]), p.parent.name.endswith("off")))
rows, tasks_f, tasks_r, passed = [], [], [], 0
for results in runs:
    name = results.parent.name
    seed, fused = name.split("-")[1], name.split("-")[2]
    tasks = json.loads(results.read_text())
    if len(tasks) < json.loads((results.parent / "config.json").read_text())["tasks"]:
        continue  # still running
    log = next((p for p in [root / f"s-{seed}-pretrain.log", root / f"s-{seed}-on.log"] if p.exists()), root / f"s-{seed}-on.log")
    found = re.findall(r"pretrain epoch \d+/\d+ .*validation accuracy ([\d.]+)%", log.read_text()) if log.exists() else []
    pretrained = f"{float(found[-1]):.2f}%" if found else "cached"
    acc_f = [t["acc_f"] for t in tasks]
    d_r = [t["acc_r"] - t["acc_r_before"] for t in tasks]
    acc_o = ["-" if t["acc_o"] is None else f"{t['acc_o']:.1f}" for t in tasks]
    zero = [str(len(t["zero_groups"])) for t in tasks]
    which = [",".join(map(str, t["zero_groups"])) or "-" for t in tasks]
    ok_f, ok_r = all(a <= 5 for a in acc_f), all(d >= -3 for d in d_r)
    passed += ok_f and ok_r
    tasks_f += acc_f
    tasks_r += d_r
    yes = lambda ok: "yes" if ok else "**no**"
    rows.append(f"| {seed} | {fused} | {pretrained} | {' / '.join(f'{a:.1f}' for a in acc_f)} | "
                f"{' / '.join(f'{d:+.1f}' for d in d_r)} | {' / '.join(acc_o)} | "
                f"{' / '.join(zero)} ({' / '.join(which)}) | {yes(ok_f)} | {yes(ok_r)} |")
print("| seed | fused | pretrained (val) | acc_f per task (%) | acc_r − acc_r before (points) | acc_o per task (%) | zeroed blocks (which) | acc_f ≤ 5 | acc_r ≥ before − 3 |")
print("|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows))
n = len(tasks_f)
print(f"\n{passed} of {len(rows)} runs meet every target; over {n} tasks acc_f <= 5 in "
      f"{sum(a <= 5 for a in tasks_f)} (mean {sum(tasks_f) / max(n, 1):.1f}, worst {max(tasks_f, default=0):.1f}), "
      f"acc_r >= before - 3 in {sum(d >= -3 for d in tasks_r)} (mean {sum(tasks_r) / max(n, 1):+.1f}, worst {min(tasks_r, default=0):+.1f})")
