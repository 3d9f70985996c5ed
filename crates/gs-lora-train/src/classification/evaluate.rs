//! Accuracy of a model on an image set.

use burn::module::Module;
use burn::tensor::Device;
use gs_lora_core::ClassAccuracy;
use gs_lora_models::VisionTransformer;

use super::batch::make_batch;
use super::data::{Dataset, ImageSet};
use crate::error::{Result, TrainError};
use crate::image::Preprocess;

/// Per-class top-1 counts of `model` on every image of `set`, computed without autodiff.
///
/// # Errors
/// When the model has no head or the forward fails.
pub fn class_accuracy(
    model: &VisionTransformer,
    set: &ImageSet,
    num_classes: usize,
    preprocess: &Preprocess,
    batch_size: usize,
    device: &Device,
) -> Result<ClassAccuracy> {
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let mut accuracy = ClassAccuracy::new(num_classes);
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = make_batch(set, chunk, preprocess, None, &device);
        let logits = model
            .forward(batch.images)?
            .logits
            .ok_or_else(|| TrainError::InvalidSetting("the model has no classifier head".into()))?;
        accuracy.update_logits(logits, &batch.labels)?;
    }
    Ok(accuracy)
}

/// Top-1 accuracy (%) of `model` over every class of `dataset`'s validation split.
///
/// # Errors
/// As [`class_accuracy`].
pub fn val_accuracy(
    model: &VisionTransformer,
    dataset: &Dataset,
    preprocess: &Preprocess,
    batch_size: usize,
    device: &Device,
) -> Result<f64> {
    dataset.require_validation()?;
    let classes = dataset.num_classes();
    let accuracy = class_accuracy(model, &dataset.val, classes, preprocess, batch_size, device)?;
    let all: Vec<usize> = (0..classes).collect();
    accuracy
        .accuracy(&all)
        .ok_or_else(|| TrainError::Data("the validation split holds no image of any class".into()))
}
