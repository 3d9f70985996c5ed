"""Writes crates/gs-lora-train/tests/fixtures/official_rng.json: what CPython's `random` and
NumPy's legacy `RandomState` draw for a set of seeds (shuffles, samples, choices, random()),
the reference for gs_lora_train::protocol::{PythonRandom, NumpyRandomState}.
Usage: python3 tools/make_rng_fixture.py (CPython 3.8+ and NumPy)."""
import json, random, sys, platform
import numpy as np

python = []
for seed in [0, 1, 42, 1337, -7, 2**40 + 3, 2**64 + 17]:
    case = {"seed": str(seed)}  # as text: beyond 64 bits, JSON readers round it
    rng = random.Random(seed)
    case["random"] = [rng.random() for _ in range(5)]
    case["shuffle"] = {}
    for n in [1, 2, 10, 100, 1000]:
        rng = random.Random(seed)
        x = list(range(n))
        rng.shuffle(x)
        case["shuffle"][str(n)] = x
    case["sample"] = []
    for n, k in [(5, 5), (10, 3), (21, 5), (22, 5), (30, 6), (100, 10), (1000, 50), (60, 40)]:
        rng = random.Random(seed)
        case["sample"].append({"n": n, "k": k, "picked": rng.sample(range(n), k)})
    rng = random.Random(seed)
    case["choices"] = rng.choices(range(7), k=20)
    python.append(case)

# The official few-shot draw (PROTOCOL §0.3; `util/utils.py` few-shot subset): after
# `random.seed(1337); random.shuffle(list(range(C)))`, per task the forget classes then the
# remaining ones, each class in ascending label order `random.sample(its samples, k)`, then one
# `random.shuffle` of the group's picks. Task t forgets order[C-K-tK : C-tK] and keeps
# order[0 : C-K-tK]. Class c owns samples 100c .. 100c + 4 + c % 3.
C, K, T, k = 12, 3, 3, 2
rng = random.Random(1337)
order = list(range(C))
rng.shuffle(order)
samples = {c: [100 * c + j for j in range(4 + c % 3)] for c in range(C)}
tasks = []
for t in range(T):
    groups = {}
    for name, classes in [("forget", order[C - K - t * K:C - t * K]), ("retain", order[:C - K - t * K])]:
        picks = []
        for c in sorted(classes):
            picks.extend(rng.sample(samples[c], k))
        rng.shuffle(picks)
        groups[name] = sorted(picks)
    tasks.append(groups)
few_shot = {"seed": 1337, "classes": C, "forget_per_task": K, "tasks": T, "k": k,
            "order": order, "samples": tasks}

numpy = []
coco_ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
assert len(coco_ids) == 80
for seed in [0, 1, 123, 2**32 - 1]:
    case = {"seed": seed, "shuffle": {}}
    for n in [1, 2, 10, 80, 1000]:
        state = np.random.RandomState(seed)
        x = np.arange(n)
        state.shuffle(x)
        case["shuffle"][str(n)] = x.tolist()
    np.random.seed(seed)
    ids = list(coco_ids)
    np.random.shuffle(ids)
    case["coco_ids"] = ids
    numpy.append(case)

json.dump({
    "made_with": f"CPython {platform.python_version()}, NumPy {np.__version__}",
    "coco_ids": coco_ids,
    "python": python,
    "numpy": numpy,
    "few_shot": few_shot,
}, open("crates/gs-lora-train/tests/fixtures/official_rng.json", "w"))
print("wrote crates/gs-lora-train/tests/fixtures/official_rng.json", file=sys.stderr)
