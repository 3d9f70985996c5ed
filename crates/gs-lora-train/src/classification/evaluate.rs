//! Accuracy of a model on an image set.

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor};
use gs_lora_core::ClassAccuracy;
use gs_lora_models::vit::Head;
use gs_lora_models::{VisionTransformer, VitOutput};

use super::batch::make_batch;
use super::data::{Dataset, ImageSet};
use crate::error::{Result, TrainError};
use crate::image::Preprocess;
use crate::membership::AttackFeatures;

/// Per-class top-1 counts of `model` on every image of `set`, computed without autodiff.
///
/// `with_margin` scores a CosFace head as it trains, `s·(cos − m)` on the true class, which
/// reads the labels of the images it scores: the official code evaluates that way (a flaw that
/// lowers every true-class logit and so every accuracy; PROTOCOL §0.1), kept only to reproduce
/// its reported numbers. Linear heads have no margin.
///
/// # Errors
/// When the model has no head or the forward fails.
pub fn class_accuracy(
    model: &VisionTransformer,
    set: &ImageSet,
    num_classes: usize,
    preprocess: &Preprocess,
    batch_size: usize,
    with_margin: bool,
    device: &Device,
) -> Result<ClassAccuracy> {
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let mut accuracy = ClassAccuracy::new(num_classes);
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = make_batch(set, chunk, preprocess, None, &device);
        let output = model.forward(batch.images)?;
        let logits = match with_margin {
            true => logits_with_margin(&model, output, batch.targets)?,
            false => output.logits.ok_or_else(no_head)?,
        };
        accuracy.update_logits(logits, &batch.labels)?;
    }
    Ok(accuracy)
}

/// The membership-attack features of `model`'s class distribution (softmax of its plain
/// logits: what a deployed model outputs) on the images `indices` of `set`, without autodiff.
///
/// # Errors
/// When the model has no head or the forward fails.
pub(crate) fn attack_features(
    model: &VisionTransformer,
    set: &ImageSet,
    indices: &[usize],
    preprocess: &Preprocess,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<AttackFeatures>> {
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let mut features = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = make_batch(set, chunk, preprocess, None, &device);
        let logits = model.forward(batch.images)?.logits.ok_or_else(no_head)?;
        let classes = logits.dims()[1];
        let probabilities = softmax(logits, 1)
            .try_into_vec_as::<f64>()
            .map_err(|e| TrainError::Data(format!("class probabilities: {e:?}")))?;
        for (row, &label) in probabilities.chunks(classes).zip(&batch.labels) {
            features.push(AttackFeatures::new(row, label)?);
        }
    }
    Ok(features)
}

/// The logits GS-LoRA trains on: a CosFace head subtracts its margin from the true class's
/// (`targets`), a Linear head's are the plain logits.
///
/// # Errors
/// A model without a classifier head.
pub(crate) fn logits_with_margin(
    model: &VisionTransformer,
    output: VitOutput,
    targets: Tensor<1, Int>,
) -> Result<Tensor<2>> {
    match (&model.head, output.logits) {
        (Some(Head::CosFace(cosface)), _) => {
            Ok(cosface.forward_with_margin(output.embedding, targets))
        }
        (Some(Head::Linear(_)), Some(logits)) => Ok(logits),
        _ => Err(no_head()),
    }
}

fn no_head() -> TrainError {
    TrainError::InvalidSetting("the model has no classifier head".into())
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
    let accuracy = class_accuracy(
        model,
        &dataset.val,
        classes,
        preprocess,
        batch_size,
        false,
        device,
    )?;
    let all: Vec<usize> = (0..classes).collect();
    accuracy
        .accuracy(&all)
        .ok_or_else(|| TrainError::Data("the validation split holds no image of any class".into()))
}
