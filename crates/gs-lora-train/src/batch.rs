//! Turning images of an [`ImageSet`] into normalised tensor batches.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::ImageSet;

/// Per-channel normalisation `(x − mean) / std` the model was trained with.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// Channel means.
    pub mean: [f32; 3],
    /// Channel standard deviations.
    pub std: [f32; 3],
}

impl Normalization {
    /// ImageNet's statistics (timm and Hugging Face defaults).
    pub const IMAGENET: Self = Self {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
    /// `mean = std = 0.5`, mapping `[0, 1]` to `[−1, 1]`.
    pub const HALF: Self = Self {
        mean: [0.5; 3],
        std: [0.5; 3],
    };
}

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

/// The images `indices` of `set` as one normalised batch on `device`.
pub fn make_batch(
    set: &ImageSet,
    indices: &[usize],
    norm: &Normalization,
    device: &Device,
) -> Batch {
    let (c, s) = (set.channels, set.image_size);
    let plane = s * s;
    let mut pixels = Vec::with_capacity(indices.len() * set.image_len());
    for &index in indices {
        for (channel, values) in set.image(index).chunks_exact(plane).enumerate() {
            let (mean, std) = (norm.mean[channel % 3], norm.std[channel % 3]);
            pixels.extend(values.iter().map(|v| (v - mean) / std));
        }
    }
    let labels: Vec<usize> = indices.iter().map(|&i| set.labels[i]).collect();
    let targets: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Batch {
        images: Tensor::from_data(TensorData::new(pixels, [indices.len(), c, s, s]), device),
        targets: Tensor::from_data(TensorData::new(targets, [indices.len()]), device),
        labels,
    }
}

/// Random horizontal flips and shifts of up to `max_shift` pixels (edges repeated), drawn from
/// `seed`: label-preserving for the embedded classes, whose shapes and textures come in every
/// rotation. Returns the augmented copy of the images `indices` as a new set.
pub fn augmented(
    set: &ImageSet,
    indices: &[usize],
    max_shift: usize,
    seed: u64,
) -> (ImageSet, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (c, s) = (set.channels, set.image_size);
    let mut out = ImageSet::new(c, s);
    let mut image = vec![0.0f32; set.image_len()];
    let shift = max_shift as i64;
    for &index in indices {
        let flip = rng.random_bool(0.5);
        let (dx, dy) = (
            rng.random_range(-shift..=shift),
            rng.random_range(-shift..=shift),
        );
        let source = set.image(index);
        for channel in 0..c {
            for y in 0..s {
                let sy = (y as i64 + dy).clamp(0, s as i64 - 1) as usize;
                for x in 0..s {
                    let fx = if flip { s - 1 - x } else { x };
                    let sx = (fx as i64 + dx).clamp(0, s as i64 - 1) as usize;
                    image[(channel * s + y) * s + x] = source[(channel * s + sy) * s + sx];
                }
            }
        }
        out.push(&image, set.labels[index]);
    }
    let positions = (0..indices.len()).collect();
    (out, positions)
}

/// `indices` shuffled with `seed` and cut into batches of at most `batch_size`.
pub fn shuffled_batches(indices: &[usize], batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order = indices.to_vec();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}
