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
