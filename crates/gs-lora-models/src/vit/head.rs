//! Classifier heads: a plain Linear, or the CosFace head of the paper's face Transformer.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::VitConfig;
use crate::error::{ModelError, Result};
use crate::weights::{Init, Weights, frozen};

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

    /// Number of classes `C`.
    pub fn num_classes(&self) -> usize {
        match self {
            Head::Linear(linear) => linear.weight.dims()[1],
            Head::CosFace(cosface) => cosface.weight.dims()[0],
        }
    }

    /// The head scoring only the classes `rows`, in that order (row `i` of the result is class
    /// `rows[i]` of this head): how the official ImageNet run cuts the 1000-way head to its
    /// 100 classes. The selected weights stay frozen.
    ///
    /// # Errors
    /// [`ModelError::Input`] when a row is not a class of this head.
    pub fn select_classes(self, rows: &[usize]) -> Result<Self> {
        let classes = self.num_classes();
        if let Some(bad) = rows.iter().find(|&&row| row >= classes) {
            return Err(ModelError::Input {
                expected: format!("head rows below the head's {classes} classes"),
                found: format!("row {bad}"),
            });
        }
        let index = |device| {
            let shape = [rows.len()];
            let rows: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(rows, shape), device)
        };
        Ok(match self {
            Head::Linear(linear) => {
                let weight = linear.weight.val();
                let index = index(&weight.device());
                Head::Linear(Linear {
                    weight: frozen(weight.select(1, index.clone())),
                    bias: linear.bias.map(|bias| frozen(bias.val().select(0, index))),
                })
            }
            Head::CosFace(cosface) => {
                let weight = cosface.weight.val();
                let index = index(&weight.device());
                Head::CosFace(CosFace {
                    weight: frozen(weight.select(0, index)),
                    ..cosface
                })
            }
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
