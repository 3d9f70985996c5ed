//! Linear probing: a pretrained backbone stays frozen, its embeddings of the training images are
//! computed once, and only a new classifier head is trained on them.

use std::path::Path;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use gs_lora_core::LoraConfig;
use gs_lora_core::lora::derive_seed;
use gs_lora_core::loss::cross_entropy;
use gs_lora_models::VisionTransformer;

use super::batch::make_batch;
use super::data::{Dataset, ImageSet};
use super::evaluate::val_accuracy;
use crate::engine::scalar;
use crate::engine::shuffled_batches;
use crate::error::{Result, TrainError};
use crate::image::Preprocess;
use crate::progress::Progress;

/// Settings of [`linear_probe`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeConfig {
    /// Passes over the cached training embeddings.
    pub epochs: usize,
    /// Embeddings per step.
    pub batch_size: usize,
    /// Peak learning rate (cosine to 1% of it).
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seed of the head's initialisation and the data order.
    pub seed: u64,
}

impl ProbeConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`TrainError::Setting`] naming the setting and the value.
    pub fn validate(&self) -> Result<()> {
        crate::config::check_training(self.epochs, self.batch_size, self.lr, self.weight_decay)
    }
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 256,
            lr: 1e-3,
            weight_decay: 1e-4,
            seed: 0,
        }
    }
}

/// The embeddings `[N, D]` of every image of `set`, computed once without autodiff.
fn embeddings(
    model: &VisionTransformer,
    set: &ImageSet,
    preprocess: &Preprocess,
    device: &Device,
) -> Result<Tensor<2>> {
    let model = model.valid();
    let plain = device.clone().without_autodiff();
    let indices: Vec<usize> = (0..set.len()).collect();
    let progress = Progress::new("embedding the training images", set.len().div_ceil(64));
    let mut parts = Vec::new();
    for (step, chunk) in indices.chunks(64).enumerate() {
        let batch = make_batch(set, chunk, preprocess, None, &plain);
        parts.push(model.forward(batch.images)?.embedding);
        progress.update(step + 1, "");
    }
    progress.finish("");
    Ok(Tensor::cat(parts, 0))
}

/// Trains a new head of `dataset`'s classes on `model`'s frozen embeddings of the training
/// images; returns the model with the trained head and its validation accuracy (%).
/// `device` must be an autodiff device.
///
/// # Errors
/// Zero epochs or batch size, a model without a Linear head kind, or a non-finite loss.
pub fn linear_probe(
    model: VisionTransformer,
    dataset: &Dataset,
    preprocess: &Preprocess,
    config: &ProbeConfig,
    device: &Device,
) -> Result<(VisionTransformer, f64)> {
    config.validate()?;
    dataset.require_each_class("training", &dataset.train)?;
    dataset.require_validation()?;
    let mut model = model.with_new_head(dataset.num_classes(), config.seed)?;
    let features = embeddings(&model, &dataset.train, preprocess, device)?;
    let features: Tensor<2> = Tensor::from_inner(features.inner()).to_device(device);
    let labels: Vec<i64> = dataset.train.labels.iter().map(|&l| l as i64).collect();
    let labels =
        Tensor::<1, Int>::from_data(TensorData::new(labels, [dataset.train.len()]), device);
    let mut head = model
        .head
        .take()
        .ok_or_else(|| TrainError::InvalidSetting("the model has no classifier head".into()))?;
    let mut optimizer = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .init();
    let indices: Vec<usize> = (0..dataset.train.len()).collect();
    let progress = Progress::new("linear probe", config.epochs);
    for epoch in 0..config.epochs {
        let progress_share = epoch as f64 / config.epochs as f64;
        let lr =
            config.lr * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * progress_share).cos()));
        let mut loss_sum = 0.0;
        let batches = shuffled_batches(
            &indices,
            config.batch_size,
            derive_seed(config.seed, epoch as u64),
        );
        for chunk in &batches {
            let rows: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
            let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [chunk.len()]), device);
            let logits = head.forward(features.clone().select(0, rows.clone()));
            let loss = cross_entropy(logits, labels.clone().select(0, rows))?;
            let value = scalar(loss.clone());
            if !value.is_finite() {
                return Err(TrainError::NonFinitePretrainLoss {
                    epoch,
                    step: 0,
                    value,
                });
            }
            loss_sum += value;
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optimizer.step(lr, head, grads);
        }
        progress.update(
            epoch + 1,
            &format!("loss {:.4}", loss_sum / batches.len() as f64),
        );
    }
    model.head = Some(head.no_grad());
    let accuracy = val_accuracy(&model, dataset, preprocess, 64, device)?;
    progress.finish(&format!("validation accuracy {accuracy:.2}%"));
    Ok((model, accuracy))
}

/// A pretrained checkpoint on `device` with fresh `lora` adapters drawn from `seed`, its
/// position grid resampled once for `preprocess.image_size`.
///
/// # Errors
/// Unreadable files, or an image size that is not a multiple of the patch size.
pub fn load_backbone(
    config_path: &Path,
    weights_path: &Path,
    preprocess: &Preprocess,
    lora: &LoraConfig,
    seed: u64,
    device: &Device,
) -> Result<VisionTransformer> {
    let model = VisionTransformer::from_pretrained(config_path, weights_path, lora, seed, device)?;
    if model.config.image_size == preprocess.image_size {
        return Ok(model);
    }
    Ok(model.resize_position_grid(preprocess.image_size)?)
}
