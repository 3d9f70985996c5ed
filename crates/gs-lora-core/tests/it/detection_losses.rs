//! Deformable DETR's set-prediction losses and GS-LoRA's detection forgetting loss against
//! values computed by hand, and the GIoU loss's gradient against finite differences.

use crate::common::*;
use burn::tensor::{Tensor, TensorData};
use gs_lora_core::loss::{
    box_l1_loss, detection_forget_loss, detection_loss, giou_loss, sigmoid_focal_loss,
};

fn tensor<const D: usize>(values: &[f32], shape: [usize; D]) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), &device())
}

fn assert_close(found: f64, expected: f64) {
    assert!(
        (found - expected).abs() < 1e-5,
        "found {found}, expected {expected}"
    );
}

/// `α_t (1 − p_t)^γ BCE` of one logit on the host.
fn host_focal(z: f64, t: f64) -> f64 {
    let p = 1.0 / (1.0 + (-z).exp());
    let bce = -(t * p.ln() + (1.0 - t) * (1.0 - p).ln());
    let p_t = p * t + (1.0 - p) * (1.0 - t);
    let alpha_t = 0.25 * t + 0.75 * (1.0 - t);
    alpha_t * (1.0 - p_t).powi(2) * bce
}

#[test]
fn focal_loss_sums_over_queries_and_classes_per_box() {
    let logits = [0.0, 2.0, -1.5, 0.5, 3.0, -2.0];
    let targets = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    let expected: f64 = logits
        .iter()
        .zip(&targets)
        .map(|(&z, &t)| host_focal(z, t))
        .sum::<f64>()
        / 2.0;
    let found = sigmoid_focal_loss(
        tensor(&logits.map(|v| v as f32), [1, 2, 3]),
        tensor(&targets.map(|v| v as f32), [1, 2, 3]),
        2.0,
    )
    .expect("valid input");
    assert_close(scalar(found), expected);
    // A confident, correct prediction costs almost nothing; a confident wrong one a lot.
    let easy = sigmoid_focal_loss(tensor(&[8.0], [1, 1, 1]), tensor(&[1.0], [1, 1, 1]), 1.0);
    assert!(scalar(easy.expect("valid input")) < 1e-6);
    assert!(
        sigmoid_focal_loss(
            tensor(&[0.0; 2], [1, 1, 2]),
            tensor(&[0.0; 3], [1, 1, 3]),
            1.0
        )
        .is_err()
    );
    assert!(sigmoid_focal_loss(tensor(&[0.0], [1, 1, 1]), tensor(&[0.0], [1, 1, 1]), 0.0).is_err());
}

#[test]
fn box_losses_match_hand_computed_overlaps() {
    // Pair 1: [0.4, 0.4, 0.6, 0.6] vs [0.5, 0.4, 0.7, 0.6]: IoU = GIoU = 0.02 / 0.06 = 1/3.
    // Pair 2: [0, 0, 0.2, 0.2] vs [0.6, 0.6, 0.8, 0.8]: disjoint, hull 0.64, union 0.08,
    // GIoU = −0.56 / 0.64 = −0.875.
    let predicted = tensor(&[0.5, 0.5, 0.2, 0.2, 0.1, 0.1, 0.2, 0.2], [2, 4]);
    let targets = tensor(&[0.6, 0.5, 0.2, 0.2, 0.7, 0.7, 0.2, 0.2], [2, 4]);
    let giou = giou_loss(predicted.clone(), targets.clone(), 2.0).expect("valid input");
    assert_close(scalar(giou), ((1.0 - 1.0 / 3.0) + (1.0 + 0.875)) / 2.0);
    let l1 = box_l1_loss(predicted.clone(), targets.clone(), 2.0).expect("valid input");
    assert_close(scalar(l1), (0.1 + 0.6 + 0.6) / 2.0);
    assert!(giou_loss(predicted.clone(), tensor(&[0.0; 4], [1, 4]), 1.0).is_err());
    assert!(box_l1_loss(predicted, targets, -1.0).is_err());
}

#[test]
fn giou_gradient_matches_finite_differences() {
    let device = device().autodiff();
    let base = [0.45f32, 0.5, 0.3, 0.2];
    // Corners [0.3, 0.4, 0.6, 0.6] and [0.425, 0.31, 0.675, 0.61]: no coordinate ties, so no kink.
    let target = tensor(&[0.55, 0.46, 0.25, 0.3], [1, 4]);
    let predicted =
        Tensor::<2>::from_data(TensorData::new(base.to_vec(), [1, 4]), &device).require_grad();
    let loss =
        giou_loss(predicted.clone(), target.clone().to_device(&device), 1.0).expect("valid input");
    let grads = loss.backward();
    let grad = values(predicted.grad(&grads).expect("gradient"));
    let at = |values: [f32; 4]| {
        scalar(giou_loss(tensor(&values, [1, 4]), target.clone(), 1.0).expect("valid input"))
    };
    for i in 0..4 {
        let (mut up, mut down) = (base, base);
        up[i] += 1e-3;
        down[i] -= 1e-3;
        let numeric = (at(up) - at(down)) / 2e-3;
        assert!(
            (grad[i] - numeric).abs() < 1e-2,
            "d/dx{i}: {} vs {numeric}",
            grad[i]
        );
    }
}

#[test]
fn the_detection_losses_combine_with_the_reference_weights() {
    let (focal, l1, giou) = (
        tensor(&[3.0], [1]),
        tensor(&[0.2], [1]),
        tensor(&[0.5], [1]),
    );
    assert_close(
        scalar(detection_loss(focal.clone(), l1.clone(), giou.clone())),
        6.0 + 1.0 + 1.0,
    );
    // relu(15 − 2 · 3) = 9, plus the box terms.
    let forget =
        detection_forget_loss(focal.clone(), l1.clone(), giou.clone(), 15.0).expect("valid input");
    assert_close(scalar(forget), 9.0 + 1.0 + 1.0);
    // Past the bound the classification push stops.
    let done = detection_forget_loss(tensor(&[10.0], [1]), l1, giou, 15.0).expect("valid input");
    assert_close(scalar(done), 2.0);
    assert!(detection_forget_loss(focal.clone(), focal.clone(), focal, f64::NAN).is_err());
}
