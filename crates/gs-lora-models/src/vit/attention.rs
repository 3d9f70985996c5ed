//! Multi-head self-attention with a fused `qkv` projection.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use gs_lora_core::fused;

/// `softmax(q kᵀ · scale) v` over `num_heads` heads, then `proj`.
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
}

impl Attention {
    /// # Shapes
    /// - input: `[B, N, D]`
    /// - output: `[B, N, D]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let heads = fused::qkv_attention(self.qkv.forward(x), self.num_heads, self.scale);
        self.proj.forward(heads)
    }
}
