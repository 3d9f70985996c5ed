//! Seeded initialisation of the LoRA factors.

use burn::config::Config;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How the `A` factor of a fresh adapter is drawn (`B` always starts at zero).
///
/// GS-LoRA draws `A` from PyTorch's Kaiming-uniform with negative slope `a`: bound
/// `gain · sqrt(3 / d_input)` with `gain = sqrt(2 / (1 + a²))`. The first task uses PyTorch's
/// default `a = √5` (bound `1/sqrt(d_input)`); later tasks use `a = √50`, a bound 2.9× smaller,
/// so that a fresh adapter perturbs an already-edited model less.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum LoraInit {
    /// Kaiming-uniform with the given negative slope `a`.
    KaimingUniform {
        /// Negative slope of the rectifier assumed by the gain formula.
        a: f64,
    },
}

impl LoraInit {
    /// The first task's initialisation: Kaiming-uniform with `a = √5`.
    pub fn first_task() -> Self {
        Self::KaimingUniform { a: 5f64.sqrt() }
    }

    /// The initialisation of every later task: Kaiming-uniform with `a = √50`.
    pub fn later_task() -> Self {
        Self::KaimingUniform { a: 50f64.sqrt() }
    }

    /// The initialisation the paper uses for task `task` (0-based).
    pub fn for_task(task: usize) -> Self {
        if task == 0 {
            Self::first_task()
        } else {
            Self::later_task()
        }
    }

    /// Half-width of the uniform distribution for a layer with `d_input` input features.
    pub fn bound(&self, d_input: usize) -> f64 {
        match *self {
            Self::KaimingUniform { a } => {
                let gain = (2.0 / (1.0 + a * a)).sqrt();
                gain * (3.0 / d_input as f64).sqrt()
            }
        }
    }

    /// Draws `A` in Burn's layout `[d_input, rank]` from a generator seeded with `seed`.
    ///
    /// The values depend only on `seed` and the shape, never on a backend's global RNG, so a run
    /// is reproducible on every backend.
    pub(crate) fn sample_a(
        &self,
        d_input: usize,
        rank: usize,
        seed: u64,
        device: &Device,
    ) -> Tensor<2> {
        let bound = self.bound(d_input) as f32;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let values: Vec<f32> = (0..d_input * rank)
            .map(|_| rng.random_range(-bound..=bound))
            .collect();
        Tensor::from_data(TensorData::new(values, [d_input, rank]), device)
    }
}

impl Default for LoraInit {
    fn default() -> Self {
        Self::first_task()
    }
}

/// Derives the seed of one item (a layer, a task) from a run seed, so that items drawn from the
/// same run seed are independent and reordering code never changes which numbers an item gets.
///
/// SplitMix64 finaliser over `seed ⊕ (index · golden ratio)`.
pub fn derive_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
