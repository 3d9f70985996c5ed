//! A Linear layer with a LoRA adapter.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::Tensor;

use super::{LoraConfig, LoraInit};
use crate::error::{CoreError, Result};
use crate::fused;
use crate::param::edit_value;

/// A frozen [`Linear`] plus a trainable low-rank update, as PEFT's `lora.Linear`.
///
/// `y = x W + b + s · (x A) B`, `s = alpha / rank`.
///
/// Factors are stored in Burn's Linear layout (input axis first), the transpose of PyTorch's:
/// - `lora_a`: `[d_input, rank]` (PyTorch/PEFT `lora_A.weight` is `[rank, d_input]`)
/// - `lora_b`: `[rank, d_output]` (PyTorch/PEFT `lora_B.weight` is `[d_output, rank]`)
///
/// After [`merge`](Self::merge) the update lives in `base_layer.weight` and the adapter is
/// skipped in [`forward`](Self::forward) until [`unmerge`](Self::unmerge) or
/// [`reset`](Self::reset), so the update is never applied twice.
#[derive(Module, Debug)]
pub struct LoraLinear {
    /// The adapted layer; its weight and bias never receive gradients.
    pub base_layer: Linear,
    /// Down-projection `A`, shape `[d_input, rank]`.
    pub lora_a: Param<Tensor<2>>,
    /// Up-projection `B`, shape `[rank, d_output]`; zero in a fresh adapter.
    pub lora_b: Param<Tensor<2>>,
    /// Scale `s = alpha / rank`.
    pub scale: f64,
    /// Whether the update is currently folded into `base_layer.weight`.
    pub merged: bool,
}

impl LoraLinear {
    /// Wraps `base_layer`, freezing it, with a fresh adapter whose `A` is drawn from `seed`.
    ///
    /// # Errors
    /// As [`LoraConfig::validate`] for the layer's dimensions.
    pub fn from_linear(base_layer: Linear, config: &LoraConfig, seed: u64) -> Result<Self> {
        let [d_input, d_output] = base_layer.weight.shape().dims();
        config.validate(d_input, d_output)?;
        let device = base_layer.weight.lazy_device();
        let lora_a = config.init.sample_a(d_input, config.rank, seed, &device);
        let lora_b = Tensor::zeros([config.rank, d_output], &device);
        Ok(Self {
            base_layer: base_layer.no_grad(),
            lora_a: Param::from_tensor(lora_a),
            lora_b: Param::from_tensor(lora_b),
            scale: config.scale(),
            merged: false,
        })
    }

    /// Input features.
    pub fn d_input(&self) -> usize {
        self.lora_a.shape().dims::<2>()[0]
    }

    /// Output features.
    pub fn d_output(&self) -> usize {
        self.lora_b.shape().dims::<2>()[1]
    }

    /// Rank of the update.
    pub fn rank(&self) -> usize {
        self.lora_a.shape().dims::<2>()[1]
    }

    /// Whether the update is folded into the base weight.
    pub fn is_merged(&self) -> bool {
        self.merged
    }

    /// Applies the layer.
    ///
    /// # Shapes
    /// - input: `[..., d_input]`
    /// - output: `[..., d_output]`
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        if self.merged {
            return self.base_layer.forward(input);
        }
        fused::lora_linear(
            input,
            self.base_layer.weight.val(),
            self.base_layer.bias.as_ref().map(|bias| bias.val()),
            self.lora_a.val(),
            self.lora_b.val(),
            self.scale,
        )
    }

    /// The update `s · A B` in the base weight's layout `[d_input, d_output]`.
    pub fn delta_weight(&self) -> Tensor<2> {
        self.lora_a
            .val()
            .matmul(self.lora_b.val())
            .mul_scalar(self.scale)
    }

    /// `‖A‖_F² + ‖B‖_F²`, differentiable; shape `[1]`.
    pub fn squared_norm(&self) -> Tensor<1> {
        self.lora_a.val().square().sum() + self.lora_b.val().square().sum()
    }

    /// Folds the update into the base weight: `W ← W + s · A B`.
    ///
    /// # Errors
    /// [`CoreError::AlreadyMerged`] if the update is already folded in.
    pub fn merge(&mut self) -> Result<()> {
        if self.merged {
            return Err(CoreError::AlreadyMerged);
        }
        let delta = self.delta_weight().inner();
        edit_value(&mut self.base_layer.weight, |weight| weight + delta);
        self.merged = true;
        Ok(())
    }

    /// Takes a merged update back out of the base weight: `W ← W − s · A B`.
    ///
    /// # Errors
    /// [`CoreError::NotMerged`] if the update is not folded in.
    pub fn unmerge(&mut self) -> Result<()> {
        if !self.merged {
            return Err(CoreError::NotMerged);
        }
        let delta = self.delta_weight().inner();
        edit_value(&mut self.base_layer.weight, |weight| weight - delta);
        self.merged = false;
        Ok(())
    }

    /// Starts a fresh adapter: `A` drawn with `init` from `seed`, `B = 0`.
    ///
    /// A merged update stays in the base weight (it has become part of the model); an unmerged
    /// one is discarded. The parameter ids are kept, so an optimiser built for this layer keeps
    /// working (its moment estimates should be reset along with the adapter). On an autodiff
    /// device both factors require gradients afterwards, even if the layer was frozen.
    pub fn reset(&mut self, init: LoraInit, seed: u64) {
        let (d_input, rank) = (self.d_input(), self.rank());
        edit_value(&mut self.lora_a, |a| {
            init.sample_a(d_input, rank, seed, &a.device())
        });
        edit_value(&mut self.lora_b, |b| b.zeros_like());
        // A fresh adapter is there to be trained: on an autodiff device its factors track
        // gradients whatever the layer's state before (a pretrained model comes back frozen).
        for factor in [&mut self.lora_a, &mut self.lora_b] {
            if factor.val().is_autodiff() && !factor.val().is_require_grad() {
                *factor = factor.clone().set_require_grad(true);
            }
        }
        self.merged = false;
    }

    /// Multiplies both factors by `factor` (used by the group proximal step).
    pub(crate) fn scale_factors(&mut self, factor: f64) {
        edit_value(&mut self.lora_a, |a| a.mul_scalar(factor));
        edit_value(&mut self.lora_b, |b| b.mul_scalar(factor));
    }
}
