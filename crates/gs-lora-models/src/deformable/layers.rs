//! Deformable DETR's encoder and decoder layers (post-norm, as the reference), with LoRA on
//! both FFN Linears of every layer: one GS-LoRA adapter group per layer.
//!
//! Parameter names follow the released checkpoints (`self_attn`, `self_attn_layer_norm`,
//! `encoder_attn`, `fc1`, `fc2`, `final_layer_norm`; the decoder's self-attention has `q_proj`,
//! `k_proj`, `v_proj`, `out_proj`).

use burn::module::Module;
use burn::nn::{LayerNorm, Linear, Relu};
use burn::tensor::{Bool, Tensor};
use gs_lora_core::lora::derive_seed;
use gs_lora_core::{LoraConfig, LoraLinear, dropout, fused};

use super::attention::{DeformableAttentionConfig, MultiScaleDeformableAttention};
use super::sampling::SpatialShapes;
use crate::error::Result;
use crate::weights::Weights;

/// LayerNorm epsilon of the reference (PyTorch's default).
pub(crate) const LAYER_NORM_EPS: f64 = 1e-5;

/// The sizes of one encoder or decoder layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerConfig {
    /// Model width `d`.
    pub d_model: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// FFN hidden width.
    pub ffn_dim: usize,
    /// Feature levels.
    pub num_levels: usize,
    /// Sampling points per level and head.
    pub num_points: usize,
    /// Dropout probability on the residual branches while training.
    pub dropout: f64,
    /// Dropout probability after the FFN's activation while training.
    pub activation_dropout: f64,
    /// Dropout probability on the self-attention weights while training (decoder).
    pub attention_dropout: f64,
}

impl LayerConfig {
    /// One of the layer's LayerNorms.
    fn norm(&self, mut weights: Weights) -> Result<LayerNorm> {
        weights.layer_norm(self.d_model, LAYER_NORM_EPS)
    }

    /// One of the layer's deformable attentions.
    fn deformable(&self, weights: Weights) -> Result<MultiScaleDeformableAttention> {
        let config = DeformableAttentionConfig {
            d_model: self.d_model,
            num_heads: self.num_heads,
            num_levels: self.num_levels,
            num_points: self.num_points,
        };
        MultiScaleDeformableAttention::load(weights, config)
    }
}

/// `drop(fc2(drop_act(ReLU(fc1(x)))))` with LoRA on both Linears and dropout while training.
#[derive(Module, Debug)]
pub struct Ffn {
    /// `d → ffn_dim`.
    pub fc1: LoraLinear,
    /// ReLU.
    pub act: Relu,
    /// `ffn_dim → d`.
    pub fc2: LoraLinear,
    /// Dropout probability after the activation.
    pub activation_dropout: f64,
    /// Dropout probability after `fc2`.
    pub dropout: f64,
}

impl Ffn {
    /// Loads the layer's `fc1` and `fc2` (they sit in the layer itself, not in a submodule),
    /// each with a fresh adapter drawn from `seed`.
    fn load(
        weights: &mut Weights,
        config: &LayerConfig,
        lora: &LoraConfig,
        seed: u64,
    ) -> Result<Self> {
        let (d, hidden) = (config.d_model, config.ffn_dim);
        let fc1 = weights.pp("fc1").linear(d, hidden)?;
        let fc2 = weights.pp("fc2").linear(hidden, d)?;
        Ok(Self {
            fc1: LoraLinear::from_linear(fc1, lora, derive_seed(seed, 1))?,
            act: Relu::new(),
            fc2: LoraLinear::from_linear(fc2, lora, derive_seed(seed, 2))?,
            activation_dropout: config.activation_dropout,
            dropout: config.dropout,
        })
    }

    /// # Shapes
    /// `[N, L, d] → [N, L, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let hidden = dropout(
            self.act.forward(self.fc1.forward(x)),
            self.activation_dropout,
        );
        dropout(self.fc2.forward(hidden), self.dropout)
    }
}

/// Multi-head self-attention whose queries and keys (not values) get the position embedding,
/// with dropout on the attention weights while training (as `nn.MultiheadAttention`).
#[derive(Module, Debug)]
pub struct SelfAttention {
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub out_proj: Linear,
    /// Heads.
    pub num_heads: usize,
    /// Dropout probability on the attention weights.
    pub attention_dropout: f64,
}

impl SelfAttention {
    fn load(mut weights: Weights, config: &LayerConfig) -> Result<Self> {
        let d = config.d_model;
        Ok(Self {
            q_proj: weights.pp("q_proj").linear(d, d)?,
            k_proj: weights.pp("k_proj").linear(d, d)?,
            v_proj: weights.pp("v_proj").linear(d, d)?,
            out_proj: weights.pp("out_proj").linear(d, d)?,
            num_heads: config.num_heads,
            attention_dropout: config.attention_dropout,
        })
    }

    /// # Shapes
    /// `x`, `position`: `[N, L, d]` → `[N, L, d]`
    pub fn forward(&self, x: Tensor<3>, position: Option<Tensor<3>>) -> Tensor<3> {
        let [batch, len, d] = x.dims();
        let head_dim = d / self.num_heads;
        let query_key = match position {
            Some(position) => x.clone() + position,
            None => x.clone(),
        };
        let heads = |t: Tensor<3>| {
            t.reshape([batch, len, self.num_heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = heads(self.q_proj.forward(query_key.clone()));
        let k = heads(self.k_proj.forward(query_key));
        let v = heads(self.v_proj.forward(x));
        let scale = (head_dim as f64).powf(-0.5);
        let out = if self.attention_dropout > 0.0 && v.device().is_autodiff() {
            let weights = fused::softmax((q * scale).matmul(k.swap_dims(2, 3)));
            dropout(weights, self.attention_dropout).matmul(v)
        } else {
            fused::attention(q, k, v, scale)
        };
        self.out_proj
            .forward(out.swap_dims(1, 2).reshape([batch, len, d]))
    }
}

/// Encoder layer: deformable self-attention over all levels' tokens, then the FFN, each
/// followed by dropout while training, residual and LayerNorm.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    /// Deformable self-attention.
    pub self_attn: MultiScaleDeformableAttention,
    /// Norm after the attention residual.
    pub self_attn_layer_norm: LayerNorm,
    /// The FFN, with LoRA.
    pub ffn: Ffn,
    /// Norm after the FFN residual.
    pub final_layer_norm: LayerNorm,
    /// Dropout probability on the attention branch.
    pub dropout: f64,
}

impl EncoderLayer {
    /// Loads the layer from `weights`, with fresh adapters drawn from `seed`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, or an invalid config.
    pub fn load(
        mut weights: Weights,
        config: &LayerConfig,
        lora: &LoraConfig,
        seed: u64,
    ) -> Result<Self> {
        Ok(Self {
            self_attn: config.deformable(weights.pp("self_attn"))?,
            self_attn_layer_norm: config.norm(weights.pp("self_attn_layer_norm"))?,
            ffn: Ffn::load(&mut weights, config, lora, seed)?,
            final_layer_norm: config.norm(weights.pp("final_layer_norm"))?,
            dropout: config.dropout,
        })
    }

    /// # Shapes
    /// - `x`, `position`: `[N, S, d]`; `mask`: `[N, S]` (true on real tokens)
    /// - `reference_points`: `[N, S, L, 2]`
    /// - output: `[N, S, d]`
    ///
    /// # Errors
    /// Shapes that disagree.
    pub fn forward(
        &self,
        x: Tensor<3>,
        position: Tensor<3>,
        mask: Option<Tensor<2, Bool>>,
        reference_points: Tensor<4>,
        shapes: &SpatialShapes,
    ) -> Result<Tensor<3>> {
        let attended = self.self_attn.forward(
            x.clone(),
            Some(position),
            x.clone(),
            mask,
            reference_points,
            shapes,
        )?;
        let x = self
            .self_attn_layer_norm
            .forward(x + dropout(attended, self.dropout));
        Ok(self
            .final_layer_norm
            .forward(x.clone() + self.ffn.forward(x)))
    }
}

/// Decoder layer: self-attention among the queries, deformable cross-attention into the
/// encoder's tokens, then the FFN, each followed by dropout while training, residual and
/// LayerNorm.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Self-attention among the object queries.
    pub self_attn: SelfAttention,
    /// Norm after the self-attention residual.
    pub self_attn_layer_norm: LayerNorm,
    /// Deformable cross-attention into the encoder output.
    pub encoder_attn: MultiScaleDeformableAttention,
    /// Norm after the cross-attention residual.
    pub encoder_attn_layer_norm: LayerNorm,
    /// The FFN, with LoRA.
    pub ffn: Ffn,
    /// Norm after the FFN residual.
    pub final_layer_norm: LayerNorm,
    /// Dropout probability on the two attention branches.
    pub dropout: f64,
}

impl DecoderLayer {
    /// Loads the layer from `weights`, with fresh adapters drawn from `seed`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, or an invalid config.
    pub fn load(
        mut weights: Weights,
        config: &LayerConfig,
        lora: &LoraConfig,
        seed: u64,
    ) -> Result<Self> {
        Ok(Self {
            self_attn: SelfAttention::load(weights.pp("self_attn"), config)?,
            self_attn_layer_norm: config.norm(weights.pp("self_attn_layer_norm"))?,
            encoder_attn: config.deformable(weights.pp("encoder_attn"))?,
            encoder_attn_layer_norm: config.norm(weights.pp("encoder_attn_layer_norm"))?,
            ffn: Ffn::load(&mut weights, config, lora, seed)?,
            final_layer_norm: config.norm(weights.pp("final_layer_norm"))?,
            dropout: config.dropout,
        })
    }

    /// # Shapes
    /// - `queries`, `query_position`: `[N, Q, d]`
    /// - `reference_points`: `[N, Q, L, 2]` or `[N, Q, L, 4]`
    /// - `memory`: `[N, S, d]`; `memory_mask`: `[N, S]` (true on real tokens)
    /// - output: `[N, Q, d]`
    ///
    /// # Errors
    /// Shapes that disagree.
    pub fn forward(
        &self,
        queries: Tensor<3>,
        query_position: Tensor<3>,
        reference_points: Tensor<4>,
        memory: Tensor<3>,
        memory_mask: Option<Tensor<2, Bool>>,
        shapes: &SpatialShapes,
    ) -> Result<Tensor<3>> {
        let attended = self
            .self_attn
            .forward(queries.clone(), Some(query_position.clone()));
        let x = self
            .self_attn_layer_norm
            .forward(queries + dropout(attended, self.dropout));
        let attended = self.encoder_attn.forward(
            x.clone(),
            Some(query_position),
            memory,
            memory_mask,
            reference_points,
            shapes,
        )?;
        let x = self
            .encoder_attn_layer_norm
            .forward(x + dropout(attended, self.dropout));
        Ok(self
            .final_layer_norm
            .forward(x.clone() + self.ffn.forward(x)))
    }
}
