//! A pre-norm Transformer block with LoRA on its FFN.

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::Tensor;
use gs_lora_core::{LoraLinear, fused};

use super::attention::Attention;

/// `fc2(GELU(fc1(x)))` with the exact (erf) GELU ([`fused::gelu`]), both Linears adapted with
/// LoRA: one GS-LoRA adapter group.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `D → mlp_hidden`.
    pub fc1: LoraLinear,
    /// `mlp_hidden → D`.
    pub fc2: LoraLinear,
}

impl Mlp {
    /// # Shapes
    /// `[B, N, D] → [B, N, D]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.fc2.forward(fused::gelu(self.fc1.forward(x)))
    }
}

/// `x + ls1 · attn(norm1(x))`, then `x + ls2 · mlp(norm2(x))`.
#[derive(Module, Debug)]
pub struct Block {
    /// Norm before attention.
    pub norm1: LayerNorm,
    /// Self-attention.
    pub attn: Attention,
    /// Layer scale of the attention branch (DINOv2), `[D]`.
    pub ls1: Option<Param<Tensor<1>>>,
    /// Norm before the FFN.
    pub norm2: LayerNorm,
    /// The FFN, with LoRA.
    pub mlp: Mlp,
    /// Layer scale of the FFN branch, `[D]`.
    pub ls2: Option<Param<Tensor<1>>>,
}

fn layer_scale(x: Tensor<3>, scale: &Option<Param<Tensor<1>>>) -> Tensor<3> {
    match scale {
        Some(gamma) => x.mul(gamma.val().unsqueeze::<3>()),
        None => x,
    }
}

impl Block {
    /// # Shapes
    /// `[B, N, D] → [B, N, D]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + layer_scale(self.attn.forward(self.norm1.forward(x)), &self.ls1);
        x.clone() + layer_scale(self.mlp.forward(self.norm2.forward(x)), &self.ls2)
    }
}
