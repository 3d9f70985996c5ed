//! Training a Deformable DETR on a detection set: every weight but the batch-norm statistics,
//! with the set criterion `2·focal + 5·L1 + 2·GIoU`, AdamW and the reference's gradient
//! clipping (the embedded default's detector, trained from scratch).

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::AdamWConfig;
use burn::tensor::Device;
use gs_lora_core::loss::detection_loss;
use gs_lora_models::deformable::DeformableDetr;
use serde::{Deserialize, Serialize};

use super::average_precision::ApSummary;
use super::criterion::set_criterion;
use super::dataset::{DetectionDataset, detection_batch};
use super::evaluate::detector_ap;
use super::matching::HungarianMatcher;
use crate::engine::{FitSchedule, fit, param_ids_where};
use crate::error::Result;
use crate::image::Preprocess;

/// Settings of [`pretrain`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
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

impl Default for PretrainConfig {
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

/// Trains `model` (on an autodiff `device`) on the training split; returns it with its adapters
/// merged and everything frozen again, and its validation AP over all classes.
///
/// # Errors
/// A zero epoch or batch count, a batch the model cannot read, or a non-finite loss.
pub fn pretrain(
    model: DeformableDetr,
    dataset: &DetectionDataset,
    config: &PretrainConfig,
    preprocess: &Preprocess,
    device: &Device,
) -> Result<(DeformableDetr, Option<ApSummary>)> {
    dataset.validate()?;
    let model = model.unfreeze();
    // Every float parameter except the batch-norm running statistics, which stay as loaded.
    let trainable = param_ids_where(&model, |path| !path.field().starts_with("running_"));
    let optimizer = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(
            config.max_grad_norm as f32,
        )))
        .init();
    let schedule = FitSchedule {
        name: "detector",
        epochs: config.epochs,
        batch_size: config.batch_size,
        lr: config.lr,
        seed: config.seed,
    };
    let matcher = HungarianMatcher::default();
    let keep = vec![true; dataset.num_classes()];
    let all_classes: Vec<usize> = (0..dataset.num_classes()).collect();
    let mut ap = None;
    let model = fit(
        model,
        optimizer,
        Some(&trainable),
        dataset.train.len(),
        &schedule,
        |model, chunk, _| {
            let batch = detection_batch(&dataset.train, chunk, &keep, preprocess, device)?;
            let terms = set_criterion(
                &model.forward_masked(batch.pixels, batch.pixel_mask)?,
                &batch.targets,
                &matcher,
            )?;
            Ok(detection_loss(terms.focal, terms.l1, terms.giou))
        },
        |model| {
            ap = detector_ap(
                model,
                &dataset.val,
                preprocess,
                2 * config.batch_size,
                &[&all_classes],
                device,
            )?[0];
            Ok(ap.map_or("validation AP -".into(), |ap| {
                format!("validation AP {:.1} (AP50 {:.1})", ap.ap, ap.ap50)
            }))
        },
    )?;
    Ok((model, ap))
}
