//! Classifier heads: a plain Linear, or the CosFace head of the paper's face Transformer.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use super::VitConfig;
use crate::error::Result;
use crate::weights::{Init, Weights};

/// Which head a model has.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum HeadKind {
    /// `logits = x Wᵀ + b`.
    #[default]
    Linear,
    /// CosFace (Wang et al. 2018): `logits = s · cos(x, w_c)`, and `s · (cos − m)` on the true
    /// class while training.
    CosFace {
        /// Scale `s` (64 in GS-LoRA).
        scale: f64,
        /// Additive cosine margin `m` (0.35 in GS-LoRA).
        margin: f64,
    },
}

/// Large-margin cosine head: class weights and embeddings are L2-normalised.
#[derive(Module, Debug)]
pub struct CosFace {
    /// Class weights `[C, D]` (PyTorch layout, as GS-LoRA's `loss.weight`).
    pub weight: Param<Tensor<2>>,
    /// Scale `s`.
    pub scale: f64,
    /// Margin `m`.
    pub margin: f64,
}

fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x.div(norm)
}

impl CosFace {
    /// `cos(x_b, w_c)`, shape `[B, C]`.
    pub fn cosine(&self, embedding: Tensor<2>) -> Tensor<2> {
        l2_normalize(embedding).matmul(l2_normalize(self.weight.val()).transpose())
    }

    /// `s · cos`: the logits without margin (the natural prediction).
    pub fn forward(&self, embedding: Tensor<2>) -> Tensor<2> {
        self.cosine(embedding).mul_scalar(self.scale)
    }

    /// `s · (cos − m · onehot(y))`: the training logits, which GS-LoRA's evaluation also uses.
    pub fn forward_with_margin(&self, embedding: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<2> {
        let cosine = self.cosine(embedding);
        let [_, classes] = cosine.dims();
        let one_hot = labels.one_hot::<2>(classes).float();
        (cosine - one_hot.mul_scalar(self.margin)).mul_scalar(self.scale)
    }
}

/// A model's classifier.
#[derive(Module, Debug)]
pub enum Head {
    /// A Linear classifier.
    Linear(Linear),
    /// A CosFace classifier.
    CosFace(CosFace),
}

impl Head {
    /// Loads a head of the config's kind for `classes` classes.
    pub(crate) fn load(mut weights: Weights, config: &VitConfig, classes: usize) -> Result<Self> {
        let d = config.hidden_size;
        Ok(match config.head {
            HeadKind::Linear => Head::Linear(weights.linear(d, classes)?),
            HeadKind::CosFace { scale, margin } => Head::CosFace(CosFace {
                weight: weights.param("weight", [classes, d], Init::Linear)?,
                scale,
                margin,
            }),
        })
    }

    /// Class scores `[B, C]` from embeddings `[B, D]` (CosFace without margin).
    pub fn forward(&self, embedding: Tensor<2>) -> Tensor<2> {
        match self {
            Head::Linear(linear) => linear.forward(embedding),
            Head::CosFace(cosface) => cosface.forward(embedding),
        }
    }
}
