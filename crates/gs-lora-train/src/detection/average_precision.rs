//! COCO-style average precision (as `pycocotools.COCOeval` for boxes, area "all", 100
//! detections per image, crowd regions ignored), computed over a chosen set of classes so that
//! forgotten, remaining and previously forgotten classes are scored apart.

use std::collections::{BTreeMap, BTreeSet};

use super::boxes::{Corners, iou, share_inside};

/// One predicted box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Image the box belongs to.
    pub image: usize,
    /// Predicted class.
    pub label: usize,
    /// Confidence; higher ranks first.
    pub score: f64,
    /// Corners `[x0, y0, x1, y1]`.
    pub bbox: Corners,
}

/// One ground-truth box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundTruth {
    /// Image the box belongs to.
    pub image: usize,
    /// Class.
    pub label: usize,
    /// Corners `[x0, y0, x1, y1]`.
    pub bbox: Corners,
    /// A crowd region (COCO `iscrowd`): not a box to find; a detection that matches no box and
    /// lies in it (overlap = its share inside, [`share_inside`]) counts neither way.
    pub crowd: bool,
}

/// AP over IoU 0.5:0.05:0.95, AP at IoU 0.5 and at IoU 0.75, in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApSummary {
    /// Mean over the ten IoU thresholds and the classes.
    pub ap: f64,
    /// At IoU 0.5.
    pub ap50: f64,
    /// At IoU 0.75.
    pub ap75: f64,
}

/// Detections kept per image and class, as COCO's `maxDets = 100`.
const MAX_DETECTIONS: usize = 100;
/// Recall points of the interpolated precision curve.
const RECALL_POINTS: usize = 101;

/// IoU thresholds 0.50, 0.55, …, 0.95.
fn thresholds() -> impl Iterator<Item = f64> {
    (0..10).map(|i| 0.5 + 0.05 * i as f64)
}

/// AP of `classes` on the images holding at least one of their ground-truth boxes or crowd
/// regions (detections on other images are left out): how the official detection evaluation
/// scores a group (`imgIds` of the group's images, PROTOCOL §5.2).
pub fn group_average_precision(
    detections: &[Detection],
    truths: &[GroundTruth],
    classes: &[usize],
) -> Option<ApSummary> {
    let images: BTreeSet<usize> = truths
        .iter()
        .filter(|t| classes.contains(&t.label))
        .map(|t| t.image)
        .collect();
    let kept: Vec<Detection> = detections
        .iter()
        .filter(|d| images.contains(&d.image))
        .copied()
        .collect();
    average_precision(&kept, truths, classes)
}

/// AP of `detections` against `truths` over `classes`, on every image; `None` when none of
/// `classes` has a ground-truth box that is not a crowd region (COCO leaves such classes out of
/// the mean).
pub fn average_precision(
    detections: &[Detection],
    truths: &[GroundTruth],
    classes: &[usize],
) -> Option<ApSummary> {
    let per_class: Vec<Vec<f64>> = classes
        .iter()
        .filter_map(|&class| class_precisions(detections, truths, class))
        .collect();
    if per_class.is_empty() {
        return None;
    }
    let mean = |index: Option<usize>| {
        let values: Vec<f64> = per_class
            .iter()
            .flat_map(|aps| match index {
                Some(i) => vec![aps[i]],
                None => aps.clone(),
            })
            .collect();
        100.0 * values.iter().sum::<f64>() / values.len() as f64
    };
    Some(ApSummary {
        ap: mean(None),
        ap50: mean(Some(0)),
        ap75: mean(Some(5)),
    })
}

/// AP of one class at each IoU threshold; `None` without ground truth of the class.
fn class_precisions(
    detections: &[Detection],
    truths: &[GroundTruth],
    class: usize,
) -> Option<Vec<f64>> {
    // Per image, boxes before crowd regions (COCOeval sorts the ignored ones last).
    let mut truths_by_image: BTreeMap<usize, Vec<(Corners, bool)>> = BTreeMap::new();
    for truth in truths.iter().filter(|t| t.label == class) {
        truths_by_image
            .entry(truth.image)
            .or_default()
            .push((truth.bbox, truth.crowd));
    }
    for gts in truths_by_image.values_mut() {
        gts.sort_by_key(|&(_, crowd)| crowd);
    }
    let positives = truths
        .iter()
        .filter(|t| t.label == class && !t.crowd)
        .count();
    if positives == 0 {
        return None;
    }
    let mut by_image: BTreeMap<usize, Vec<&Detection>> = BTreeMap::new();
    for detection in detections.iter().filter(|d| d.label == class) {
        by_image.entry(detection.image).or_default().push(detection);
    }
    let ranked: Vec<Vec<&Detection>> = by_image
        .into_values()
        .map(|mut boxes| {
            boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
            boxes.truncate(MAX_DETECTIONS);
            boxes
        })
        .collect();
    let aps = thresholds()
        .map(|threshold| {
            // (score, true positive) of every kept detection, matched image by image.
            let mut outcomes: Vec<(f64, bool)> = Vec::new();
            for boxes in &ranked {
                let gts = truths_by_image
                    .get(&boxes[0].image)
                    .map_or(&[][..], Vec::as_slice);
                let mut taken = vec![false; gts.len()];
                for detection in boxes {
                    // COCOeval's match: the best box still unmatched with IoU ≥ threshold; a
                    // crowd region (matched any number of times) only when no box qualifies.
                    let mut best: (f64, Option<usize>) = (threshold.min(1.0 - 1e-10), None);
                    for (g, &(gt, crowd)) in gts.iter().enumerate() {
                        if taken[g] && !crowd {
                            continue;
                        }
                        if crowd && best.1.is_some_and(|m| !gts[m].1) {
                            break;
                        }
                        let overlap = match crowd {
                            true => share_inside(detection.bbox, gt),
                            false => iou(detection.bbox, gt),
                        };
                        if overlap >= best.0 {
                            best = (overlap, Some(g));
                        }
                    }
                    match best.1 {
                        Some(g) if gts[g].1 => {} // inside a crowd region: ignored
                        Some(g) => {
                            taken[g] = true;
                            outcomes.push((detection.score, true));
                        }
                        None => outcomes.push((detection.score, false)),
                    }
                }
            }
            interpolated_ap(outcomes, positives)
        })
        .collect();
    Some(aps)
}

/// The 101-point interpolated AP of ranked outcomes with `positives` ground-truth boxes.
fn interpolated_ap(mut outcomes: Vec<(f64, bool)>, positives: usize) -> f64 {
    // Stable, so ties keep image order as COCO's mergesort does.
    outcomes.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut recall = Vec::with_capacity(outcomes.len());
    let mut precision = Vec::with_capacity(outcomes.len());
    for (_, hit) in outcomes {
        if hit {
            tp += 1.0
        } else {
            fp += 1.0
        }
        recall.push(tp / positives as f64);
        precision.push(tp / (tp + fp));
    }
    // Precision envelope: the best precision at this recall or beyond.
    for i in (1..precision.len()).rev() {
        precision[i - 1] = precision[i - 1].max(precision[i]);
    }
    let total: f64 = (0..RECALL_POINTS)
        .map(|r| {
            let at = r as f64 / (RECALL_POINTS - 1) as f64;
            recall
                .iter()
                .position(|&rc| rc >= at)
                .map_or(0.0, |i| precision[i])
        })
        .sum();
    total / RECALL_POINTS as f64
}
