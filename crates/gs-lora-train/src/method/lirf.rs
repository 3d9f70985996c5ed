//! LIRF's loss (Ye et al., ECCV 2022; PROTOCOL §3, `M:baselines/LIRFtrain.py`), run by
//! [`Distilled`](super::Distilled) with its teacher: only the model's
//! lower half trains (the embeddings and the first `⌊depth/2⌋` blocks,
//! [`Family::lower_half_params`]); the upper half stays as the pretrained teacher's. An epoch is
//! one pass over the forget batches, the remaining ones cycled. With `F′` the relabelled forget
//! batch, `h` the tokens after the lower half, `a` = [`ALPHA`] and `T` = [`TEMPERATURE`]:
//!
//! `L = (1 − a)·CE(F′) − 300·AT(h_s(F), h_t(F)) + 10·a·T²·KL_T(F) + 5·CE(R)`,
//!
//! `at(h) = normalise(mean over tokens of h²)` with entries below 0.005 set to 0,
//! `AT = mean (at_s − at_t)²`, and `KL_T` the batch-mean `KL(softmax(z_t/T) ‖ softmax(z_s/T))`
//! over the classes the task keeps. Two departures from the official code, both where it is
//! broken (PROTOCOL §6.8): the distillation reads the columns of the classes the task does not
//! forget (the official `[:, K:]` slices label-index space, whichever classes those are), and
//! the deposit model's term is left out (the official never trains the deposit model, so the
//! term moves nothing). The attention term is unbounded, as the official.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor, TensorData};

use crate::engine::{Criterion, LossTerms, LossWeights, Objective, Pair};
use crate::error::{Result, TrainError};

/// `a`: the share of the distillation against the cross-entropy.
pub const ALPHA: f64 = 0.1;
/// The distillation temperature `T`.
pub const TEMPERATURE: f64 = 10.0;
/// Weight of the attention transfer (subtracted).
pub const ATTENTION_WEIGHT: f64 = 300.0;
/// Weight of the distillation term `a·T²·KL`.
pub const DISTILL_WEIGHT: f64 = 10.0;
/// Weight of the cross-entropy on the remaining samples.
pub const REPLAY_WEIGHT: f64 = 5.0;
/// Attention entries below this are set to 0.
pub const ATTENTION_FLOOR: f64 = 0.005;

/// `at(h)` of hidden tokens `[N, T, D]`: the mean over tokens of `h²`, L2-normalised over the
/// features (`max(‖·‖, 10⁻¹²)`, as PyTorch's `normalize`), entries below [`ATTENTION_FLOOR`]
/// set to 0, `[N, D]`.
pub fn attention(hidden: Tensor<3>) -> Tensor<2> {
    let [n, _, d] = hidden.dims();
    let energy = (hidden.clone() * hidden).mean_dim(1).reshape([n, d]);
    let norm = (energy.clone() * energy.clone())
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    let at = energy / norm;
    let keep = at.clone().greater_equal_elem(ATTENTION_FLOOR).float();
    at * keep
}

/// `mean (at(h_s) − at(h_t))²` over every entry, `[1]`.
pub fn attention_transfer(student: Tensor<3>, teacher: Tensor<3>) -> Tensor<1> {
    let gap = attention(student) - attention(teacher);
    (gap.clone() * gap).mean()
}

/// The batch-mean `KL(softmax(t/T) ‖ softmax(s/T))` over the columns `keep` of `[N, C]` logits,
/// `[1]`.
pub fn kept_divergence(
    student: Tensor<2>,
    teacher: Tensor<2>,
    keep: &[usize],
    temperature: f64,
) -> Tensor<1> {
    let rows = student.dims()[0].max(1) as f64;
    let index = Tensor::<1, Int>::from_data(
        TensorData::new(keep.iter().map(|&c| c as i64).collect(), [keep.len()]),
        &student.device(),
    );
    let s = student.select(1, index.clone()).div_scalar(temperature);
    let t = teacher.select(1, index).div_scalar(temperature);
    let p_t = softmax(t.clone(), 1);
    (p_t * (log_softmax(t, 1) - log_softmax(s, 1)))
        .sum()
        .div_scalar(rows)
}

/// LIRF's loss of one step of `model` against `teacher` on a remaining and a forget batch of
/// `objective`'s family, the forget samples relabelled by `draw` and the distillation left off
/// the task's `forget` classes.
///
/// # Errors
/// A failing forward pass or loss, a family without the split, or no class left to distil.
pub fn lirf_loss<O: Objective>(
    objective: &O,
    (model, teacher): (&O::Model, &O::Model),
    batches: Pair<O::Batch>,
    forget_classes: &[usize],
    draw: &mut dyn FnMut(usize) -> usize,
) -> Result<LossTerms> {
    let student = objective.criterion(model, batches.forget.clone())?;
    let teacher = objective.criterion(teacher, batches.forget)?;
    let forget = student.relabelled_loss(draw)?;
    let retain = objective.criterion(model, batches.retain)?.loss()?;
    let logits = student.logits();
    let keep: Vec<usize> = (0..logits.dims()[1])
        .filter(|c| !forget_classes.contains(c))
        .collect();
    if keep.is_empty() {
        return Err(TrainError::Data(
            "LIRF distils the classes a task keeps; this task forgets every class".into(),
        ));
    }
    let kl = kept_divergence(logits, teacher.logits().detach(), &keep, TEMPERATURE);
    let transfer = attention_transfer(student.middle()?, teacher.middle()?.detach());
    let penalty = kl.mul_scalar(DISTILL_WEIGHT * ALPHA * TEMPERATURE * TEMPERATURE)
        - transfer.mul_scalar(ATTENTION_WEIGHT);
    let weights = LossWeights {
        retain: REPLAY_WEIGHT,
        beta: 1.0 - ALPHA,
        penalty: 1.0,
    };
    Ok(LossTerms::new(retain, forget, penalty, None, weights))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::engine::scalar;

    fn tensor3(shape: [usize; 3], values: &[f32]) -> Tensor<3> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), &Device::default())
    }

    /// One sample of two tokens `(3, 0, 0)` and `(1, 0, 2)`: the mean of squares is
    /// `(5, 0, 2)`, normalised `(5, 0, 2)/√29`; a third feature at `0.004·√…` of the norm is
    /// floored to 0. Against a teacher of zeros the transfer is the mean of the squares.
    /// Catches the mean taken over features instead of tokens, no normalisation, or the floor
    /// missing.
    #[test]
    fn attention_maps_are_normalised_token_energies() {
        let at = attention(tensor3([1, 2, 3], &[3.0, 0.0, 0.0, 1.0, 0.0, 2.0]))
            .try_into_vec_as::<f64>()
            .expect("f64");
        let norm = 29f64.sqrt();
        for (found, expected) in at.iter().zip([5.0 / norm, 0.0, 2.0 / norm]) {
            assert!((found - expected).abs() < 1e-6, "{at:?}");
        }
        // Energies (1, 0.004): normalised (≈1, ≈0.004) — the second falls under the floor.
        let floored = attention(tensor3([1, 1, 2], &[1.0, 0.004f32.sqrt()]))
            .try_into_vec_as::<f64>()
            .expect("f64");
        assert_eq!(floored[1], 0.0, "{floored:?}");
        let transfer = scalar(attention_transfer(
            tensor3([1, 2, 3], &[3.0, 0.0, 0.0, 1.0, 0.0, 2.0]),
            tensor3([1, 2, 3], &[0.0; 6]),
        ));
        assert!(
            (transfer - (25.0 + 4.0) / 29.0 / 3.0).abs() < 1e-6,
            "{transfer}"
        );
    }

    /// Logits over classes 0–2 where class 1 is forgotten: the divergence reads columns 0 and
    /// 2 only, so a student that differs from the teacher in column 1 alone pays nothing, and
    /// one that differs in the kept columns pays the two-class KL by hand at `T = 1`.
    /// Catches the forget column distilled, or the official `[:, K:]` slice.
    #[test]
    fn lirf_distils_only_the_kept_classes() {
        let device = Device::default();
        let m = |v: [f32; 3]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, 3]), &device);
        let same = scalar(kept_divergence(
            m([0.0, 9.0, 0.0]),
            m([0.0, -9.0, 0.0]),
            &[0, 2],
            1.0,
        ));
        assert!(same.abs() < 1e-6, "{same}");
        let ln3 = 3f32.ln();
        let kl = scalar(kept_divergence(
            m([0.0, 0.0, ln3]),
            m([ln3, 5.0, 0.0]),
            &[0, 2],
            1.0,
        ));
        let expected = 0.75 * (0.75f64 / 0.25).ln() + 0.25 * (0.25f64 / 0.75).ln();
        assert!((kl - expected).abs() < 1e-5, "{kl} vs {expected}");
    }
}
