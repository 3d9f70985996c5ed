"""Makes crates/gs-lora-train/tests/fixtures/coco_ap.json: COCO box AP computed by pycocotools'
COCOeval (area "all", maxDets 100, IoU 0.50:0.05:0.95) on seeded random cases, for the Rust
`average_precision` to match.

Cases: several images and classes with jittered copies of the ground truth, duplicates, false
positives, a class without ground truth (left out of the mean), an image with more than 100
detections of one class (the cut), scores with ties broken by order, crowd regions (`iscrowd`,
with detections inside them, which COCOeval ignores, and a class whose only ground truth is a
crowd region), and a group scored on the images holding its annotations only (`imgIds`, as
the official detection evaluation; `group_images` in the fixture).

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


def random_case(seed, images, classes, boxes_per_image, crowded_image=None, crowd_images=0,
                crowd_only_class=None, strays=False):
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
    for image in range(crowd_images):  # a crowd region over part of the image, hit by detections
        label = int(rng.randint(0, classes - 1))
        x0, y0 = rng.uniform(0, 40, size=2)
        w, h = rng.uniform(30, 60, size=2)
        truths.append({"image": image, "label": label, "bbox": [x0, y0, x0 + w, y0 + h], "crowd": True})
        for _ in range(rng.randint(1, 5)):
            dx, dy = rng.uniform(0, 0.6 * w), rng.uniform(0, 0.6 * h)
            s = rng.uniform(5, 0.4 * min(w, h))
            box = [x0 + dx, y0 + dy, x0 + dx + s, y0 + dy + s]
            detections.append({"image": image, "label": label, "score": float(rng.uniform()), "bbox": box})
    if crowd_only_class is not None:  # its only ground truth is a crowd region
        truths.append({"image": 0, "label": crowd_only_class, "bbox": [10, 10, 60, 60], "crowd": True})
        detections.append({"image": 0, "label": crowd_only_class, "score": 0.5, "bbox": [20, 20, 40, 40]})
    if strays:  # confident class-0 detections on the images without class-0 ground truth
        for image in sorted(set(range(images)) - {t["image"] for t in truths if t["label"] == 0}):
            x0, y0 = rng.uniform(0, 80, size=2)
            box = [x0, y0, x0 + 20, y0 + 20]
            detections.append({"image": image, "label": 0, "score": 0.9, "bbox": box})
    # Scores on a coarse grid: ties are frequent.
    for d in detections:
        d["score"] = round(d["score"], 2)
    return truths, detections


def coco_ap(truths, detections, classes, cat_ids, group_images=False):
    images = sorted({t["image"] for t in truths} | {d["image"] for d in detections})
    scored = images
    if group_images:
        scored = sorted({t["image"] for t in truths if t["label"] in cat_ids})
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
                "iscrowd": int(t.get("crowd", False)),
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
        evaluator.params.imgIds = scored
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return [100.0 * float(stats[0]), 100.0 * float(stats[1]), 100.0 * float(stats[2])]


def main():
    cases = []
    for seed, images, classes, per_image, crowded, crowd_images, crowd_only, strays, groups in [
        (0, 6, 4, 3, None, 0, None, False, [False]),
        (1, 10, 5, 5, 2, 0, None, False, [False]),
        (2, 3, 3, 8, 0, 0, None, False, [False]),
        (3, 8, 5, 4, None, 4, 4, False, [False, True]),
        (4, 12, 6, 2, None, 0, None, True, [False, True]),
    ]:
        truths, detections = random_case(
            seed, images, classes, per_image, crowded, crowd_images, crowd_only, strays
        )
        for cat_ids in [list(range(classes)), [0, 1]]:
            for group_images in groups:
                ap, ap50, ap75 = coco_ap(truths, detections, classes, cat_ids, group_images)
                cases.append(
                    {
                        "seed": seed,
                        "classes": cat_ids,
                        "group_images": group_images,
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
        print(case["seed"], case["classes"], case["group_images"], round(case["ap"], 4), round(case["ap50"], 4), round(case["ap75"], 4))


if __name__ == "__main__":
    main()
