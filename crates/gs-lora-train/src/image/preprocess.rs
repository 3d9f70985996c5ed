//! How a stored image becomes a model input: resizing, centre crop, channel matching,
//! normalisation, and the random changes of training.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Image;
use crate::error::{Result, TrainError};

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
    /// `mean = 0`, `std = 1`: the `[0, 1]` pixels as they are (torchvision's `ToTensor` alone).
    pub const NONE: Self = Self {
        mean: [0.0; 3],
        std: [1.0; 3],
    };
    /// `mean = std = 0.5`, mapping `[0, 1]` to `[−1, 1]`.
    pub const HALF: Self = Self {
        mean: [0.5; 3],
        std: [0.5; 3],
    };
}

/// How a stored image becomes a model input: resized (bilinear, antialiased) so its shorter side
/// is `image_size / crop_pct`, centre-cropped to `image_size`, its channels matched to the
/// model's (grey repeated, or RGB to luminance), scaled to `[0, 1]` and normalised.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preprocess {
    /// Side of the square model input.
    pub image_size: usize,
    /// Share of the resized image kept by the centre crop (timm's `crop_pct`; 1 keeps it all).
    pub crop_pct: f64,
    /// Channels the model reads (1 or 3).
    pub channels: usize,
    /// Normalisation the model was trained with.
    pub norm: Normalization,
}

impl Preprocess {
    /// Inputs of `image_size` with `channels`, whole images (`crop_pct = 1`), normalised by `norm`.
    pub fn new(image_size: usize, channels: usize, norm: Normalization) -> Self {
        Self {
            image_size,
            crop_pct: 1.0,
            channels,
            norm,
        }
    }

    /// The shorter side images are resized to before the crop.
    pub fn resize_side(&self) -> usize {
        ((self.image_size as f64 / self.crop_pct).round() as usize).max(self.image_size)
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// A zero image size, a crop share outside `(0, 1]`, or channels other than 1 or 3.
    pub fn validate(&self) -> Result<()> {
        if self.image_size == 0 {
            return Err(TrainError::Setting {
                name: "image_size",
                problem: "must be at least 1, found 0".into(),
            });
        }
        if !(self.crop_pct > 0.0 && self.crop_pct <= 1.0) {
            return Err(TrainError::Setting {
                name: "crop_pct",
                problem: format!("must be in (0, 1], found {}", self.crop_pct),
            });
        }
        if !matches!(self.channels, 1 | 3) {
            return Err(TrainError::InvalidSetting(format!(
                "models read 1 or 3 channels, found {}",
                self.channels
            )));
        }
        let Normalization { mean, std } = self.norm;
        if mean.iter().any(|m| !m.is_finite()) || std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(TrainError::InvalidSetting(format!(
                "normalisation needs finite means and finite positive standard deviations, found \
                 mean {mean:?}, std {std:?}"
            )));
        }
        // One resized image as f32, before any model runs on it.
        let side = self.resize_side() as u128;
        gs_lora_core::Limits::from_env()?.check_memory(
            || {
                format!(
                    "an input image of {side}×{side} pixels (image_size {})",
                    self.image_size
                )
            },
            side.saturating_mul(side)
                .saturating_mul(self.channels as u128 * 4),
        )?;
        Ok(())
    }

    /// Channel `c` of the model input at pixel `(x, y)` of `image`: its channels matched to the
    /// model's (grey repeated, RGB to luminance), scaled to `[0, 1]` and normalised.
    pub(crate) fn input_value(&self, image: &Image, x: usize, y: usize, c: usize) -> f32 {
        let value = |c: usize| f32::from(image.at(x, y, c)) / 255.0;
        let v = match (image.channels(), self.channels) {
            (1, _) => value(0),
            (3, 1) => 0.299 * value(0) + 0.587 * value(1) + 0.114 * value(2),
            _ => value(c),
        };
        (v - self.norm.mean[c]) / self.norm.std[c]
    }

    /// Writes `image` as `[C, S, S]` model input into `out`, augmented when `augment` is given.
    pub(crate) fn write(&self, image: &Image, augment: Option<(&Augment, u64)>, out: &mut [f32]) {
        let side = self.resize_side();
        let resized;
        let image = if image.width().min(image.height()) == side {
            image
        } else {
            resized = image.resized_shorter(side);
            &resized
        };
        let size = self.image_size;
        let (x0, y0) = ((image.width() - size) / 2, (image.height() - size) / 2);
        let (flip, dx, dy) = match augment {
            Some((augment, seed)) => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let shift = augment.max_shift as i64;
                (
                    augment.flip && rng.random_bool(0.5),
                    rng.random_range(-shift..=shift),
                    rng.random_range(-shift..=shift),
                )
            }
            None => (false, 0, 0),
        };
        let source = |offset: usize, position: usize, delta: i64, extent: usize| {
            (offset as i64 + position as i64 + delta).clamp(0, extent as i64 - 1) as usize
        };
        let plane = size * size;
        for y in 0..size {
            let sy = source(y0, y, dy, image.height());
            for x in 0..size {
                let fx = if flip { size - 1 - x } else { x };
                let sx = source(x0, fx, dx, image.width());
                for c in 0..self.channels {
                    out[c * plane + y * size + x] = self.input_value(image, sx, sy, c);
                }
            }
        }
    }
}

/// Label-preserving random changes for training: a horizontal flip and a shift of the crop
/// window of up to `max_shift` pixels (a random crop; edges repeat past the border).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Flip half of the images horizontally.
    pub flip: bool,
    /// Largest shift of the crop window, in pixels.
    pub max_shift: usize,
}
