//! Where a model's parameters come from: a safetensors checkpoint or a seeded initialiser.
//!
//! Models ask for tensors by their canonical name (timm's names, PyTorch layout: Linear weights
//! `[out, in]`) through a [`Weights`] loader; a [`ParamSource`] answers with a tensor of exactly
//! the asked shape or an error naming the key and both shapes. The loader says what each
//! parameter is ([`Init`]), so that initialisers need not guess it from the name.

mod builder;
mod checkpoint;
mod location;
mod seeded;

use burn::tensor::TensorData;

pub(crate) use builder::frozen;
pub use builder::{ConvShape, Weights};
pub use checkpoint::{
    CheckpointSource, IdentityKeys, KeyMap, ensure_finite, read_tensor, set_allow_non_finite,
    write_tensors,
};
pub use location::{CheckpointFiles, hub_cache};
pub use seeded::SeededInit;
pub(crate) use seeded::{key_rng, sample_truncated_normal};

use crate::error::Result;

/// What a parameter is, which decides how an initialiser fills it (a checkpoint ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// A Linear's weight `[out, in]`.
    Linear,
    /// A Linear's weight that a fresh detector starts at zero, so that the layer first predicts
    /// its bias (sampling offsets, attention logits, the last box layer).
    ZeroLinear,
    /// A convolution's kernel `[out, in, k, k]`.
    Conv,
    /// A learned embedding: class token, positions, object queries, levels.
    Embedding,
    /// A bias, or a norm's shift.
    Bias,
    /// A detector's class bias, which a fresh detector starts at the object prior.
    ClassBias,
    /// Deformable attention's sampling-offset bias, which a fresh detector starts with each
    /// head's points on a ray of its own.
    SamplingOffsetBias {
        /// Heads `M`.
        heads: usize,
        /// Feature levels `L`.
        levels: usize,
        /// Points `P` per level and head.
        points: usize,
    },
    /// A LayerNorm's scale, or a layer scale.
    Scale,
    /// A batch or group norm's scale.
    ChannelNormScale,
    /// A batch norm's running mean.
    RunningMean,
    /// A batch norm's running variance.
    RunningVar,
}

/// A supplier of named parameter tensors.
pub trait ParamSource {
    /// The tensor called `key` (canonical name), which must have `shape`; `init` says what the
    /// parameter is, for sources that make tensors up.
    fn tensor(&mut self, key: &str, shape: &[usize], init: Init) -> Result<TensorData>;

    /// Whether the source has a tensor called `key`.
    fn contains(&self, key: &str) -> bool;
}
