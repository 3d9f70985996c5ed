//! Detection data in memory: images with their objects, and batches of them for the model.

use burn::tensor::{Bool, Device, Tensor, TensorData};
use rayon::prelude::*;

use super::matching::Target;
use crate::error::{Result, TrainError};
use crate::image::Image;
use crate::image::Preprocess;

/// One image and its objects (boxes `[cx, cy, w, h]` normalised to the image).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionSample {
    /// The image.
    pub image: Image,
    /// Its objects; may be empty (a negative image).
    pub objects: Vec<Target>,
    /// Crowd regions (COCO `iscrowd`): never trained on; scoring ignores the detections that
    /// fall in one of their class ([`average_precision`](super::average_precision)).
    pub crowd: Vec<Target>,
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

    /// Checks that both splits have images and that every label in play and every object's
    /// label is a class of the dataset.
    ///
    /// # Errors
    /// [`TrainError::Data`] naming the split, image or label.
    pub fn validate(&self) -> Result<()> {
        let classes = self.num_classes();
        if let Some(bad) = self.labels.iter().find(|&&l| l >= classes) {
            return Err(TrainError::Data(format!(
                "label {bad} is in play but the dataset has {classes} classes"
            )));
        }
        for (name, split) in [("training", &self.train), ("validation", &self.val)] {
            if split.is_empty() {
                return Err(TrainError::Data(format!("the {name} split has no images")));
            }
            let bad = split.iter().enumerate().find_map(|(i, sample)| {
                sample
                    .objects
                    .iter()
                    .find(|o| o.label >= classes)
                    .map(|o| (i, o.label))
            });
            if let Some((image, label)) = bad {
                return Err(TrainError::Data(format!(
                    "{name} image {image} has an object of class {label}, but the dataset has \
                     {classes} classes"
                )));
            }
        }
        Ok(())
    }
}

/// Indices of the samples that hold at least one object whose class `keep` marks.
pub fn samples_with(samples: &[DetectionSample], keep: &[bool]) -> Vec<usize> {
    samples
        .iter()
        .enumerate()
        .filter(|(_, sample)| {
            sample
                .objects
                .iter()
                .any(|o| keep.get(o.label).copied().unwrap_or(false))
        })
        .map(|(i, _)| i)
        .collect()
}

/// A batch: images `[B, C, H, W]` (padded to the largest when sizes differ) and each image's
/// target objects.
#[derive(Debug, Clone)]
pub struct DetectionBatch {
    /// Normalised images; padding is 0.
    pub pixels: Tensor<4>,
    /// Real pixels `[B, H, W]` when the batch is padded; `None` when every image fills it.
    pub pixel_mask: Option<Tensor<3, Bool>>,
    /// Objects per image; only those of the classes the batch was made for. Boxes are
    /// normalised to each image's real part, as the model predicts them.
    pub targets: Vec<Vec<Target>>,
}

/// The samples `indices` as one batch on `device`, keeping the objects of the classes `keep`
/// marks (the others become background). Images are normalised as `preprocess` says (its
/// channels and statistics; they keep their size). Images of different sizes are padded at the
/// bottom and right to the largest height and width, with a pixel mask, as Hugging Face's image
/// processor pads.
///
/// # Errors
/// An index outside `samples`, or an object label outside `keep`.
pub fn detection_batch(
    samples: &[DetectionSample],
    indices: &[usize],
    keep: &[bool],
    preprocess: &Preprocess,
    device: &Device,
) -> Result<DetectionBatch> {
    let mut targets = Vec::with_capacity(indices.len());
    for &index in indices {
        let sample = samples.get(index).ok_or_else(|| {
            TrainError::Data(format!(
                "sample {index} requested from a split of {} images",
                samples.len()
            ))
        })?;
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
    let images: Vec<&Image> = indices.iter().map(|&i| &samples[i].image).collect();
    let height = images.iter().map(|i| i.height()).max().unwrap_or(1);
    let width = images.iter().map(|i| i.width()).max().unwrap_or(1);
    let c = preprocess.channels;
    let mut pixels = vec![0.0f32; images.len() * c * height * width];
    pixels
        .par_chunks_mut(c * height * width)
        .zip(images.par_iter())
        .for_each(|(out, image)| {
            for channel in 0..c {
                for y in 0..image.height() {
                    for x in 0..image.width() {
                        out[(channel * height + y) * width + x] =
                            preprocess.input_value(image, x, y, channel);
                    }
                }
            }
        });
    let padded = images
        .iter()
        .any(|i| i.height() != height || i.width() != width);
    let pixel_mask = padded.then(|| {
        let mask: Vec<bool> = images
            .iter()
            .flat_map(|image| {
                (0..height).flat_map(move |y| {
                    (0..width).map(move |x| y < image.height() && x < image.width())
                })
            })
            .collect();
        Tensor::from_data(TensorData::new(mask, [images.len(), height, width]), device)
    });
    Ok(DetectionBatch {
        pixels: Tensor::from_data(
            TensorData::new(pixels, [images.len(), c, height, width]),
            device,
        ),
        pixel_mask,
        targets,
    })
}
