//! The set criterion of Deformable DETR: Hungarian matching of queries to objects, then the
//! focal, L1 and GIoU losses of the matching, normalised by the number of objects.

use burn::tensor::{Int, Tensor, TensorData};
use gs_lora_core::loss::{box_l1_loss, giou_loss, sigmoid_focal_loss};
use gs_lora_models::deformable::DetrOutput;

use super::matching::{HungarianMatcher, Target};
use crate::error::{Result, TrainError};

/// The unweighted terms of the set criterion, each `[1]`, and the matching they come from.
#[derive(Debug, Clone)]
pub struct CriterionTerms {
    /// Sigmoid focal loss over every query and class.
    pub focal: Tensor<1>,
    /// L1 distance of the matched boxes.
    pub l1: Tensor<1>,
    /// `1 − GIoU` of the matched boxes.
    pub giou: Tensor<1>,
    /// Matched `(image · Q + query, label)` pairs, in image order.
    pub matched: Vec<(usize, usize)>,
}

/// Matches `output`'s queries to `targets` (one list per image) with `matcher` and computes
/// the criterion; images without objects contribute background terms only.
///
/// # Errors
/// A target count that differs from the batch, a label outside the model's classes, or a
/// non-finite prediction.
pub fn set_criterion(
    output: &DetrOutput,
    targets: &[Vec<Target>],
    matcher: &HungarianMatcher,
) -> Result<CriterionTerms> {
    let [batch, queries, classes] = output.logits.dims();
    if targets.len() != batch {
        return Err(TrainError::InvalidSetting(format!(
            "{} target lists for a batch of {batch} images",
            targets.len()
        )));
    }
    let read = |t: &Tensor<3>| {
        t.clone()
            .inner()
            .try_into_vec_as::<f32>()
            .map_err(|err| TrainError::InvalidSetting(format!("cannot read predictions: {err:?}")))
    };
    let (logits, boxes) = (read(&output.logits)?, read(&output.pred_boxes)?);
    let mut one_hot = vec![0.0f32; batch * queries * classes];
    let mut matched = Vec::new();
    let mut target_boxes = Vec::new();
    for (image, objects) in targets.iter().enumerate() {
        let rows = image * queries..(image + 1) * queries;
        let image_boxes: Vec<[f64; 4]> = boxes[rows.start * 4..rows.end * 4]
            .chunks(4)
            .map(|b| [b[0], b[1], b[2], b[3]].map(f64::from))
            .collect();
        let image_logits = &logits[rows.start * classes..rows.end * classes];
        for (query, object) in matcher.match_queries(image_logits, &image_boxes, objects)? {
            let row = rows.start + query;
            let label = objects[object].label;
            one_hot[row * classes + label] = 1.0;
            matched.push((row, label));
            target_boxes.extend(objects[object].bbox.map(|v| v as f32));
        }
    }
    let device = output.logits.device();
    let num_boxes = targets.iter().map(Vec::len).sum::<usize>().max(1) as f64;
    let one_hot = Tensor::from_data(TensorData::new(one_hot, [batch, queries, classes]), &device);
    let focal = sigmoid_focal_loss(output.logits.clone(), one_hot, num_boxes)?;
    let (l1, giou) = if matched.is_empty() {
        let zero = focal.zeros_like();
        (zero.clone(), zero)
    } else {
        let rows: Vec<i64> = matched.iter().map(|&(row, _)| row as i64).collect();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [matched.len()]), &device);
        let predicted = output
            .pred_boxes
            .clone()
            .reshape([batch * queries, 4])
            .select(0, rows);
        let target = Tensor::from_data(TensorData::new(target_boxes, [matched.len(), 4]), &device);
        (
            box_l1_loss(predicted.clone(), target.clone(), num_boxes)?,
            giou_loss(predicted, target, num_boxes)?,
        )
    };
    Ok(CriterionTerms {
        focal,
        l1,
        giou,
        matched,
    })
}
