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
}, open("crates/gs-lora-train/tests/fixtures/official_rng.json", "w"))
print("wrote crates/gs-lora-train/tests/fixtures/official_rng.json", file=sys.stderr)
