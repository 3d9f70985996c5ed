//! Training a Vision Transformer on a dataset: every parameter, from scratch (the embedded
//! default's model) or from a checkpoint.

use burn::module::{Module, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use gs_lora_core::lora::derive_seed;
use gs_lora_core::loss::cross_entropy;
use gs_lora_core::merge_adapters;
use gs_lora_core::{LoraConfig, LoraModel};
use gs_lora_models::VisionTransformer;
use gs_lora_models::weights::SeededInit;

use crate::batch::{Augment, Preprocess, make_batch, shuffled_batches};
use crate::data::Dataset;
use crate::embedded::embedded_model_config;
use crate::error::{Result, TrainError};
use crate::eval::val_accuracy;
use crate::forget::scalar;
use crate::progress::Progress;

/// Settings of [`pretrain`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PretrainConfig {
    /// Passes over the training split (default 40: the embedded ViT reaches 87.5% on seed 0,
    /// against 83.2% after 30; `docs/results.md`).
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Peak learning rate (linear warm-up over the first epoch, then cosine to 1% of it).
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Random flips and shifts of the training images.
    pub augment: Augment,
    /// Seed of the data order and the augmentation.
    pub seed: u64,
}

impl PretrainConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`TrainError::InvalidSetting`] naming the flag and the value.
    pub fn validate(&self) -> Result<()> {
        crate::config::check_training(self.epochs, self.batch_size, self.lr, self.weight_decay)
    }
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            epochs: 40,
            batch_size: 64,
            lr: 2e-3,
            weight_decay: 0.05,
            augment: Augment {
                flip: true,
                max_shift: 3,
            },
            seed: 0,
        }
    }
}

/// The learning rate after `done` of `total` steps: linear warm-up over `warmup` steps, then
/// cosine to 1% of `peak`.
pub(crate) fn warmup_cosine(peak: f64, done: usize, warmup: usize, total: usize) -> f64 {
    if done < warmup {
        return peak * (done + 1) as f64 / warmup as f64;
    }
    let progress = (done - warmup) as f64 / (total - warmup).max(1) as f64;
    peak * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

/// Trains every parameter of `model` (on an autodiff `device`) with cross-entropy on the
/// training split; returns the model, with its adapters merged and everything frozen again, and
/// its validation accuracy (%).
///
/// # Errors
/// A zero epoch or batch count, a model without head, or a non-finite loss.
pub fn pretrain(
    model: VisionTransformer,
    dataset: &Dataset,
    config: &PretrainConfig,
    preprocess: &Preprocess,
    device: &Device,
) -> Result<(VisionTransformer, f64)> {
    config.validate()?;
    dataset.require_each_class("training", &dataset.train)?;
    dataset.require_validation()?;
    let optimizer = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .init();
    let schedule = FitSchedule {
        name: "pretrain",
        epochs: config.epochs,
        batch_size: config.batch_size,
        lr: config.lr,
        seed: config.seed,
    };
    let mut accuracy = 0.0;
    let model = fit(
        model.unfreeze(),
        optimizer,
        None,
        dataset.train.len(),
        &schedule,
        |model, chunk, done| {
            let augment_seed = derive_seed(derive_seed(config.seed, u64::MAX), done as u64);
            let batch = make_batch(
                &dataset.train,
                chunk,
                preprocess,
                Some((&config.augment, augment_seed)),
                device,
            );
            let logits = model.forward(batch.images)?.logits.ok_or_else(|| {
                TrainError::InvalidSetting("the model has no classifier head".into())
            })?;
            Ok(cross_entropy(logits, batch.targets)?)
        },
        |model| {
            accuracy = val_accuracy(model, dataset, preprocess, 2 * config.batch_size, device)?;
            Ok(format!("validation accuracy {accuracy:.2}%"))
        },
    )?;
    Ok((model, accuracy))
}

/// The passes of [`fit`]: how many, in batches of what size, at what peak learning rate, from
/// which seed, and the name its progress bars show.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FitSchedule {
    pub(crate) name: &'static str,
    pub(crate) epochs: usize,
    pub(crate) batch_size: usize,
    pub(crate) lr: f64,
    pub(crate) seed: u64,
}

/// Full training shared by the classifier and the detector: `epochs` passes over `samples`
/// training samples in seeded shuffled batches; per batch the loss `loss(model, indices, step)`
/// (`step` counts batches from the start), its backward pass and an `optimizer` step of the
/// parameters `params` (all when `None`) at the warm-up + cosine learning rate; after each
/// epoch `report(model)` for the progress line. Returns the model with its adapters merged and
/// everything frozen again.
///
/// # Errors
/// A zero epoch or batch count, the closures' errors, or a non-finite loss.
pub(crate) fn fit<M: LoraModel>(
    mut model: M,
    mut optimizer: ModuleOptimizer,
    params: Option<&[ParamId]>,
    samples: usize,
    schedule: &FitSchedule,
    mut loss: impl FnMut(&M, &[usize], usize) -> Result<Tensor<1>>,
    mut report: impl FnMut(&M) -> Result<String>,
) -> Result<M> {
    crate::config::check_training(schedule.epochs, schedule.batch_size, schedule.lr, 0.0)?;
    let indices: Vec<usize> = (0..samples).collect();
    let steps_per_epoch = samples.div_ceil(schedule.batch_size);
    let total = schedule.epochs * steps_per_epoch;
    for epoch in 0..schedule.epochs {
        let batches = shuffled_batches(
            &indices,
            schedule.batch_size,
            derive_seed(schedule.seed, epoch as u64),
        );
        let progress = Progress::new(
            format!("{} epoch {}/{}", schedule.name, epoch + 1, schedule.epochs),
            batches.len(),
        );
        let mut loss_sum = 0.0;
        for (step, chunk) in batches.iter().enumerate() {
            let done = epoch * steps_per_epoch + step;
            let lr = warmup_cosine(schedule.lr, done, steps_per_epoch, total);
            let loss = loss(&model, chunk, done)?;
            let value = scalar(loss.clone());
            if !value.is_finite() {
                progress.finish("stopped: non-finite loss");
                return Err(TrainError::NonFinitePretrainLoss { epoch, step, value });
            }
            loss_sum += value;
            let mut grads = loss.backward();
            let grads = match params {
                Some(ids) => GradientsParams::from_params(&mut grads, &model, ids),
                None => GradientsParams::from_grads(grads, &model),
            };
            model = optimizer.step(lr, model, grads);
            progress.update(
                step + 1,
                &format!("loss {:.4}", loss_sum / (step + 1) as f64),
            );
        }
        let line = report(&model)?;
        progress.finish(&format!(
            "loss {:.4}, {line}",
            loss_sum / batches.len() as f64
        ));
    }
    merge_adapters(&mut model)?;
    Ok(model.no_grad())
}

/// A new small ViT ([`embedded_model_config`] at `preprocess.image_size`), initialised from
/// `config.seed` and trained on `dataset` with [`pretrain`].
///
/// # Errors
/// An image size that is not a multiple of the patch size (8), or [`pretrain`]'s errors.
pub fn pretrain_from_scratch(
    dataset: &Dataset,
    preprocess: &Preprocess,
    config: &PretrainConfig,
    lora: &LoraConfig,
    device: &Device,
) -> Result<(VisionTransformer, f64)> {
    let architecture = embedded_model_config(preprocess.image_size, dataset.num_classes());
    if !preprocess
        .image_size
        .is_multiple_of(architecture.patch_size)
    {
        return Err(TrainError::InvalidSetting(format!(
            "--image-size must be a multiple of the patch size {}, found {}",
            architecture.patch_size, preprocess.image_size
        )));
    }
    let model = VisionTransformer::load(
        &architecture,
        &mut SeededInit::new(config.seed),
        lora,
        config.seed,
        device,
    )?;
    pretrain(model, dataset, config, preprocess, device)
}

#[cfg(test)]
mod tests {
    use super::warmup_cosine;

    /// The pretraining schedule at every step against its closed form: a linear ramp to the
    /// peak over the warm-up, then a cosine to 1% of it. Catches a cosine replaced by a linear
    /// decay (differs at every interior step), a missing warm-up, or a floor other than 1%.
    #[test]
    fn warmup_then_cosine_to_one_percent() {
        let (peak, warmup, total) = (2e-3, 4, 20);
        for done in 0..total {
            let expected = if done < warmup {
                peak * (done + 1) as f64 / warmup as f64
            } else {
                let t = (done - warmup) as f64 / (total - warmup) as f64;
                peak * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
            };
            let lr = warmup_cosine(peak, done, warmup, total);
            assert!(
                (lr - expected).abs() < 1e-15,
                "step {done}: {lr} vs {expected}"
            );
        }
        assert_eq!(warmup_cosine(peak, 0, warmup, total), peak / 4.0);
        assert_eq!(warmup_cosine(peak, warmup, warmup, total), peak);
        let quarter = warmup_cosine(peak, warmup + 4, warmup, total);
        let linear = peak * (1.0 - 0.99 * 0.25);
        assert!((quarter - linear).abs() > 1e-5, "not a linear decay");
    }
}
