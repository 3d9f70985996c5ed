//! The set-prediction losses of Deformable DETR (sigmoid focal classification, L1 and GIoU on
//! matched boxes, each divided by the number of target boxes), and GS-LoRA's bounded forgetting
//! loss for detection.

use burn::tensor::Tensor;
use burn::tensor::activation::{log_sigmoid, relu, sigmoid};

use crate::error::{CoreError, Result, ensure_finite};

/// Focal `α` of the reference.
pub const FOCAL_ALPHA: f64 = 0.25;
/// Focal `γ` of the reference.
pub const FOCAL_GAMMA: f64 = 2.0;

fn check_boxes(num_boxes: f64) -> Result<()> {
    ensure_finite("number of boxes", num_boxes)?;
    if num_boxes <= 0.0 {
        return Err(CoreError::EmptyBatch {
            what: "target boxes",
        });
    }
    Ok(())
}

/// Sigmoid focal loss summed over queries and classes and divided by `num_boxes` (the
/// reference passes `max(1, boxes in the batch)`; Deformable
/// DETR's `loss_ce`, which takes `mean(1) · Q`): per logit
/// `α_t · (1 − p_t)^γ · BCE(z, t)`, `p_t = p·t + (1 − p)(1 − t)`, `α_t = α·t + (1 − α)(1 − t)`;
/// shape `[1]`.
///
/// # Shapes
/// - `logits`, `targets` (one-hot, 0/1): `[N, Q, C]`
///
/// # Errors
/// Different shapes, or `num_boxes` not positive.
pub fn sigmoid_focal_loss(
    logits: Tensor<3>,
    targets: Tensor<3>,
    num_boxes: f64,
) -> Result<Tensor<1>> {
    if logits.dims() != targets.dims() {
        return Err(CoreError::ShapeMismatch {
            what: "one-hot targets for logits [N, Q, C]",
            expected: logits.dims().to_vec(),
            found: targets.dims().to_vec(),
        });
    }
    check_boxes(num_boxes)?;
    let p = sigmoid(logits.clone());
    // BCE with logits, stable: −t·log σ(z) − (1 − t)·log σ(−z).
    let bce = targets.clone().mul(log_sigmoid(logits.clone())).neg()
        - targets
            .ones_like()
            .sub(targets.clone())
            .mul(log_sigmoid(logits.neg()));
    let p_t =
        p.clone() * targets.clone() + (p.ones_like() - p) * (targets.ones_like() - targets.clone());
    let alpha_t = targets.clone().mul_scalar(FOCAL_ALPHA)
        + (targets.ones_like() - targets).mul_scalar(1.0 - FOCAL_ALPHA);
    let loss = alpha_t * (p_t.ones_like() - p_t).powf_scalar(FOCAL_GAMMA) * bce;
    Ok(loss.sum().div_scalar(num_boxes))
}

/// `[cx, cy, w, h]` → `[x0, y0, x1, y1]`, row-wise.
fn corners(boxes: Tensor<2>) -> Tensor<2> {
    let centre = boxes.clone().narrow(1, 0, 2);
    let half = boxes.narrow(1, 2, 2).mul_scalar(0.5);
    Tensor::cat(vec![centre.clone() - half.clone(), centre + half], 1)
}

fn area(corners: Tensor<2>) -> Tensor<1> {
    let size = (corners.clone().narrow(1, 2, 2) - corners.narrow(1, 0, 2)).clamp_min(0.0);
    let [rows, _] = size.dims();
    (size.clone().narrow(1, 0, 1) * size.narrow(1, 1, 1)).reshape([rows])
}

fn check_pairs(predicted: &Tensor<2>, targets: &Tensor<2>) -> Result<()> {
    let [rows, four] = predicted.dims();
    if four != 4 || targets.dims() != [rows, 4] {
        return Err(CoreError::ShapeMismatch {
            what: "matched boxes [M, 4] (cx, cy, w, h)",
            expected: vec![rows, 4],
            found: targets.dims().to_vec(),
        });
    }
    Ok(())
}

/// `Σ |predicted − target| / num_boxes` over matched `[cx, cy, w, h]` pairs; shape `[1]`.
///
/// # Shapes
/// - `predicted`, `targets`: `[M, 4]`
///
/// # Errors
/// Different shapes, or `num_boxes` not positive.
pub fn box_l1_loss(predicted: Tensor<2>, targets: Tensor<2>, num_boxes: f64) -> Result<Tensor<1>> {
    check_pairs(&predicted, &targets)?;
    check_boxes(num_boxes)?;
    Ok((predicted - targets).abs().sum().div_scalar(num_boxes))
}

/// `Σ (1 − GIoU(predicted, target)) / num_boxes` over matched `[cx, cy, w, h]` pairs; shape `[1]`.
///
/// # Shapes
/// - `predicted`, `targets`: `[M, 4]`
///
/// # Errors
/// Different shapes, or `num_boxes` not positive.
pub fn giou_loss(predicted: Tensor<2>, targets: Tensor<2>, num_boxes: f64) -> Result<Tensor<1>> {
    check_pairs(&predicted, &targets)?;
    check_boxes(num_boxes)?;
    let (a, b) = (corners(predicted), corners(targets));
    let low = |x: &Tensor<2>| x.clone().narrow(1, 0, 2);
    let high = |x: &Tensor<2>| x.clone().narrow(1, 2, 2);
    let inter = area(Tensor::cat(
        vec![low(&a).max_pair(low(&b)), high(&a).min_pair(high(&b))],
        1,
    ));
    let union = area(a.clone()) + area(b.clone()) - inter.clone();
    let hull = area(Tensor::cat(
        vec![low(&a).min_pair(low(&b)), high(&a).max_pair(high(&b))],
        1,
    ));
    let giou = inter / union.clone() - (hull.clone() - union) / hull;
    Ok((giou.ones_like() - giou).sum().div_scalar(num_boxes))
}

/// The detection loss of the remaining classes: `2 · focal + 5 · L1 + 2 · GIoU` (the
/// reference's weights); shape `[1]`.
pub fn detection_loss(focal: Tensor<1>, l1: Tensor<1>, giou: Tensor<1>) -> Tensor<1> {
    focal.mul_scalar(2.0) + l1.mul_scalar(5.0) + giou.mul_scalar(2.0)
}

/// GS-LoRA's forgetting loss for detection on forget-class targets:
/// `relu(bound − 2 · focal) + 5 · L1 + 2 · GIoU` (bound 15 in the reference); shape `[1]`.
///
/// # Errors
/// [`CoreError::NonFinite`] for a NaN or infinite bound.
pub fn detection_forget_loss(
    focal: Tensor<1>,
    l1: Tensor<1>,
    giou: Tensor<1>,
    bound: f64,
) -> Result<Tensor<1>> {
    ensure_finite("forgetting bound", bound)?;
    Ok(relu(focal.mul_scalar(-2.0).add_scalar(bound)) + l1.mul_scalar(5.0) + giou.mul_scalar(2.0))
}
