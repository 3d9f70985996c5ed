//! One GS-LoRA training step: the combined loss of a remaining and a forget batch, and the
//! adapter update (AdamW on the adapters, then the group proximal step).
//!
//! `L = L_retain + β · relu(BND − CE_forget) + α · Σ_groups ‖group‖₂ (+ L_prototype)`.

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Int, Tensor};
use gs_lora_core::loss::{PrototypeLossConfig, Prototypes, forget_loss, retain_loss};
use gs_lora_core::{LoraModel, adapter_param_ids, group_lasso, group_soft_threshold};
use gs_lora_models::vit::Head;
use gs_lora_models::{VisionTransformer, VitOutput};

use crate::batch::Batch;
use crate::error::{Result, TrainError};

/// The weights of one step's loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    /// Weight `β` of the forgetting loss.
    pub beta: f64,
    /// Bound `BND` of the forgetting loss.
    pub bnd: f64,
    /// Weight `α` of the group lasso (already warmed up for the epoch).
    pub alpha: f64,
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
    /// Group lasso `Σ ‖group‖₂` (unweighted).
    pub lasso: Tensor<1>,
    /// The prototype loss (GS-LoRA++), weighted by its own config.
    pub prototype: Option<Tensor<1>>,
}

impl LossTerms {
    /// The terms and their weighted sum `retain + β·forget + α·lasso (+ prototype)`.
    pub fn new(
        retain: Tensor<1>,
        forget: Tensor<1>,
        lasso: Tensor<1>,
        prototype: Option<Tensor<1>>,
        weights: LossWeights,
    ) -> Self {
        let mut total = retain.clone()
            + forget.clone().mul_scalar(weights.beta)
            + lasso.clone().mul_scalar(weights.alpha);
        if let Some(term) = &prototype {
            total = total + term.clone();
        }
        Self {
            total,
            retain,
            forget,
            lasso,
            prototype,
        }
    }

    /// `[total, retain, forget, lasso, prototype]` on the host in one read back (NaN where a
    /// value cannot be read; prototype 0 without prototypes).
    pub fn values(&self) -> [f64; 5] {
        let prototype = self
            .prototype
            .clone()
            .unwrap_or_else(|| self.total.zeros_like());
        let terms = [
            self.total.clone(),
            self.retain.clone(),
            self.forget.clone(),
            self.lasso.clone(),
            prototype,
        ]
        .map(Tensor::inner);
        Tensor::cat(terms.to_vec(), 0)
            .try_into_vec_as::<f64>()
            .ok()
            .and_then(|values| values.try_into().ok())
            .unwrap_or([f64::NAN; 5])
    }
}

/// Logits for training: CosFace heads add their margin on the true class, as GS-LoRA trains.
fn training_logits(
    model: &VisionTransformer,
    output: VitOutput,
    targets: Tensor<1, Int>,
) -> Result<Tensor<2>> {
    match (&model.head, output.logits) {
        (Some(Head::CosFace(cosface)), _) => {
            Ok(cosface.forward_with_margin(output.embedding, targets))
        }
        (Some(Head::Linear(_)), Some(logits)) => Ok(logits),
        _ => Err(TrainError::InvalidSetting(
            "the model has no classifier head".into(),
        )),
    }
}

/// The GS-LoRA loss of `retain` and `forget` (both forwarded through `model`); with
/// `prototypes`, the GS-LoRA++ prototype term on the two batches' embeddings.
///
/// # Errors
/// A model without head, a failing forward, a non-finite bound, or a label without prototype.
pub fn loss_terms(
    model: &VisionTransformer,
    retain: Batch,
    forget: Batch,
    weights: LossWeights,
    prototypes: Option<(&PrototypeLossConfig, &Prototypes)>,
) -> Result<LossTerms> {
    let out_r = model.forward(retain.images)?;
    let out_f = model.forward(forget.images)?;
    let (emb_r, emb_f) = (out_r.embedding.clone(), out_f.embedding.clone());
    let l_r = retain_loss(
        training_logits(model, out_r, retain.targets.clone())?,
        retain.targets,
    )?;
    let l_f = forget_loss(
        training_logits(model, out_f, forget.targets.clone())?,
        forget.targets,
        weights.bnd,
    )?;
    let prototype = match prototypes {
        Some((loss, protos)) => Some(loss.loss(
            (emb_f, protos.for_labels(&forget.labels)?),
            (emb_r, protos.for_labels(&retain.labels)?),
        )?),
        None => None,
    };
    Ok(LossTerms::new(
        l_r,
        l_f,
        group_lasso(model)?,
        prototype,
        weights,
    ))
}

/// Backpropagates `loss`, lets `optimizer` step the adapters only at learning rate `lr`, then
/// applies the group proximal step with threshold `lr · alpha`.
///
/// # Errors
/// A model whose adapter groups are malformed.
pub fn update_adapters<M: LoraModel>(
    model: &mut M,
    optimizer: &mut ModuleOptimizer,
    loss: Tensor<1>,
    lr: f64,
    alpha: f64,
) -> Result<()> {
    let mut grads = loss.backward();
    let grads = GradientsParams::from_params(&mut grads, &*model, &adapter_param_ids(model));
    *model = optimizer.step(lr, model.clone(), grads);
    group_soft_threshold(model, lr * alpha)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Module, Param};
    use burn::nn::LinearConfig;
    use burn::optim::AdamWConfig;
    use burn::tensor::{Device, TensorData};
    use gs_lora_core::{LoraConfig, LoraGroup, LoraLinear};

    fn scalar(value: f64, device: &Device) -> Tensor<1> {
        Tensor::from_data(TensorData::new(vec![value as f32], [1]), device)
    }

    /// The total against a hand sum with distinct weights, and the order of `values`.
    /// Catches β and α swapped, either dropped, the prototype term dropped or weighted again.
    #[test]
    fn the_total_is_retain_plus_weighted_forget_lasso_and_prototype() {
        let device = Device::default();
        let weights = LossWeights {
            beta: 0.3,
            bnd: 105.0,
            alpha: 0.01,
        };
        let terms = LossTerms::new(
            scalar(1.5, &device),
            scalar(2.0, &device),
            scalar(3.0, &device),
            Some(scalar(0.7, &device)),
            weights,
        );
        let values = terms.values();
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
        assert!((without.values()[0] - 2.13).abs() < 1e-6);
        assert_eq!(without.values()[4], 0.0);
    }

    /// Two adapter groups of one 2→2 rank-1 layer each.
    #[derive(Module, Debug)]
    struct TwoGroups {
        layers: Vec<LoraLinear>,
    }

    impl LoraModel for TwoGroups {
        fn lora_groups(&self) -> Vec<LoraGroup<&LoraLinear>> {
            let groups = self.layers.iter().enumerate();
            groups
                .map(|(i, l)| LoraGroup::new(format!("g{i}"), vec![l]))
                .collect()
        }

        fn lora_groups_mut(&mut self) -> Vec<LoraGroup<&mut LoraLinear>> {
            let groups = self.layers.iter_mut().enumerate();
            groups
                .map(|(i, l)| LoraGroup::new(format!("g{i}"), vec![l]))
                .collect()
        }
    }

    fn param(values: [f32; 2], shape: [usize; 2], device: &Device) -> Param<Tensor<2>> {
        Param::from_tensor(Tensor::from_data(
            TensorData::new(values.to_vec(), shape),
            device,
        ))
    }

    /// One update against a hand AdamW step (first step: `θ(1 − lr·λ) − lr·g/(|g| + ε)`)
    /// followed by the group soft-threshold at `lr·α`: the small group becomes exactly zero,
    /// the other shrinks by `1 − lr·α/‖g‖`. Catches a threshold of `α` instead of `lr·α`, a
    /// missing proximal step, and the optimiser stepping with another learning rate.
    #[test]
    fn an_update_is_adamw_then_the_group_soft_threshold() {
        let device = Device::default().autodiff();
        let layer = |a: [f32; 2], b: [f32; 2], seed| {
            let base = LinearConfig::new(2, 2).init(&device);
            let mut layer = LoraConfig::new()
                .with_rank(1)
                .init(base, seed)
                .expect("layer");
            layer.lora_a = param(a, [2, 1], &device);
            layer.lora_b = param(b, [1, 2], &device);
            layer
        };
        let initial = [
            ([0.05f32, -0.05], [0.05f32, 0.02]),
            ([1.0, 2.0], [3.0, -1.0]),
        ];
        let mut model = TwoGroups {
            layers: initial.iter().map(|(a, b)| layer(*a, *b, 1)).collect(),
        };
        // Loss Σ A ⊙ C_A + Σ B ⊙ C_B: constant gradients C.
        let grads_of = [([1.0f32, -2.0], [0.5f32, 3.0]), ([-1.0, 1.0], [2.0, -0.5])];
        let loss = model
            .layers
            .iter()
            .zip(&grads_of)
            .map(|(layer, (ca, cb))| {
                let ca = Tensor::<2>::from_data(TensorData::new(ca.to_vec(), [2, 1]), &device);
                let cb = Tensor::<2>::from_data(TensorData::new(cb.to_vec(), [1, 2]), &device);
                (layer.lora_a.val() * ca).sum() + (layer.lora_b.val() * cb).sum()
            })
            .reduce(|a, b| a + b)
            .expect("two layers");
        let (lr, alpha, decay, eps) = (0.1, 2.0, 0.05, 1e-8);
        let mut optimizer = AdamWConfig::new()
            .with_weight_decay(decay as f32)
            .with_epsilon(eps as f32)
            .init();
        update_adapters(&mut model, &mut optimizer, loss, lr, alpha).expect("update");

        let step = |theta: f32, g: f32| {
            let (theta, g) = (f64::from(theta), f64::from(g));
            theta * (1.0 - lr * decay) - lr * g / (g.abs() + eps)
        };
        let threshold = lr * alpha;
        for (((a, b), (ca, cb)), layer) in initial.iter().zip(&grads_of).zip(&model.layers) {
            let stepped: Vec<f64> = a
                .iter()
                .zip(ca)
                .chain(b.iter().zip(cb))
                .map(|(t, g)| step(*t, *g))
                .collect();
            let norm = stepped.iter().map(|v| v * v).sum::<f64>().sqrt();
            let factor = if norm <= threshold {
                0.0
            } else {
                1.0 - threshold / norm
            };
            let found: Vec<f64> = [layer.lora_a.val(), layer.lora_b.val()]
                .into_iter()
                .flat_map(|t| t.into_data().try_to_vec::<f32>().expect("f32"))
                .map(f64::from)
                .collect();
            for (found, stepped) in found.iter().zip(&stepped) {
                assert!(
                    (found - stepped * factor).abs() < 1e-5,
                    "{found} vs {}",
                    stepped * factor
                );
            }
        }
        let norms = gs_lora_core::group_norms(&model).expect("norms");
        assert_eq!(norms[0], 0.0, "the small group is exactly zero: {norms:?}");
        assert!(norms[1] > 1.0);
    }
}
