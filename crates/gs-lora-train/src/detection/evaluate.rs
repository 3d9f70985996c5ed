//! From predictions to scores: the reference's post-processing (the best `k` query–class pairs
//! by sigmoid score) and COCO AP of a detector on a split, per group of classes.

use burn::module::Module;
use burn::tensor::Device;
use gs_lora_models::deformable::DeformableDetr;

use super::average_precision::{ApSummary, Detection, GroundTruth, group_average_precision};
use super::boxes::corners;
use super::dataset::{DetectionSample, detection_batch};
use crate::error::{Result, TrainError};
use crate::image::Preprocess;

/// Detections kept per image (the reference's `PostProcess` top 100).
pub const DETECTIONS_PER_IMAGE: usize = 100;

/// The `k` best `(query, class)` pairs of one image by `sigmoid(logit)`, each with its query's
/// box, as Deformable DETR's `PostProcess` (a query may appear with several classes).
///
/// `logits` is `Q × C` row-major, `boxes` `Q × 4` (`cx, cy, w, h`); ties keep the lower index.
pub fn top_k_detections(image: usize, logits: &[f32], boxes: &[f32], k: usize) -> Vec<Detection> {
    let queries = boxes.len() / 4;
    if queries == 0 {
        return Vec::new();
    }
    let classes = logits.len() / queries;
    let mut order: Vec<usize> = (0..queries * classes).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|pair| {
            let query = pair / classes;
            let bbox = std::array::from_fn(|i| f64::from(boxes[query * 4 + i]));
            Detection {
                image,
                label: pair % classes,
                score: 1.0 / (1.0 + (-f64::from(logits[pair])).exp()),
                bbox: corners(bbox),
            }
        })
        .collect()
}

/// COCO AP of `model` on `samples`, for each group of `class_groups` on the images holding one
/// of the group's boxes (`None` for a group without ground truth in `samples`), as the official
/// evaluation scores a group (PROTOCOL §5.2). Every class is detected; crowd regions are
/// ignored regions.
///
/// # Errors
/// A zero batch size, a batch the model cannot read, or predictions that cannot be read back.
pub fn detector_ap(
    model: &DeformableDetr,
    samples: &[DetectionSample],
    preprocess: &Preprocess,
    batch_size: usize,
    class_groups: &[&[usize]],
    device: &Device,
) -> Result<Vec<Option<ApSummary>>> {
    if batch_size == 0 {
        return Err(TrainError::InvalidSetting(
            "evaluation needs a batch size of at least 1".into(),
        ));
    }
    let model = model.valid();
    let plain = device.clone().without_autodiff();
    let keep = vec![true; model.config.num_labels];
    let mut detections = Vec::new();
    let mut truths = Vec::new();
    let indices: Vec<usize> = (0..samples.len()).collect();
    for chunk in indices.chunks(batch_size) {
        let batch = detection_batch(samples, chunk, &keep, preprocess, &plain)?;
        let output = model.forward_masked(batch.pixels, batch.pixel_mask)?;
        let [_, queries, classes] = output.logits.dims();
        let read = |t: burn::tensor::Tensor<3>| {
            t.try_into_vec_as::<f32>().map_err(|err| {
                TrainError::InvalidSetting(format!("cannot read predictions: {err:?}"))
            })
        };
        let (logits, boxes) = (read(output.logits)?, read(output.pred_boxes)?);
        for (i, &image) in chunk.iter().enumerate() {
            detections.extend(top_k_detections(
                image,
                &logits[i * queries * classes..(i + 1) * queries * classes],
                &boxes[i * queries * 4..(i + 1) * queries * 4],
                DETECTIONS_PER_IMAGE,
            ));
            let sample = &samples[image];
            let regions = [(&sample.objects, false), (&sample.crowd, true)];
            for (targets, crowd) in regions {
                truths.extend(targets.iter().map(|o| GroundTruth {
                    image,
                    label: o.label,
                    bbox: corners(o.bbox),
                    crowd,
                }));
            }
        }
    }
    Ok(class_groups
        .iter()
        .map(|classes| group_average_precision(&detections, &truths, classes))
        .collect())
}
