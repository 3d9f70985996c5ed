"""Makes crates/gs-lora-train/tests/fixtures/coco_ap.json: COCO box AP computed by pycocotools'
COCOeval (area "all", maxDets 100, IoU 0.50:0.05:0.95) on seeded random cases, for the Rust
`average_precision` to match.

Cases: several images and classes with jittered copies of the ground truth, duplicates, false
positives, a class without ground truth (left out of the mean), an image with more than 100
detections of one class (the cut), and scores with ties broken by order. No crowd boxes: the
crowd protocol is issue 19's (row 14).

    pip install pycocotools numpy && python3 tools/make_coco_ap_fixture.py
"""

import contextlib
import io
import json
import os

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

OUT = os.path.join(
    os.path.dirname(__file__), "..", "crates", "gs-lora-train", "tests", "fixtures", "coco_ap.json"
)


def random_case(seed, images, classes, boxes_per_image, crowded_image=None):
    rng = np.random.RandomState(seed)
    truths, detections = [], []
    for image in range(images):
        for _ in range(rng.randint(1, boxes_per_image + 1)):
            label = int(rng.randint(0, classes - 1))  # the last class never has ground truth
            x0, y0 = rng.uniform(0, 80, size=2)
            w, h = rng.uniform(5, 40, size=2)
            truths.append({"image": image, "label": label, "bbox": [x0, y0, x0 + w, y0 + h]})
            for _ in range(rng.randint(0, 3)):  # jittered hits and duplicates
                j = rng.normal(0, 0.15 * min(w, h), size=4)
                box = [x0 + j[0], y0 + j[1], x0 + w + j[2], y0 + h + j[3]]
                detections.append(
                    {"image": image, "label": label, "score": float(rng.uniform()), "bbox": box}
                )
        for _ in range(rng.randint(0, 4)):  # false positives, any class
            x0, y0 = rng.uniform(0, 80, size=2)
            w, h = rng.uniform(5, 40, size=2)
            detections.append(
                {
                    "image": image,
                    "label": int(rng.randint(0, classes)),
                    "score": float(rng.uniform()),
                    "bbox": [x0, y0, x0 + w, y0 + h],
                }
            )
    if crowded_image is not None:
        truth = next(t for t in truths if t["image"] == crowded_image)
        x0, y0, x1, y1 = truth["bbox"]
        for k in range(130):  # more than maxDets of one class on one image
            shift = rng.uniform(-3, 3)
            detections.append(
                {
                    "image": crowded_image,
                    "label": truth["label"],
                    "score": float(rng.uniform(0, 0.5) if k else 0.01),
                    "bbox": [x0 + shift, y0, x1 + shift, y1],
                }
            )
    # Scores on a coarse grid: ties are frequent.
    for d in detections:
        d["score"] = round(d["score"], 2)
    return truths, detections


def coco_ap(truths, detections, classes, cat_ids):
    images = sorted({t["image"] for t in truths} | {d["image"] for d in detections})
    gt = {
        "images": [{"id": i, "width": 200, "height": 200} for i in images],
        "categories": [{"id": c} for c in range(classes)],
        "annotations": [
            {
                "id": k + 1,
                "image_id": t["image"],
                "category_id": t["label"],
                "bbox": [t["bbox"][0], t["bbox"][1], t["bbox"][2] - t["bbox"][0], t["bbox"][3] - t["bbox"][1]],
                "area": (t["bbox"][2] - t["bbox"][0]) * (t["bbox"][3] - t["bbox"][1]),
                "iscrowd": 0,
            }
            for k, t in enumerate(truths)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        dets = coco.loadRes(
            [
                {
                    "image_id": d["image"],
                    "category_id": d["label"],
                    "score": d["score"],
                    "bbox": [d["bbox"][0], d["bbox"][1], d["bbox"][2] - d["bbox"][0], d["bbox"][3] - d["bbox"][1]],
                }
                for d in detections
            ]
        )
        evaluator = COCOeval(coco, dets, "bbox")
        evaluator.params.catIds = cat_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return [100.0 * float(stats[0]), 100.0 * float(stats[1]), 100.0 * float(stats[2])]


def main():
    cases = []
    for seed, images, classes, per_image, crowded in [
        (0, 6, 4, 3, None),
        (1, 10, 5, 5, 2),
        (2, 3, 3, 8, 0),
    ]:
        truths, detections = random_case(seed, images, classes, per_image, crowded)
        for cat_ids in [list(range(classes)), [0, 1]]:
            ap, ap50, ap75 = coco_ap(truths, detections, classes, cat_ids)
            cases.append(
                {
                    "seed": seed,
                    "classes": cat_ids,
                    "truths": truths,
                    "detections": detections,
                    "ap": ap,
                    "ap50": ap50,
                    "ap75": ap75,
                }
            )
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"generator": "pycocotools COCOeval (bbox, area all, maxDets 100)", "cases": cases}, f)
    for case in cases:
        print(case["seed"], case["classes"], round(case["ap"], 4), round(case["ap50"], 4), round(case["ap75"], 4))


if __name__ == "__main__":
    main()
