//! Seeded initialisation in timm's style, for models trained here from scratch.

use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Init, ParamSource};
use crate::error::Result;

/// Seeded initialisation in timm's style: weights and embeddings from a normal with std 0.02
/// truncated at ±2 std, biases zero, LayerNorm weights and layer scales one. Batch- and
/// group-norm scales and statistics draw like weights (checkpoints made from this initialiser
/// pin that).
///
/// Each tensor's values depend only on the seed and its name, never on the order tensors are
/// asked for or on a backend RNG.
#[derive(Debug, Clone, Copy)]
pub struct SeededInit {
    seed: u64,
}

impl SeededInit {
    /// An initialiser drawing from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }
}

impl ParamSource for SeededInit {
    fn tensor(&mut self, key: &str, shape: &[usize], init: Init) -> Result<TensorData> {
        let len = shape.iter().product();
        let values = match init {
            Init::Bias | Init::ClassBias | Init::SamplingOffsetBias { .. } => vec![0.0; len],
            Init::Scale => vec![1.0; len],
            Init::Linear
            | Init::ZeroLinear
            | Init::Conv
            | Init::Embedding
            | Init::ChannelNormScale
            | Init::RunningMean
            | Init::RunningVar => {
                let mut rng = key_rng(self.seed, key);
                (0..len)
                    .map(|_| 0.02 * sample_truncated_normal(&mut rng))
                    .collect()
            }
        };
        Ok(TensorData::new(values, shape.to_vec()))
    }

    fn contains(&self, _key: &str) -> bool {
        true
    }
}

/// The random stream of the tensor called `key` under `seed` (FNV-1a of the name), so a
/// tensor's values never depend on the order tensors are asked for.
pub(crate) fn key_rng(seed: u64, key: &str) -> ChaCha8Rng {
    let name_hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    ChaCha8Rng::seed_from_u64(gs_lora_core::lora::derive_seed(seed, name_hash))
}

/// A standard normal draw truncated to [-2, 2] (Box-Muller, rejection).
pub(crate) fn sample_truncated_normal(rng: &mut impl Rng) -> f32 {
    loop {
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        if z.abs() <= 2.0 {
            return z as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bits of the seed-3 tensor `key` `[3]` of kind `init`.
    fn bits(key: &str, init: Init) -> Vec<u32> {
        let data = SeededInit::new(3).tensor(key, &[3], init).expect("seeded");
        let values: Vec<f32> = data.try_to_vec().expect("f32");
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// Checkpoints made from this initialiser (pretrained models of the train crate) depend on
    /// its values bit for bit: a tensor's name and kind decide them.
    #[test]
    fn seeded_values_are_pinned() {
        assert_eq!(
            bits("blocks.0.mlp.fc1.weight", Init::Linear),
            [3150556222, 3147612098, 1022797436]
        );
        // Batch-norm statistics draw like weights (see the type's documentation).
        assert_eq!(
            bits("model.backbone.model.bn1.running_var", Init::RunningVar),
            [1021967201, 3124294606, 3162808011]
        );
        assert_eq!(bits("blocks.0.mlp.fc1.bias", Init::Bias), [0; 3]);
        assert_eq!(bits("class_embed.0.bias", Init::ClassBias), [0; 3]);
        assert_eq!(
            bits("blocks.0.norm1.weight", Init::Scale),
            [1f32.to_bits(); 3]
        );
    }
}
