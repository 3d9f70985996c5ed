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
        let [batch, tokens, dim] = x.dims();
        let head_dim = dim / self.num_heads;
        let qkv = self
            .qkv
            .forward(x)
            .reshape([batch, tokens, 3, self.num_heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| {
            qkv.clone()
                .slice_dim(0, i..i + 1)
                .reshape([batch, self.num_heads, tokens, head_dim])
        };
        let out = fused::attention(part(0), part(1), part(2), self.scale);
        self.proj
            .forward(out.swap_dims(1, 2).reshape([batch, tokens, dim]))
    }
}
