//! The loss of one step, term by term: what a method minimises and what `curves.csv` records.
//!
//! `L = L_retain + β · L_forget + α · penalty (+ L_prototype)`, the penalty being the method's
//! regulariser: the group lasso `Σ_groups ‖group‖₂` of the adapter methods, the anchors or the
//! distillation of the baselines.

use std::ops::Add;

use burn::tensor::Tensor;

/// The weights of one step's loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    /// Weight of the retention loss (1 for GS-LoRA).
    pub retain: f64,
    /// Weight `β` of the forgetting loss.
    pub beta: f64,
    /// Weight `α` of the penalty (the group lasso's already warmed up for the epoch).
    pub penalty: f64,
}

/// The terms of one step's loss, each `[1]` and differentiable.
#[derive(Debug, Clone)]
pub struct LossTerms {
    /// The weighted sum that is minimised.
    pub total: Tensor<1>,
    /// Cross-entropy on the remaining batch.
    pub retain: Tensor<1>,
    /// `relu(BND − CE)` on the forget batch (unweighted).
    pub forget: Tensor<1>,
    /// The method's penalty (unweighted): the group lasso `Σ ‖group‖₂`, the anchors
    /// `Σ Ω(θ − θ*)²`, or the distillation.
    pub penalty: Tensor<1>,
    /// The prototype loss (GS-LoRA++), weighted by its own config.
    pub prototype: Option<Tensor<1>>,
}

impl LossTerms {
    /// The terms and their weighted sum `w_r·retain + β·forget + α·penalty (+ prototype)`.
    pub fn new(
        retain: Tensor<1>,
        forget: Tensor<1>,
        penalty: Tensor<1>,
        prototype: Option<Tensor<1>>,
        weights: LossWeights,
    ) -> Self {
        let mut total = retain.clone().mul_scalar(weights.retain)
            + forget.clone().mul_scalar(weights.beta)
            + penalty.clone().mul_scalar(weights.penalty);
        if let Some(term) = &prototype {
            total = total + term.clone();
        }
        Self {
            total,
            retain,
            forget,
            penalty,
            prototype,
        }
    }

    /// The terms on the host in one read back (NaN where a value cannot be read; prototype 0
    /// without prototypes).
    pub fn values(&self) -> LossValues {
        let prototype = self
            .prototype
            .clone()
            .unwrap_or_else(|| self.total.zeros_like());
        let terms = [
            self.total.clone(),
            self.retain.clone(),
            self.forget.clone(),
            self.penalty.clone(),
            prototype,
        ]
        .map(Tensor::inner);
        let values: [f64; 5] = Tensor::cat(terms.to_vec(), 0)
            .try_into_vec_as::<f64>()
            .ok()
            .and_then(|values| values.try_into().ok())
            .unwrap_or([f64::NAN; 5]);
        let [total, retain, forget, penalty, prototype] = values;
        LossValues {
            total,
            retain,
            forget,
            penalty,
            prototype,
        }
    }
}

/// The terms of [`LossTerms`] as numbers (one step's, or sums and means over an epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossValues {
    /// The weighted sum that is minimised.
    pub total: f64,
    /// Retention loss.
    pub retain: f64,
    /// Forgetting loss (unweighted).
    pub forget: f64,
    /// The method's penalty (unweighted).
    pub penalty: f64,
    /// Prototype loss (weighted by its own config; 0 without).
    pub prototype: f64,
}

impl LossValues {
    /// Every term divided by `count`.
    pub fn mean(self, count: usize) -> Self {
        let n = count as f64;
        Self {
            total: self.total / n,
            retain: self.retain / n,
            forget: self.forget / n,
            penalty: self.penalty / n,
            prototype: self.prototype / n,
        }
    }
}

impl Add for LossValues {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            total: self.total + other.total,
            retain: self.retain + other.retain,
            forget: self.forget + other.forget,
            penalty: self.penalty + other.penalty,
            prototype: self.prototype + other.prototype,
        }
    }
}

/// The value of a one-element tensor on the host (NaN if it cannot be read).
pub(crate) fn scalar(tensor: Tensor<1>) -> f64 {
    tensor
        .inner()
        .try_into_vec_as::<f64>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f64::NAN)
}

/// `values` as a `[rows, values.len() / rows]` tensor on the default device (tests' logits).
#[cfg(test)]
pub(crate) fn matrix(rows: usize, values: &[f32]) -> Tensor<2> {
    let cols = values.len() / rows;
    Tensor::from_data(
        burn::tensor::TensorData::new(values.to_vec(), [rows, cols]),
        &burn::tensor::Device::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn scalar(value: f64, device: &Device) -> Tensor<1> {
        Tensor::from_data(TensorData::new(vec![value as f32], [1]), device)
    }

    /// The total against a hand sum with distinct weights, and the order of `values`.
    /// Catches β and α swapped, either dropped, the prototype term dropped or weighted again.
    #[test]
    fn the_total_is_retain_plus_weighted_forget_lasso_and_prototype() {
        let device = Device::default();
        let weights = LossWeights {
            retain: 1.0,
            beta: 0.3,
            penalty: 0.01,
        };
        let terms = LossTerms::new(
            scalar(1.5, &device),
            scalar(2.0, &device),
            scalar(3.0, &device),
            Some(scalar(0.7, &device)),
            weights,
        );
        let v = terms.values();
        let values = [v.total, v.retain, v.forget, v.penalty, v.prototype];
        let expected = [1.5 + 0.3 * 2.0 + 0.01 * 3.0 + 0.7, 1.5, 2.0, 3.0, 0.7];
        for (value, expected) in values.iter().zip(expected) {
            assert!((value - expected).abs() < 1e-6, "{values:?} vs {expected}");
        }
        let without = LossTerms::new(
            scalar(1.5, &device),
            scalar(2.0, &device),
            scalar(3.0, &device),
            None,
            weights,
        );
        assert!((without.values().total - 2.13).abs() < 1e-6);
        assert_eq!(without.values().prototype, 0.0);
    }
}
