//! A pre-norm Transformer block with LoRA on its FFN.

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::Tensor;
use gs_lora_core::lora::derive_seed;
use gs_lora_core::{LoraConfig, LoraLinear, dropout, fused};

use super::VitConfig;
use super::attention::Attention;
use crate::error::Result;
use crate::weights::{Init, Weights};

/// `drop(fc2(drop(GELU(fc1(x)))))` with the exact (erf) GELU ([`fused::gelu`]) and dropout
/// while training, both Linears adapted with LoRA: one GS-LoRA adapter group.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `D → mlp_hidden`.
    pub fc1: LoraLinear,
    /// `mlp_hidden → D`.
    pub fc2: LoraLinear,
    /// Dropout probability after the activation and after `fc2`.
    pub dropout: f64,
}

impl Mlp {
    /// Loads `fc1` (`d → hidden`) and `fc2` (`hidden → d`), each with a fresh adapter drawn
    /// from `seed`.
    fn load(
        mut weights: Weights,
        config: &VitConfig,
        lora: &LoraConfig,
        seed: u64,
    ) -> Result<Self> {
        let (d, hidden) = (config.hidden_size, config.mlp_hidden);
        let fc1 = weights.pp("fc1").linear(d, hidden)?;
        let fc2 = weights.pp("fc2").linear(hidden, d)?;
        Ok(Self {
            fc1: lora.init(fc1, derive_seed(seed, 0))?,
            fc2: lora.init(fc2, derive_seed(seed, 1))?,
            dropout: config.dropout,
        })
    }

    /// # Shapes
    /// `[B, N, D] → [B, N, D]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let hidden = dropout(fused::gelu(self.fc1.forward(x)), self.dropout);
        dropout(self.fc2.forward(hidden), self.dropout)
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
    /// Loads block `weights` of `config`, with fresh adapters on the FFN drawn from `seed`.
    pub(crate) fn load(
        mut weights: Weights,
        config: &VitConfig,
        lora: &LoraConfig,
        seed: u64,
    ) -> Result<Self> {
        let (d, eps) = (config.hidden_size, config.layer_norm_eps);
        // The FFN first: a checkpoint that does not fit is reported at the same tensor as always.
        let mlp = Mlp::load(weights.pp("mlp"), config, lora, seed)?;
        let layer_scale = |mut weights: Weights| {
            config
                .layer_scale
                .then(|| weights.param("gamma", [d], Init::Scale))
                .transpose()
        };
        Ok(Self {
            norm1: weights.pp("norm1").layer_norm(d, eps)?,
            attn: Attention::load(weights.pp("attn"), config)?,
            ls1: layer_scale(weights.pp("ls1"))?,
            norm2: weights.pp("norm2").layer_norm(d, eps)?,
            mlp,
            ls2: layer_scale(weights.pp("ls2"))?,
        })
    }

    /// # Shapes
    /// `[B, N, D] → [B, N, D]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + layer_scale(self.attn.forward(self.norm1.forward(x)), &self.ls1);
        x.clone() + layer_scale(self.mlp.forward(self.norm2.forward(x)), &self.ls2)
    }
}
