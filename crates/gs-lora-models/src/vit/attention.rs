//! Multi-head self-attention with a fused `qkv` projection.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use gs_lora_core::{dropout, fused};

use super::VitConfig;
use crate::error::Result;
use crate::weights::Weights;

/// `softmax(q kᵀ · scale) v` over `num_heads` heads, then `proj` and dropout while training.
#[derive(Module, Debug)]
pub struct Attention {
    /// Fused projection to `[q | k | v]`, each head-major.
    pub qkv: Linear,
    /// Output projection.
    pub proj: Linear,
    /// Number of heads.
    pub num_heads: usize,
    /// Scale of the logits, `head_dim^-1/2`.
    pub scale: f64,
    /// Dropout probability after `proj`.
    pub dropout: f64,
}

impl Attention {
    /// Loads `qkv` (`D → 3D`, biased as the config says) and `proj`.
    pub(crate) fn load(mut weights: Weights, config: &VitConfig) -> Result<Self> {
        let d = config.hidden_size;
        let mut qkv = weights.pp("qkv");
        Ok(Self {
            qkv: match config.qkv_bias {
                true => qkv.linear(d, 3 * d)?,
                false => qkv.linear_no_bias(d, 3 * d)?,
            },
            proj: weights.pp("proj").linear(d, d)?,
            num_heads: config.num_heads,
            scale: config.attention_scale(),
            dropout: config.dropout,
        })
    }

    /// # Shapes
    /// - input: `[B, N, D]`
    /// - output: `[B, N, D]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let heads = fused::qkv_attention(self.qkv.forward(x), self.num_heads, self.scale);
        dropout(self.proj.forward(heads), self.dropout)
    }
}
