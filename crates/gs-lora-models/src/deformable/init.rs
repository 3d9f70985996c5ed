//! Initialisation of a Deformable DETR trained from scratch, as the reference's
//! `_reset_parameters` and timm's ResNet: what makes such a model train at all.
//!
//! - sampling offsets: zero weights and a bias that puts each head's points on a ray in its own
//!   direction, `k`-th point `k` pixels out; attention logits: zero (uniform weights);
//! - class head bias `−ln((1 − π)/π)` with the prior `π = 0.01`, so the focal loss starts small;
//! - the last box-head layer zero (boxes start at the reference points);
//! - convolutions Kaiming-normal (fan-in, ReLU gain), Linears Xavier-uniform, embeddings and
//!   level embeddings standard normal, batch-norm statistics the identity, biases zero.

use burn::tensor::{Device, TensorData};
use rand::Rng;

use super::model::{DeformableDetr, DeformableDetrConfig};
use crate::error::Result;
use crate::weights::{ParamSource, key_rng, sample_truncated_normal};
use gs_lora_core::LoraConfig;

/// Prior probability of an object that the class head's bias starts from.
const PRIOR_PROBABILITY: f64 = 0.01;

/// The [`ParamSource`] of a fresh model; values depend only on the seed and the tensor's name.
#[derive(Debug, Clone)]
pub struct DetrInit {
    seed: u64,
    config: DeformableDetrConfig,
}

impl DetrInit {
    /// The initialiser of `config`'s tensors drawn from `seed`.
    pub fn new(config: &DeformableDetrConfig, seed: u64) -> Self {
        Self {
            seed,
            config: config.clone(),
        }
    }

    /// The reference's sampling-offset bias `[M · L · P · 2]`: head `m` points along angle
    /// `2πm/M`, scaled so the larger coordinate is 1, times `p + 1` for point `p`.
    fn offset_grid(heads: usize, levels: usize, points: usize) -> Vec<f32> {
        (0..heads)
            .flat_map(|m| {
                let theta = std::f64::consts::TAU * m as f64 / heads as f64;
                let (sin, cos) = theta.sin_cos();
                let scale = cos.abs().max(sin.abs());
                (0..levels).flat_map(move |_| {
                    (0..points)
                        .flat_map(move |p| [cos, sin].map(|v| (v / scale * (p + 1) as f64) as f32))
                })
            })
            .collect()
    }

    fn values(&self, key: &str, shape: &[usize]) -> Vec<f32> {
        let len: usize = shape.iter().product();
        let constant = |value: f32| vec![value; len];
        let last = key.rsplit('.').next().unwrap_or(key);
        let parent = key.rsplit('.').nth(1).unwrap_or("");
        let is_norm = parent.contains("norm")
            || parent.starts_with("bn")
            || (parent == "1" && (key.contains("downsample") || key.contains("input_proj")));
        let is_last_box_layer = key.contains("bbox_embed") && key.contains("layers.2.");
        match (last, shape.len()) {
            ("running_var", _) => constant(1.0),
            ("running_mean", _) => constant(0.0),
            ("weight", _) if is_norm => constant(1.0),
            ("bias", _) if parent == "sampling_offsets" => {
                let encoder = key.contains("encoder.");
                let (heads, points) = if encoder {
                    (self.config.encoder_heads, self.config.encoder_points)
                } else {
                    (self.config.decoder_heads, self.config.decoder_points)
                };
                Self::offset_grid(heads, self.config.num_feature_levels, points)
            }
            ("bias", _) if key.starts_with("class_embed") => {
                constant(-((1.0 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY).ln() as f32)
            }
            ("bias", _) => constant(0.0),
            ("weight", _)
                if parent == "sampling_offsets"
                    || parent == "attention_weights"
                    || is_last_box_layer =>
            {
                constant(0.0)
            }
            ("weight", 4) => {
                let fan_in = (shape[1] * shape[2] * shape[3]) as f32;
                self.normal(key, len, (2.0 / fan_in).sqrt())
            }
            ("weight", 2) if !key.contains("embeddings") => {
                let bound = (6.0 / (shape[0] + shape[1]) as f32).sqrt();
                let mut rng = key_rng(self.seed, key);
                (0..len).map(|_| rng.random_range(-bound..bound)).collect()
            }
            _ => self.normal(key, len, 1.0),
        }
    }

    fn normal(&self, key: &str, len: usize, std: f32) -> Vec<f32> {
        let mut rng = key_rng(self.seed, key);
        (0..len)
            .map(|_| std * sample_truncated_normal(&mut rng))
            .collect()
    }
}

impl ParamSource for DetrInit {
    fn tensor(&mut self, key: &str, shape: &[usize], _device: &Device) -> Result<TensorData> {
        Ok(TensorData::new(self.values(key, shape), shape.to_vec()))
    }

    fn contains(&self, _key: &str) -> bool {
        true
    }
}

impl DeformableDetr {
    /// A fresh model of `config` for training from scratch ([`DetrInit`] from `seed`), with
    /// adapters drawn from `seed` too. Every tensor is frozen, as after loading a checkpoint.
    ///
    /// # Errors
    /// An invalid config.
    pub fn init(
        config: &DeformableDetrConfig,
        lora: &LoraConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        Self::load(config, &mut DetrInit::new(config, seed), lora, seed, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_grid_points_each_head_along_its_own_ray() {
        // 4 heads, 1 level, 2 points: angles 0, 90, 180, 270 degrees.
        let grid = DetrInit::offset_grid(4, 1, 2);
        let expected = [
            [1.0, 0.0, 2.0, 0.0],
            [0.0, 1.0, 0.0, 2.0],
            [-1.0, 0.0, -2.0, 0.0],
            [0.0, -1.0, 0.0, -2.0],
        ];
        for (head, want) in grid.chunks(4).zip(expected) {
            for (got, want) in head.iter().zip(want) {
                assert!((got - want).abs() < 1e-6, "{head:?} vs {want:?}");
            }
        }
    }
}
