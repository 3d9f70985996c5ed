//! Retention and bounded forgetting losses on classifier logits.

use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Int, Tensor};

use crate::error::{CoreError, Result, ensure_finite, read_values};

/// Mean cross-entropy `−(1/B) Σ_b log softmax(z_b)[y_b]`; shape `[1]`.
///
/// # Shapes
/// - logits: `[B, C]`
/// - labels: `[B]`, values in `0..C`
///
/// # Errors
/// [`CoreError::EmptyBatch`], [`CoreError::ShapeMismatch`] when the batch sizes differ,
/// [`CoreError::LabelOutOfRange`] for a label outside `0..C` (checked on the host, one small read).
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Result<Tensor<1>> {
    Ok(true_class_log_probs(logits, labels)?.mean().neg())
}

/// `log softmax(z_b)[y_b]` per sample, `[B, 1]`, after checking the labels.
fn true_class_log_probs(logits: Tensor<2>, labels: Tensor<1, Int>) -> Result<Tensor<2>> {
    let [batch, num_classes] = logits.dims();
    check_labels(batch, num_classes, &labels)?;
    Ok(log_softmax(logits, 1).gather(1, labels.unsqueeze_dim(1)))
}

/// Retention loss `L_r = CE(logits(x_r), y_r)` on remaining-class samples; shape `[1]`.
///
/// # Errors
/// As [`cross_entropy`].
pub fn retain_loss(logits: Tensor<2>, labels: Tensor<1, Int>) -> Result<Tensor<1>> {
    cross_entropy(logits, labels)
}

/// Bounded forgetting loss `L_f = ReLU(bound − CE(logits(x_f), y_f))`; shape `[1]`.
///
/// The cross-entropy is averaged over the batch before the ReLU, as in the reference code, so
/// the loss stops pushing once the forget batch's mean CE reaches `bound` (105 by default).
///
/// # Errors
/// As [`cross_entropy`], and [`CoreError::NonFinite`] for a NaN or infinite bound.
pub fn forget_loss(logits: Tensor<2>, labels: Tensor<1, Int>, bound: f64) -> Result<Tensor<1>> {
    ensure_finite("forgetting bound", bound)?;
    let ce = cross_entropy(logits, labels)?;
    Ok(relu(ce.neg().add_scalar(bound)))
}

/// Per-sample bounded forgetting loss `L_f = (1/B) Σ_b ReLU(bound − CE(z_b, y_b))`; shape `[1]`.
///
/// Each forget sample is pushed until its own cross-entropy reaches `bound`, then left alone:
/// the batch-mean bound of [`forget_loss`] stops once the mean reaches it, which a few samples
/// pushed far past the bound can do while others are still recognised (and the far ones keep
/// moving the features the remaining classes share until it does).
///
/// # Errors
/// As [`forget_loss`].
pub fn forget_loss_per_sample(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    bound: f64,
) -> Result<Tensor<1>> {
    ensure_finite("forgetting bound", bound)?;
    let picked = true_class_log_probs(logits, labels)?;
    Ok(relu(picked.add_scalar(bound)).mean())
}

/// Per-sample bounded unlikelihood forgetting loss
/// `L_f = (1/B) Σ_b ReLU(−ln(1 − p_b) + ln(1 − e^{−bound}))`, `p_b = softmax(z_b)[y_b]`;
/// shape `[1]`.
///
/// It stops where [`forget_loss_per_sample`] stops (`p_b ≤ e^{−bound}`, i.e. `CE_b ≥ bound`),
/// but pushes hardest where the cross-entropy pushes least: its gradient on the true logit is
/// `p_b/B` against `(1 − p_b)/B` for the cross-entropy, which vanishes on an image the model
/// is sure of (a class that absorbed an earlier task's erased images stays recognised under
/// the cross-entropy term). The unlikelihood loss of Welleck et al. (2019), bounded;
/// `ln(1 − p_b)` is `LSE_{c≠y_b} z_b[c] − LSE_c z_b[c]`, finite however sure the model is.
///
/// # Errors
/// As [`forget_loss`], and [`CoreError::ShapeMismatch`] for fewer than two classes (no other
/// class to move to).
pub fn forget_loss_unlikelihood(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    bound: f64,
) -> Result<Tensor<1>> {
    let others = others_log_sum_exp(&logits, &labels, bound)?;
    let log_not_true = others - log_sum_exp(logits);
    Ok(relu(log_not_true.neg().sub_scalar(unlikely_at(bound))).mean())
}

/// Per-sample bounded log-odds forgetting loss
/// `L_f = (1/B) Σ_b ReLU(ln(p_b / (1 − p_b)) − ln(e^{−bound} / (1 − e^{−bound})))`, the true
/// logit's margin over the others' `z_b[y_b] − LSE_{c≠y_b} z_b[c]` pushed down; shape `[1]`.
///
/// The sum of the cross-entropy form and [`forget_loss_unlikelihood`] (`ln p − ln(1 − p)`),
/// and it stops where both do (`p_b ≤ e^{−bound}`): its gradient on the true logit is `1/B`
/// whatever `p_b`, so it neither fades on an image the model is sure of (the cross-entropy's
/// `(1 − p_b)/B`) nor near the bound (the unlikelihood's `p_b/B`, which leaves held-out images
/// of an erased class recognised once the training images reach the bound).
///
/// # Errors
/// As [`forget_loss_unlikelihood`].
pub fn forget_loss_log_odds(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    bound: f64,
) -> Result<Tensor<1>> {
    let others = others_log_sum_exp(&logits, &labels, bound)?;
    let true_logit = logits.gather(1, labels.unsqueeze_dim(1));
    // logit(e^{−bound}) = −bound + (−ln(1 − e^{−bound})).
    let at_bound = -bound + unlikely_at(bound);
    Ok(relu((true_logit - others).sub_scalar(at_bound)).mean())
}

/// `LSE_{c≠y_b} z_b[c]` per sample, `[B, 1]`, after checking the bound, the labels and that
/// there is another class to move to.
fn others_log_sum_exp(
    logits: &Tensor<2>,
    labels: &Tensor<1, Int>,
    bound: f64,
) -> Result<Tensor<2>> {
    ensure_finite("forgetting bound", bound)?;
    let [batch, num_classes] = logits.dims();
    if num_classes < 2 {
        return Err(CoreError::ShapeMismatch {
            what: "logits [B, C] of a forgetting loss against the other classes (C ≥ 2)",
            expected: vec![batch, 2],
            found: vec![batch, num_classes],
        });
    }
    check_labels(batch, num_classes, labels)?;
    let true_class = labels.clone().one_hot::<2>(num_classes).bool();
    Ok(log_sum_exp(
        logits.clone().mask_fill(true_class, f32::NEG_INFINITY),
    ))
}

/// `−ln(1 − e^{−bound})`, the unlikelihood at the bound, without cancellation for a large bound.
fn unlikely_at(bound: f64) -> f64 {
    -(-(-bound).exp()).ln_1p()
}

/// `ln Σ_c exp x[b, c]` per row, `[B, 1]`, shifted by the row's maximum (finite whenever the
/// row has one finite entry).
fn log_sum_exp(x: Tensor<2>) -> Tensor<2> {
    let max = x.clone().max_dim(1).detach();
    (x - max.clone()).exp().sum_dim(1).log() + max
}

fn check_labels(batch: usize, num_classes: usize, labels: &Tensor<1, Int>) -> Result<()> {
    if batch == 0 {
        return Err(CoreError::EmptyBatch { what: "logits" });
    }
    let [label_count] = labels.dims();
    if label_count != batch {
        return Err(CoreError::ShapeMismatch {
            what: "labels for logits [B, C]",
            expected: vec![batch],
            found: vec![label_count],
        });
    }
    let bounds: Vec<i64> = read_values(Tensor::cat(
        vec![labels.clone().min(), labels.clone().max()],
        0,
    ))?;
    if let Some(&label) = bounds
        .iter()
        .find(|&&label| label < 0 || label >= num_classes as i64)
    {
        return Err(CoreError::LabelOutOfRange { label, num_classes });
    }
    Ok(())
}
