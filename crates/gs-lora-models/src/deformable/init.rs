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
use crate::weights::{Init, ParamSource, key_rng, sample_truncated_normal};
use gs_lora_core::LoraConfig;

/// Prior probability of an object that the class head's bias starts from.
const PRIOR_PROBABILITY: f64 = 0.01;

/// The [`ParamSource`] of a fresh model; values depend only on the seed, the tensor's name
/// and its kind.
#[derive(Debug, Clone, Copy)]
pub struct DetrInit {
    seed: u64,
}

impl DetrInit {
    /// The initialiser of a fresh model's tensors drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
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

    fn values(&self, key: &str, shape: &[usize], init: Init) -> Vec<f32> {
        let len: usize = shape.iter().product();
        let constant = |value: f32| vec![value; len];
        match init {
            Init::Bias | Init::RunningMean | Init::ZeroLinear => constant(0.0),
            Init::Scale | Init::ChannelNormScale | Init::RunningVar => constant(1.0),
            Init::SamplingOffsetBias {
                heads,
                levels,
                points,
            } => Self::offset_grid(heads, levels, points),
            Init::ClassBias => {
                constant(-((1.0 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY).ln() as f32)
            }
            // Kaiming normal (fan-in, ReLU gain).
            Init::Conv => {
                let fan_in = shape[1..].iter().product::<usize>() as f32;
                self.normal(key, len, (2.0 / fan_in).sqrt())
            }
            // Xavier uniform.
            Init::Linear => {
                let bound = (6.0 / (shape[0] + shape[1]) as f32).sqrt();
                let mut rng = key_rng(self.seed, key);
                (0..len).map(|_| rng.random_range(-bound..bound)).collect()
            }
            Init::Embedding => self.normal(key, len, 1.0),
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
    fn tensor(&mut self, key: &str, shape: &[usize], init: Init) -> Result<TensorData> {
        Ok(TensorData::new(
            self.values(key, shape, init),
            shape.to_vec(),
        ))
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
        Self::load(config, &mut DetrInit::new(seed), lora, seed, device)
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

    /// The bits of the seed-3 tensor `key` of `shape` and kind `init`.
    fn bits(key: &str, shape: &[usize], init: Init) -> Vec<u32> {
        let data = DetrInit::new(3)
            .tensor(key, shape, init)
            .expect("initialised");
        let values: Vec<f32> = data.try_to_vec().expect("f32");
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// Fresh detectors (and the saved detectors made from them) depend on these values bit for
    /// bit: a tensor's name and kind decide them.
    #[test]
    fn initial_values_are_pinned() {
        assert_eq!(
            bits("model.decoder.layers.0.fc1.weight", &[2, 2], Init::Linear),
            [3193122656, 3213014274, 1060580068, 1066147557]
        );
        assert_eq!(
            bits("model.input_proj.0.0.weight", &[2, 1, 1, 1], Init::Conv),
            [3222500181, 1049098854]
        );
        assert_eq!(
            bits("model.level_embed", &[2], Init::Embedding),
            [1065917204, 1063958788]
        );
        let prior = bits("class_embed.0.bias", &[2], Init::ClassBias);
        assert_eq!(prior, [(-99f32.ln()).to_bits(); 2]);
        assert_eq!(
            bits("x.running_var", &[2], Init::RunningVar),
            [1f32.to_bits(); 2]
        );
        assert_eq!(
            bits("x.sampling_offsets.weight", &[2, 2], Init::ZeroLinear),
            [0; 4]
        );
    }
}
