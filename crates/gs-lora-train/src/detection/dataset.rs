//! Detection data in memory: images with their objects, and batches of them for the model.

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::matching::Target;
use crate::batch::Preprocess;
use crate::data::Image;
use crate::error::{Result, TrainError};

/// One image and its objects (boxes `[cx, cy, w, h]` normalised to the image).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionSample {
    /// The image.
    pub image: Image,
    /// Its objects; may be empty (a negative image).
    pub objects: Vec<Target>,
}

/// A detection dataset: class names by label, the labels the data uses, a training and a
/// validation split.
#[derive(Debug, Clone, Default)]
pub struct DetectionDataset {
    /// Class names, indexed by label (the model's labels, which may include unused ones).
    pub class_names: Vec<String>,
    /// The labels the data uses, which the forgetting tasks are drawn from.
    pub labels: Vec<usize>,
    /// Training images.
    pub train: Vec<DetectionSample>,
    /// Validation images (all scores are measured here).
    pub val: Vec<DetectionSample>,
}

impl DetectionDataset {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
}

/// Indices of the samples that hold at least one object whose class `keep` marks.
pub fn samples_with(samples: &[DetectionSample], keep: &[bool]) -> Vec<usize> {
    samples
        .iter()
        .enumerate()
        .filter(|(_, sample)| sample.objects.iter().any(|o| keep[o.label]))
        .map(|(i, _)| i)
        .collect()
}

/// A batch: images `[B, C, S, S]` and each image's target objects.
#[derive(Debug, Clone)]
pub struct DetectionBatch {
    /// Normalised images.
    pub pixels: Tensor<4>,
    /// Objects per image; only those of the classes the batch was made for.
    pub targets: Vec<Vec<Target>>,
}

/// The samples `indices` as one batch on `device`, keeping the objects of the classes `keep`
/// marks (the others become background). Images must all be `preprocess.image_size` square:
/// the model reads unpadded batches, so loaders resize images to one size.
///
/// # Errors
/// An image of another size (naming the index and both sizes), or an object label outside
/// `keep`.
pub fn detection_batch(
    samples: &[DetectionSample],
    indices: &[usize],
    keep: &[bool],
    preprocess: &Preprocess,
    device: &Device,
) -> Result<DetectionBatch> {
    let (c, s) = (preprocess.channels, preprocess.image_size);
    let mut targets = Vec::with_capacity(indices.len());
    for &index in indices {
        let sample = samples.get(index).ok_or_else(|| {
            TrainError::Data(format!(
                "sample {index} requested from a split of {} images",
                samples.len()
            ))
        })?;
        let image = &sample.image;
        if image.width() != s || image.height() != s {
            return Err(TrainError::Data(format!(
                "detection batches are unpadded: image {index} is {}×{}, expected {s}×{s}; \
                 resize images to one size when loading",
                image.width(),
                image.height()
            )));
        }
        if let Some(bad) = sample.objects.iter().find(|o| o.label >= keep.len()) {
            return Err(TrainError::Data(format!(
                "image {index} has an object of class {} but the dataset has {} classes",
                bad.label,
                keep.len()
            )));
        }
        targets.push(
            sample
                .objects
                .iter()
                .filter(|o| keep[o.label])
                .copied()
                .collect(),
        );
    }
    let mut pixels = vec![0.0f32; indices.len() * c * s * s];
    pixels
        .par_chunks_mut(c * s * s)
        .zip(indices.par_iter())
        .for_each(|(out, &index)| preprocess.write(&samples[index].image, None, out));
    Ok(DetectionBatch {
        pixels: Tensor::from_data(TensorData::new(pixels, [indices.len(), c, s, s]), device),
        targets,
    })
}
