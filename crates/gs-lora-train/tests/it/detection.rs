//! Detection pieces against hand-computed values: box overlaps, the assignment solver (against
//! brute force over all permutations), the matcher's costs, COCO-style AP, and reading COCO
//! annotations.

use gs_lora_train::detection::{
    CocoAnnotations, Detection, GroundTruth, HungarianMatcher, Target, average_precision, corners,
    generalized_iou, group_average_precision, iou, linear_sum_assignment,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Hand-computed overlaps and precisions agree to rounding.
fn close(found: f64, expected: f64) {
    crate::common::close(found, expected, 1e-9);
}

#[test]
fn overlaps_match_hand_computed_values() {
    let (a, b) = ([0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]);
    close(iou(a, b), 1.0 / 7.0);
    // Hull [0, 0, 3, 3] has area 9, the union 7.
    close(generalized_iou(a, b), 1.0 / 7.0 - 2.0 / 9.0);
    // Disjoint: IoU 0, GIoU −(hull − union) / hull = −(16 − 2) / 16 with a = [0,0,1,1], b = [3,3,4,4].
    close(
        generalized_iou([0.0, 0.0, 1.0, 1.0], [3.0, 3.0, 4.0, 4.0]),
        -14.0 / 16.0,
    );
    close(iou(a, a), 1.0);
    assert_eq!(corners([0.5, 0.5, 0.2, 0.4]), [0.4, 0.3, 0.6, 0.7]);
}

/// The least total cost over every assignment, by enumerating permutations.
fn brute_force(cost: &[f64], rows: usize, cols: usize) -> f64 {
    fn go(cost: &[f64], cols: usize, row: usize, rows: usize, used: &mut Vec<bool>) -> f64 {
        if row == rows {
            return 0.0;
        }
        let mut best = f64::INFINITY;
        for c in 0..cols {
            if !used[c] {
                used[c] = true;
                best = best.min(cost[row * cols + c] + go(cost, cols, row + 1, rows, used));
                used[c] = false;
            }
        }
        best
    }
    if rows <= cols {
        go(cost, cols, 0, rows, &mut vec![false; cols])
    } else {
        let transposed: Vec<f64> = (0..cols)
            .flat_map(|c| (0..rows).map(move |r| (r, c)))
            .map(|(r, c)| cost[r * cols + c])
            .collect();
        go(&transposed, rows, 0, cols, &mut vec![false; rows])
    }
}

#[test]
fn assignment_is_optimal_on_random_rectangular_matrices() {
    // scipy's documented example: rows 0, 1, 2 take columns 1, 0, 2 for a total of 5.
    let cost = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
    assert_eq!(
        linear_sum_assignment(&cost, 3, 3).expect("valid input"),
        vec![(0, 1), (1, 0), (2, 2)]
    );

    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..200 {
        let (rows, cols) = (rng.random_range(1..6), rng.random_range(1..6));
        let cost: Vec<f64> = (0..rows * cols)
            .map(|_| rng.random_range(-5.0..5.0))
            .collect();
        let pairs = linear_sum_assignment(&cost, rows, cols).expect("valid input");
        assert_eq!(pairs.len(), rows.min(cols));
        let mut seen_rows: Vec<usize> = pairs.iter().map(|p| p.0).collect();
        let mut seen_cols: Vec<usize> = pairs.iter().map(|p| p.1).collect();
        seen_rows.dedup();
        seen_cols.sort_unstable();
        seen_cols.dedup();
        assert_eq!(
            (seen_rows.len(), seen_cols.len()),
            (pairs.len(), pairs.len()),
            "one-to-one"
        );
        let total: f64 = pairs.iter().map(|&(r, c)| cost[r * cols + c]).sum();
        close(total, brute_force(&cost, rows, cols));
    }
    assert!(linear_sum_assignment(&[1.0, f64::NAN], 1, 2).is_err());
    assert!(linear_sum_assignment(&[1.0, 2.0, 3.0], 2, 2).is_err());
}

#[test]
fn matcher_costs_follow_the_reference_formula() {
    let matcher = HungarianMatcher::default();
    // One query with logits (0, ln 3) for two classes, so p(class 1) = 0.75.
    let logits = [0.0f32, 3.0f32.ln()];
    let bbox = [0.5, 0.5, 0.2, 0.2];
    let target = Target {
        label: 1,
        bbox: [0.6, 0.5, 0.2, 0.2],
    };
    let cost = matcher
        .cost(&logits, &[bbox], &[target])
        .expect("valid input");
    let p: f64 = 0.75;
    let class =
        0.25 * (1.0 - p).powi(2) * -(p + 1e-8).ln() - 0.75 * p.powi(2) * -(1.0 - p + 1e-8).ln();
    let l1 = 0.1;
    // Boxes [0.4, 0.4, 0.6, 0.6] and [0.5, 0.4, 0.7, 0.6]: intersection 0.02, union 0.06,
    // hull 0.06, so GIoU = IoU = 1/3.
    let expected = 2.0 * class + 5.0 * l1 - 2.0 / 3.0;
    assert!(
        (cost[0] - expected).abs() < 1e-6,
        "{} vs {expected}",
        cost[0]
    );

    // Two queries, two targets: each query is matched to the target it sits on.
    let boxes = [[0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1]];
    let targets = [
        Target {
            label: 0,
            bbox: [0.8, 0.8, 0.1, 0.1],
        },
        Target {
            label: 0,
            bbox: [0.2, 0.2, 0.1, 0.1],
        },
    ];
    let pairs = matcher
        .match_queries(&[0.0; 4], &boxes, &targets)
        .expect("valid input");
    assert_eq!(pairs, vec![(0, 1), (1, 0)]);
    assert!(
        matcher
            .match_queries(&[0.0; 4], &boxes, &[])
            .expect("valid input")
            .is_empty()
    );
    let error = matcher
        .cost(
            &[0.0; 4],
            &boxes,
            &[Target {
                label: 2,
                bbox: [0.5; 4],
            }],
        )
        .expect_err("label 2 of 2 classes");
    assert!(error.to_string().contains("label 2"), "{error}");
}

fn gt(image: usize, label: usize, bbox: [f64; 4]) -> GroundTruth {
    GroundTruth {
        image,
        label,
        bbox,
        crowd: false,
    }
}

fn det(image: usize, label: usize, score: f64, bbox: [f64; 4]) -> Detection {
    Detection {
        image,
        label,
        score,
        bbox,
    }
}

#[test]
fn average_precision_matches_hand_computed_cases() {
    let square = [0.0, 0.0, 10.0, 10.0];
    let elsewhere = [50.0, 50.0, 60.0, 60.0];

    // Perfect detections in two images.
    let truths = [gt(0, 0, square), gt(1, 0, elsewhere)];
    let perfect = [det(0, 0, 0.9, square), det(1, 0, 0.8, elsewhere)];
    let ap = average_precision(&perfect, &truths, &[0]).expect("valid input");
    close(ap.ap, 100.0);

    // A confident miss ranked above the hit: precision 1/2 at recall 1 for every recall point.
    let truths = [gt(0, 0, square)];
    let ranked = [det(0, 0, 0.9, elsewhere), det(0, 0, 0.5, square)];
    let ap = average_precision(&ranked, &truths, &[0]).expect("valid input");
    close(ap.ap, 50.0);
    close(ap.ap50, 50.0);

    // IoU 0.64 with the truth ([0,0,10,10] vs [0,0,10,6.4]): a hit at thresholds 0.50–0.60
    // (3 of 10), a miss from 0.65 on.
    let loose = [det(0, 0, 0.9, [0.0, 0.0, 10.0, 6.4])];
    let ap = average_precision(&loose, &truths, &[0]).expect("valid input");
    close(ap.ap50, 100.0);
    close(ap.ap75, 0.0);
    close(ap.ap, 30.0);

    // Half the objects found: recall reaches 0.5, so 51 of the 101 recall points score 1.
    let truths = [gt(0, 0, square), gt(0, 0, elsewhere)];
    let half = [det(0, 0, 0.9, square)];
    close(
        average_precision(&half, &truths, &[0])
            .expect("valid input")
            .ap,
        100.0 * 51.0 / 101.0,
    );

    // Classes are scored apart and averaged; a class without ground truth is left out, and a
    // set of such classes has no AP at all. A detection of the wrong class does not count.
    let truths = [gt(0, 0, square), gt(0, 1, elsewhere)];
    let detections = [det(0, 0, 0.9, square), det(0, 2, 0.9, elsewhere)];
    close(
        average_precision(&detections, &truths, &[0])
            .expect("valid input")
            .ap,
        100.0,
    );
    close(
        average_precision(&detections, &truths, &[1])
            .expect("valid input")
            .ap,
        0.0,
    );
    close(
        average_precision(&detections, &truths, &[0, 1, 2])
            .expect("valid input")
            .ap,
        50.0,
    );
    assert!(average_precision(&detections, &truths, &[2]).is_none());

    // Two detections on one truth: the second is a false positive (AP 1 since it ranks after).
    let truths = [gt(0, 0, square)];
    let twice = [det(0, 0, 0.9, square), det(0, 0, 0.8, square)];
    close(
        average_precision(&twice, &truths, &[0])
            .expect("valid input")
            .ap,
        100.0,
    );
}

const COCO: &str = r#"{
  "images": [
    {"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
    {"id": 2, "file_name": "b.jpg", "width": 50, "height": 50},
    {"id": 3, "file_name": "empty.jpg", "width": 10, "height": 10}
  ],
  "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 44, "name": "bottle"}],
  "annotations": [
    {"image_id": 1, "category_id": 18, "bbox": [20, 10, 40, 30], "iscrowd": 0},
    {"image_id": 1, "category_id": 1, "bbox": [180, 50, 40, 80], "iscrowd": 0},
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "iscrowd": 1},
    {"image_id": 2, "category_id": 44, "bbox": [10, 10, 0, 5], "iscrowd": 0},
    {"image_id": 2, "category_id": 18, "bbox": [5, 5, 10, 10]}
  ]
}"#;

#[test]
fn coco_annotations_keep_the_task_classes_and_normalise_boxes() {
    // Dogs and people, in that label order.
    let coco = CocoAnnotations::from_json(COCO, Some(&[18, 1])).expect("valid file");
    assert_eq!(
        coco.categories,
        vec![(18, "dog".to_string()), (1, "person".to_string())]
    );
    assert_eq!(
        coco.images.len(),
        3,
        "images without kept objects stay as negatives"
    );
    let a = &coco.images[0];
    assert_eq!(a.file_name, "a.jpg");
    assert_eq!(a.objects.len(), 2);
    // Dog [20, 10, 40, 30] in 200×100: centre (40, 25), size (40, 30).
    assert_eq!(a.objects[0].label, 0);
    for (found, expected) in a.objects[0].bbox.iter().zip([0.2, 0.25, 0.2, 0.3]) {
        close(*found, expected);
    }
    // Person [180, 50, 40, 80] is clamped to the image: x 180–200, y 50–100.
    assert_eq!(a.objects[1].label, 1);
    for (found, expected) in a.objects[1].bbox.iter().zip([0.95, 0.75, 0.1, 0.5]) {
        close(*found, expected);
    }
    assert_eq!(
        coco.images[1].objects.len(),
        1,
        "the zero-width bottle is not kept"
    );
    assert!(coco.images[2].objects.is_empty());
    // The crowd region is kept apart (never a training target; an ignored region when
    // scoring): person [0, 0, 100, 100] in 200×100.
    assert_eq!(a.crowd.len(), 1);
    assert_eq!(a.crowd[0].label, 1);
    for (found, expected) in a.crowd[0].bbox.iter().zip([0.25, 0.5, 0.5, 1.0]) {
        close(*found, expected);
    }
    // The zero-width bottle is not a kept class, so it is not counted.
    assert_eq!(coco.skipped_boxes, 0);

    let all = CocoAnnotations::from_json(COCO, None).expect("valid file");
    assert_eq!(all.categories.len(), 3);
    assert_eq!(all.skipped_boxes, 1, "the zero-width box");
}

#[test]
fn inconsistent_coco_files_are_refused_with_the_id() {
    let error = CocoAnnotations::from_json(COCO, Some(&[999])).expect_err("unknown class");
    assert!(error.to_string().contains("999"), "{error}");
    let bad_image = COCO.replace(
        r#""image_id": 2, "category_id": 18"#,
        r#""image_id": 7, "category_id": 18"#,
    );
    let error = CocoAnnotations::from_json(&bad_image, None).expect_err("unknown image");
    assert!(error.to_string().contains("image 7"), "{error}");
    let bad_category = COCO.replace(r#""category_id": 44"#, r#""category_id": 45"#);
    let error = CocoAnnotations::from_json(&bad_category, None).expect_err("unknown category");
    assert!(error.to_string().contains("category 45"), "{error}");
    assert!(CocoAnnotations::from_json("{}", None).is_err());
    let error = CocoAnnotations::open("/nonexistent/instances.json", None).expect_err("missing");
    assert!(
        error.to_string().contains("/nonexistent/instances.json"),
        "{error}"
    );
}

/// A crowd region by hand: one box found at score 0.9, and a confident detection (0.95) inside
/// a crowd region of the same class, which COCOeval ignores (AP 100; counted as a false
/// positive it would halve the precision at full recall: AP 50). A class whose only ground
/// truth is a crowd region has no AP. Catches crowd regions scored as boxes or as background.
#[test]
fn a_detection_inside_a_crowd_region_is_ignored() {
    let truths = [
        gt(0, 0, [0.0, 0.0, 10.0, 10.0]),
        GroundTruth {
            crowd: true,
            ..gt(0, 0, [20.0, 20.0, 80.0, 80.0])
        },
        GroundTruth {
            crowd: true,
            ..gt(0, 1, [20.0, 20.0, 80.0, 80.0])
        },
    ];
    let detections = [
        det(0, 0, 0.9, [0.0, 0.0, 10.0, 10.0]),
        det(0, 0, 0.95, [30.0, 30.0, 40.0, 40.0]),
    ];
    let found = average_precision(&detections, &truths, &[0]).expect("class 0 has a box");
    assert!((found.ap - 100.0).abs() < 1e-9, "{found:?}");
    assert!(average_precision(&detections, &truths, &[1]).is_none());
}

/// COCO AP against pycocotools' `COCOeval` itself (`tools/make_coco_ap_fixture.py`): random
/// cases with duplicates, false positives, a class without ground truth, more than 100
/// detections of a class on one image, tied scores, crowd regions with detections inside, a
/// class whose only ground truth is a crowd region, and groups scored on their own images
/// (`imgIds`). Catches a different interpolation, the 100-detection cut applied per image
/// instead of per image and class (or not at all), a class without ground truth counted as 0,
/// tie-breaking other than COCOeval's stable sort, crowd regions counted as boxes or dropped,
/// and a group scored on every image.
#[test]
fn average_precision_matches_pycocotools() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/coco_ap.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json");
    let number = |v: &serde_json::Value| v.as_f64().expect("number");
    let corners = |v: &serde_json::Value| -> [f64; 4] {
        let b: Vec<f64> = v.as_array().expect("bbox").iter().map(number).collect();
        [b[0], b[1], b[2], b[3]]
    };
    let index = |v: &serde_json::Value| v.as_u64().expect("index") as usize;
    for case in fixture["cases"].as_array().expect("cases") {
        let truths: Vec<GroundTruth> = case["truths"]
            .as_array()
            .expect("truths")
            .iter()
            .map(|t| GroundTruth {
                crowd: t["crowd"].as_bool().unwrap_or(false),
                ..gt(index(&t["image"]), index(&t["label"]), corners(&t["bbox"]))
            })
            .collect();
        let detections: Vec<Detection> = case["detections"]
            .as_array()
            .expect("detections")
            .iter()
            .map(|d| {
                det(
                    index(&d["image"]),
                    index(&d["label"]),
                    number(&d["score"]),
                    corners(&d["bbox"]),
                )
            })
            .collect();
        let classes: Vec<usize> = case["classes"]
            .as_array()
            .expect("classes")
            .iter()
            .map(index)
            .collect();
        let group_images = case["group_images"].as_bool().expect("group_images");
        let found = match group_images {
            true => group_average_precision(&detections, &truths, &classes),
            false => average_precision(&detections, &truths, &classes),
        }
        .expect("has ground truth");
        let label = format!(
            "seed {} classes {classes:?} group images {group_images}",
            case["seed"]
        );
        for (name, ours, reference) in [
            ("AP", found.ap, number(&case["ap"])),
            ("AP50", found.ap50, number(&case["ap50"])),
            ("AP75", found.ap75, number(&case["ap75"])),
        ] {
            assert!(
                (ours - reference).abs() < 1e-6,
                "{label}: {name} {ours} vs pycocotools {reference}"
            );
        }
    }
}
