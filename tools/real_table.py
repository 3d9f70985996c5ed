#!/usr/bin/env python3
"""The real-data tables of docs/results.md from `gs-lora forget` run directories.

usage: python3 tools/real_table.py ROOT
ROOT holds run directories named DATASET-… (DATASET is `om` for Omniglot, `fm` for
Fashion-MNIST); the method, replay and seed are read from each run's config.json. Unfinished
runs are left out. Prints, per dataset, method and replay, the mean ± std over seeds of each
task's acc_f and acc_r − acc_r before, and how many tasks meet the targets (acc_f <= 5,
acc_r >= acc_r before - 3), then one row per run. The `other` column names settings away from
the library defaults that the other columns do not show (learning rate, GS-LoRA++'s w_r when
not its default: 10 with a few-shot replay, 0 otherwise). Runs on different machines (CPU, SIMD level,
fused ops: each task's `machine` in results.json) are grouped apart: their float orders differ."""
import json
import pathlib
import statistics
import sys

DATASETS = {"om": "Omniglot", "fm": "Fashion-MNIST"}


def replay_name(config):
    kind, value = config["replay"]["kind"], config["replay"]["value"]
    name = {"few-shot": f"{value}-shot", "stratified": f"{value:g} per class"}.get(
        kind, f"{value:g} of the group (official)"
    )
    floor = config.get("min_replay", 0)
    if kind == "stratified" and floor > 1:
        name += f", at least {floor}"
    forget = config.get("forget_fraction")
    if forget is None:
        return name
    return f"{name}, forget {'all' if forget == 1 else f'{forget:g} per class'}"


def few_shot_recipe(config):
    """GS-LoRA++ with a few-shot replay and the per-sample bound (`ForgetConfig::few_shot_recipe`),
    where the method's own form is log-odds and its own w_r 10."""
    few_shot = config["replay"]["kind"] == "few-shot"
    return config["method"] == "gs-lora++" and few_shot and bool(config.get("bnd_per_sample"))


def bound_name(config):
    bnd = config["bnd"]
    value = "ln C + 1" if bnd is None else f"{bnd:g}"
    # Earlier files have no form (the cross-entropy); null is the method's own form.
    loss = config.get("forget_loss", "cross-entropy")
    if loss is None:
        loss = "log-odds" if few_shot_recipe(config) else "cross-entropy"
    form = "" if loss == "cross-entropy" else f"{loss}, "
    return f"{form}{value} {'per sample' if config.get('bnd_per_sample') else 'batch mean'}"


def other_settings(config):
    """Settings that differ from the library defaults the other columns do not show."""
    changed = []
    if config["lr"] != 1e-2:
        changed.append(f"lr {config['lr']:g}")
    # Null is the method's own prototype loss; before it, `--few-shot` set w_r 10 in the file.
    default = 10 if few_shot_recipe(config) else 0
    retain_weight = (config.get("prototype") or {"retain_weight": default})["retain_weight"]
    if config["method"] == "gs-lora++" and retain_weight != default:
        changed.append(f"w_r {retain_weight:g}")
    return ", ".join(changed) or "-"


def float_order(tasks):
    machines = {json.dumps(t.get("machine"), sort_keys=True) for t in tasks}
    if machines != {json.dumps(tasks[0].get("machine"), sort_keys=True)}:
        return "mixed (resumed elsewhere)"
    machine = tasks[0].get("machine")
    if machine is None:
        return "not recorded"
    return f"{machine['cpu']}, {machine['simd']}, fused {'on' if machine['fused'] else 'off'}"


def spread(values):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


root = pathlib.Path(sys.argv[1])
groups, rows = {}, []
for results in sorted(root.glob("*/results.json")):
    run = results.parent
    config = json.loads((run / "config.json").read_text())
    tasks = json.loads(results.read_text())
    if len(tasks) < config["tasks"]:
        continue  # still running
    dataset = DATASETS[run.name.split("-")[0]]
    key = (
        dataset,
        config["method"],
        replay_name(config),
        bound_name(config),
        f"{config['epochs']} / {config['batch_size']}",
        other_settings(config),
        float_order(tasks),
    )
    acc_f = [t["acc_f"] for t in tasks]
    d_r = [t["acc_r"] - t["acc_r_before"] for t in tasks]
    met = sum(f <= 5.0 and r >= -3.0 for f, r in zip(acc_f, d_r))
    groups.setdefault(key, []).append((acc_f, d_r, met))
    rows.append(
        f"| {' | '.join(key)} | {config['seed']} | "
        + " / ".join(f"{t['acc_f_before']:.1f}→{t['acc_f']:.1f}" for t in tasks)
        + " | "
        + " / ".join(f"{t['acc_r_before']:.1f}→{t['acc_r']:.1f}" for t in tasks)
        + f" | {met}/{len(tasks)} |"
    )

print("| dataset | method | replay | bound | epochs / batch | other | machine | seeds "
      "| acc_f per task (mean ± std, %) | acc_r − before per task (mean ± std, points) "
      "| tasks meeting both |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for key, runs in groups.items():
    tasks = range(len(runs[0][0]))
    acc_f = " / ".join(spread([run[0][t] for run in runs]) for t in tasks)
    d_r = " / ".join(spread([run[1][t] for run in runs]) for t in tasks)
    met = sum(run[2] for run in runs)
    print(f"| {' | '.join(key)} | {len(runs)} | {acc_f} | {d_r} | "
          f"{met}/{len(runs) * len(tasks)} |")
print()
print("| dataset | method | replay | bound | epochs / batch | other | machine | seed "
      "| acc_f before → after (%) | acc_r before → after (%) | tasks meeting both |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows))
