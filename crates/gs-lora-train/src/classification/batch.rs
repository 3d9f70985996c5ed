//! Turning images of an [`ImageSet`] into normalised, optionally augmented tensor batches.

use burn::tensor::{Device, Int, Tensor, TensorData};
use gs_lora_core::lora::derive_seed;
use rayon::prelude::*;

use super::data::ImageSet;
use crate::image::{Augment, Preprocess};

/// A batch: images `[B, C, H, W]`, labels `[B]` as a tensor and on the host.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Normalised images.
    pub images: Tensor<4>,
    /// Labels on the device.
    pub targets: Tensor<1, Int>,
    /// Labels on the host.
    pub labels: Vec<usize>,
}

/// The images `indices` of `set` as one batch on `device`, prepared in parallel. With
/// `augment`, image `i` of the batch draws its changes from `derive_seed(seed, i)`.
pub fn make_batch(
    set: &ImageSet,
    indices: &[usize],
    preprocess: &Preprocess,
    augment: Option<(&Augment, u64)>,
    device: &Device,
) -> Batch {
    let (c, s) = (preprocess.channels, preprocess.image_size);
    let mut pixels = vec![0.0f32; indices.len() * c * s * s];
    pixels
        .par_chunks_mut(c * s * s)
        .zip(indices.par_iter())
        .enumerate()
        .for_each(|(i, (out, &index))| {
            let augment = augment.map(|(augment, seed)| (augment, derive_seed(seed, i as u64)));
            preprocess.write(&set.images[index], augment, out);
        });
    let labels: Vec<usize> = indices.iter().map(|&i| set.labels[i]).collect();
    let targets: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Batch {
        images: Tensor::from_data(TensorData::new(pixels, [indices.len(), c, s, s]), device),
        targets: Tensor::from_data(TensorData::new(targets, [indices.len()]), device),
        labels,
    }
}
