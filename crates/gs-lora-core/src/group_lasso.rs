//! Group sparsity over adapter groups (the "GS" of GS-LoRA).

use burn::config::Config;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::adapter_group::{LoraGroup, LoraModel, checked_groups, checked_groups_mut};
use crate::error::{CoreError, ensure_non_negative, read_values};
use crate::lora::LoraLinear;

/// Below this squared norm a group counts as zero: the square root is evaluated at this floor,
/// where its derivative is finite, and the clamp passes no gradient, so a zero group gets a zero
/// (not NaN) gradient, as PyTorch's `norm` subgradient.
const SQUARED_NORM_FLOOR: f64 = 1e-30;

/// The group lasso `L_s = Σ_g sqrt(Σ_{p∈g} ‖p‖_F²)` over a model's adapter groups, with its
/// weight schedule and proximal operator.
///
/// Weight: `weight` throughout, or with a warm-up, `0` for the first `warmup_epochs` epochs and
/// `warmup_weight` afterwards.
#[derive(Config, Debug, PartialEq)]
pub struct GroupLassoConfig {
    /// Weight `α` of the group lasso in the total loss.
    #[config(default = 1e-4)]
    pub weight: f64,
    /// Epochs at the start of a task during which the weight is zero (0: no warm-up).
    #[config(default = 0)]
    pub warmup_epochs: usize,
    /// The weight after the warm-up (the reference code's `big_alpha`); `weight` when absent.
    #[config(default = "None")]
    pub warmup_weight: Option<f64>,
    /// Whether the penalty is applied by a group soft-threshold after each optimiser step
    /// ([`group_soft_threshold`], in the optimiser's metric: see `gs-lora-train`'s `GsLora`)
    /// instead of through its gradient, which sets a group exactly to zero. The official code
    /// only adds the penalty's gradient (`false`), under which a group's norm hovers near zero
    /// and never reaches it.
    #[config(default = true)]
    pub proximal: bool,
}

impl GroupLassoConfig {
    /// Checks that the weights are finite and non-negative.
    ///
    /// # Errors
    /// [`CoreError::NonFinite`](crate::CoreError::NonFinite) or
    /// [`CoreError::OutOfRange`](crate::CoreError::OutOfRange) naming the weight.
    pub fn validate(&self) -> Result<(), CoreError> {
        ensure_non_negative("group-lasso weight", self.weight)?;
        if let Some(weight) = self.warmup_weight {
            ensure_non_negative("group-lasso warm-up weight", weight)?;
        }
        Ok(())
    }

    /// The weight `α` during epoch `epoch` (0-based) of a task.
    pub fn weight_at(&self, epoch: usize) -> f64 {
        if self.warmup_epochs == 0 {
            self.weight
        } else if epoch < self.warmup_epochs {
            0.0
        } else {
            self.warmup_weight.unwrap_or(self.weight)
        }
    }
}

fn group_squared_norm(group: &LoraGroup<&LoraLinear>) -> Tensor<1> {
    group
        .layers
        .iter()
        .map(|layer| layer.squared_norm())
        .reduce(|sum, norm| sum + norm)
        .expect("checked groups are not empty")
}

/// The group lasso value `Σ_g sqrt(Σ_{p∈g} ‖p‖_F²)`, differentiable and safe at zero; shape `[1]`.
///
/// # Errors
/// When the model has no group or an empty one.
pub fn group_lasso<M: LoraModel>(model: &M) -> Result<Tensor<1>, CoreError> {
    let total = checked_groups(model)?
        .iter()
        .map(|group| {
            group_squared_norm(group)
                .clamp_min(SQUARED_NORM_FLOOR)
                .sqrt()
        })
        .reduce(|sum, norm| sum + norm)
        .expect("checked groups are not empty");
    Ok(total)
}

/// The norm `sqrt(Σ_{p∈g} ‖p‖_F²)` of each group, in group order (for reports and plots).
///
/// # Errors
/// When the model has no group or an empty one.
pub fn group_norms<M: LoraModel>(model: &M) -> Result<Vec<f64>, CoreError> {
    let groups = checked_groups(model)?;
    let squared: Vec<Tensor<1>> = groups.iter().map(group_squared_norm).collect();
    let values: Vec<f64> = read_values(Tensor::cat(squared, 0))?;
    Ok(values.into_iter().map(f64::sqrt).collect())
}

/// The mean squared gradient entry of each adapter group in `grads` (0 for a group without
/// gradients, such as one left out of the optimiser's parameters), in group order: the
/// statistic an adaptive optimiser's second moment tracks, per group.
///
/// # Errors
/// When the model has no group or an empty one, or the values cannot be read back.
pub fn group_gradient_squares<M: LoraModel>(
    model: &M,
    grads: &GradientsParams,
) -> Result<Vec<f64>, CoreError> {
    let groups = checked_groups(model)?;
    let mut sums = Vec::new();
    let mut counts = Vec::with_capacity(groups.len());
    for group in &groups {
        let params = group.layers.iter().flat_map(|layer| {
            [
                (layer.lora_a.id, layer.lora_a.val()),
                (layer.lora_b.id, layer.lora_b.val()),
            ]
        });
        let mut count = 0usize;
        let mut sum: Option<Tensor<1>> = None;
        for (id, value) in params {
            if let Some(grad) = grads.get::<2>(id) {
                count += value.shape().num_elements();
                let squares = grad.square().sum();
                sum = Some(match sum {
                    Some(total) => total + squares,
                    None => squares,
                });
            }
        }
        counts.push(count);
        if let Some(sum) = sum {
            sums.push(sum);
        }
    }
    let mut read = if sums.is_empty() {
        Vec::new()
    } else {
        read_values::<1, _, f64>(Tensor::cat(sums, 0))?
    }
    .into_iter();
    Ok(counts
        .into_iter()
        .map(|count| match count {
            0 => 0.0,
            count => read.next().unwrap_or(0.0) / count as f64,
        })
        .collect())
}

/// The proximal operator of `Σ_g τ_g ‖g‖`: group soft-thresholding, one threshold per group.
///
/// Each group `g` is scaled by `max(0, 1 − τ_g / ‖g‖)`, so a group whose norm is at most `τ_g`
/// becomes exactly zero and the others shrink towards zero. After a plain gradient step of size
/// `lr` on the other losses, `τ_g = lr · α` gives the proximal-gradient step for `α · L_s`;
/// after an adaptive step, `lr · α / d_g` with the group's preconditioner `d_g`. Returns, per
/// group, whether it is now zero.
///
/// # Errors
/// When the model has no group or an empty one, `thresholds` does not have one value per
/// group, or a threshold is negative or not finite.
pub fn group_soft_threshold<M: LoraModel>(
    model: &mut M,
    thresholds: &[f64],
) -> Result<Vec<bool>, CoreError> {
    for &threshold in thresholds {
        ensure_non_negative("group soft-threshold", threshold)?;
    }
    let norms = group_norms(model)?;
    if thresholds.len() != norms.len() {
        return Err(CoreError::ShapeMismatch {
            what: "group soft-thresholds (one per group)",
            expected: vec![norms.len()],
            found: vec![thresholds.len()],
        });
    }
    let mut groups = checked_groups_mut(model)?;
    let mut zeroed = Vec::with_capacity(norms.len());
    for ((group, norm), &threshold) in groups.iter_mut().zip(norms).zip(thresholds) {
        let factor = if norm <= threshold {
            0.0
        } else {
            1.0 - threshold / norm
        };
        if factor != 1.0 {
            group
                .layers
                .iter_mut()
                .for_each(|layer| layer.scale_factors(factor));
        }
        zeroed.push(factor == 0.0);
    }
    Ok(zeroed)
}
