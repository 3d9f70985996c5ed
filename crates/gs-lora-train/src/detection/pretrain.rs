//! Training a Deformable DETR on a detection set: every weight but the batch-norm statistics,
//! with the set criterion `2·focal + 5·L1 + 2·GIoU`, AdamW and the reference's gradient
//! clipping (the embedded default's detector, trained from scratch).

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use gs_lora_core::lora::derive_seed;
use gs_lora_core::loss::detection_loss;
use gs_lora_core::merge_adapters;
use gs_lora_models::deformable::DeformableDetr;
use serde::{Deserialize, Serialize};

use super::average_precision::ApSummary;
use super::criterion::set_criterion;
use super::dataset::{DetectionDataset, detection_batch};
use super::evaluate::detector_ap;
use super::matching::HungarianMatcher;
use crate::batch::{Preprocess, shuffled_batches};
use crate::error::{Result, TrainError};
use crate::forget::scalar;
use crate::pretrain::warmup_cosine;
use crate::progress::Progress;

/// Settings of [`pretrain_detector`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectorTrainConfig {
    /// Passes over the training split.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Peak learning rate (linear warm-up over the first epoch, then cosine to 1% of it).
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Largest gradient norm (the reference clips at 0.1).
    pub max_grad_norm: f64,
    /// Seed of the data order.
    pub seed: u64,
}

impl Default for DetectorTrainConfig {
    fn default() -> Self {
        Self {
            epochs: 12,
            batch_size: 16,
            lr: 1e-3,
            weight_decay: 1e-4,
            max_grad_norm: 0.1,
            seed: 0,
        }
    }
}

/// Ids of every float parameter except the batch-norm running statistics, which stay as
/// loaded.
#[derive(Default)]
struct TrainableIds {
    path: Vec<String>,
    ids: Vec<ParamId>,
}

impl ModuleVisitor for TrainableIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.path.last().is_some_and(|n| n.starts_with("running_")) {
            self.ids.push(param.id);
        }
    }

    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
}

/// Trains `model` (on an autodiff `device`) on the training split; returns it with its adapters
/// merged and everything frozen again, and its validation AP over all classes.
///
/// # Errors
/// A zero epoch or batch count, a batch the model cannot read, or a non-finite loss.
pub fn pretrain_detector(
    model: DeformableDetr,
    dataset: &DetectionDataset,
    config: &DetectorTrainConfig,
    preprocess: &Preprocess,
    device: &Device,
) -> Result<(DeformableDetr, Option<ApSummary>)> {
    if config.epochs == 0 || config.batch_size == 0 {
        return Err(TrainError::InvalidSetting(format!(
            "detector training needs at least one epoch and one image per batch, found {} and {}",
            config.epochs, config.batch_size
        )));
    }
    let mut model = model.unfreeze();
    let mut trainable = TrainableIds::default();
    model.visit(&mut trainable);
    let mut optimizer = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Norm(
            config.max_grad_norm as f32,
        )))
        .init();
    let matcher = HungarianMatcher::default();
    let keep = vec![true; dataset.num_classes()];
    let indices: Vec<usize> = (0..dataset.train.len()).collect();
    let steps_per_epoch = indices.len().div_ceil(config.batch_size);
    let total = config.epochs * steps_per_epoch;
    let all_classes: Vec<usize> = (0..dataset.num_classes()).collect();
    let mut ap = None;
    for epoch in 0..config.epochs {
        let batches = shuffled_batches(
            &indices,
            config.batch_size,
            derive_seed(config.seed, epoch as u64),
        );
        let progress = Progress::new(
            format!("detector epoch {}/{}", epoch + 1, config.epochs),
            batches.len(),
        );
        let mut loss_sum = 0.0;
        for (step, chunk) in batches.iter().enumerate() {
            let done = epoch * steps_per_epoch + step;
            let lr = warmup_cosine(config.lr, done, steps_per_epoch, total);
            let batch = detection_batch(&dataset.train, chunk, &keep, preprocess, device)?;
            let output = model.forward(batch.pixels)?;
            let terms = set_criterion(&output, &batch.targets, &matcher)?;
            let loss = detection_loss(terms.focal, terms.l1, terms.giou);
            let value = scalar(loss.clone());
            if !value.is_finite() {
                progress.finish("stopped: non-finite loss");
                return Err(TrainError::NonFiniteLoss {
                    task: 0,
                    epoch,
                    step,
                    value,
                });
            }
            loss_sum += value;
            let mut grads = loss.backward();
            let grads = GradientsParams::from_params(&mut grads, &model, &trainable.ids);
            model = optimizer.step(lr, model, grads);
            progress.update(
                step + 1,
                &format!("loss {:.4}", loss_sum / (step + 1) as f64),
            );
        }
        ap = detector_ap(
            &model,
            &dataset.val,
            preprocess,
            2 * config.batch_size,
            &[&all_classes],
            device,
        )?[0];
        progress.finish(&format!(
            "loss {:.4}, validation AP {}",
            loss_sum / batches.len() as f64,
            ap.map_or("-".into(), |ap| format!(
                "{:.1} (AP50 {:.1})",
                ap.ap, ap.ap50
            ))
        ));
    }
    merge_adapters(&mut model)?;
    Ok((model.no_grad(), ap))
}
