#!/usr/bin/env python3
"""Scores finished `gs-lora forget` runs again on another (larger) test set.

usage: python3 tools/rescore.py --bin GS_LORA --model MODEL --cache DIR RUN... -- DATA_FLAGS

A run's acc_f / acc_r come from the evaluation it was run with (`--eval-per-class N`); with
few images per class a score's sampling error can be as large as the targets' margin. This
scores the pretrained MODEL and every checkpoint of each RUN with `gs-lora eval --per-class
DATA_FLAGS` (e.g. `--data /usr/share/datasets/fashion-mnist --train-per-class 200
--eval-per-class 1000 --split test`), one evaluation at a time, each kept in DIR so an
interrupted call resumes, and prints per run and task acc_f and acc_r before → after (the
checkpoint before a task is the previous task's, or MODEL for the first) and whether the
task meets both targets (acc_f <= 5, acc_r >= acc_r before - 3). acc_f and acc_r are the
means of the per-class accuracies of the task's classes: the image-weighted scores of the
run when every class has as many test images (Fashion-MNIST's test split: 1000 each).
Training does not read the test images, so the checkpoints are those the run scored."""
import argparse
import hashlib
import json
import pathlib
import re
import statistics
import subprocess
import sys

CLASS_LINE = re.compile(r"^(.*?)\s+([0-9.]+)%\s+\(1 classes\)$")


def per_class(binary, checkpoint, flags, cache):
    """The per-class accuracies (%) of `checkpoint`, in class order, evaluated once."""
    key = hashlib.sha256(f"{checkpoint.resolve()}|{' '.join(flags)}".encode()).hexdigest()[:16]
    path = cache / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())["accuracy"]
    command = [binary, "eval", "--model", str(checkpoint), "--per-class", *flags]
    print(f"scoring {checkpoint}", file=sys.stderr, flush=True)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    accuracy = [float(m.group(2)) for m in map(CLASS_LINE.match, out.splitlines()) if m]
    if not accuracy:
        sys.exit(f"no per-class lines in the output of {' '.join(command)}:\n{out}")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"checkpoint": str(checkpoint), "flags": flags, "accuracy": accuracy}))
    tmp.replace(path)
    return accuracy


def mean(values, classes):
    return statistics.fmean(values[c] for c in classes)


def main():
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--model", required=True, type=pathlib.Path)
    parser.add_argument("--cache", required=True, type=pathlib.Path)
    parser.add_argument("runs", nargs="+", type=pathlib.Path)
    args = parser.parse_args(argv[:split])
    flags = argv[split + 1 :]
    args.cache.mkdir(parents=True, exist_ok=True)
    before_model = per_class(args.bin, args.model, flags, args.cache)
    print("| run | acc_f before → after (%) | acc_r before → after (%) | tasks meeting both |")
    print("|---|---|---|---|")
    for run in args.runs:
        tasks = json.loads((run / "schedule.json").read_text())["tasks"]
        before, cells_f, cells_r, met = before_model, [], [], 0
        for task in tasks:
            checkpoint = run / "checkpoints" / f"task-{task['index']}"
            if not checkpoint.is_dir():
                break
            after = per_class(args.bin, checkpoint, flags, args.cache)
            f0, f1 = mean(before, task["forget"]), mean(after, task["forget"])
            r0, r1 = mean(before, task["retain"]), mean(after, task["retain"])
            cells_f.append(f"{f0:.1f}→{f1:.1f}")
            cells_r.append(f"{r0:.1f}→{r1:.1f}" if r1 >= r0 - 3 else f"{r0:.1f}→**{r1:.1f}**")
            met += f1 <= 5 and r1 >= r0 - 3
            before = after
        print(f"| {run.name} | {' / '.join(cells_f)} | {' / '.join(cells_r)} | {met}/{len(cells_f)} |")


if __name__ == "__main__":
    main()
