//! Whole-model training, shared by both families' pretraining: seeded shuffled batches, a
//! linear warm-up then a cosine learning rate, AdamW on all (or the given) parameters.

use burn::module::ParamId;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use gs_lora_core::lora::derive_seed;
use gs_lora_core::{LoraModel, merge_adapters, seed_dropout};

use super::loss::scalar;
use super::sampling::shuffled_batches;
use crate::error::{Result, TrainError};
use crate::progress::Progress;

/// The learning rate after `done` of `total` steps: linear warm-up over `warmup` steps, then
/// cosine to 1% of `peak`.
pub(crate) fn warmup_cosine(peak: f64, done: usize, warmup: usize, total: usize) -> f64 {
    if done < warmup {
        return peak * (done + 1) as f64 / warmup as f64;
    }
    let progress = (done - warmup) as f64 / (total - warmup).max(1) as f64;
    peak * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
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
        let epoch_seed = derive_seed(schedule.seed, epoch as u64);
        let batches = shuffled_batches(&indices, schedule.batch_size, epoch_seed);
        seed_dropout(&model.devices(), derive_seed(epoch_seed, 1));
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
