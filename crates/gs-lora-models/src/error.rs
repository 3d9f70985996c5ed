//! The error type of `gs-lora-models`.

use std::path::PathBuf;

/// Everything that can go wrong building, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done: `reading`, `writing`, ….
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint named by the user was found neither as a path nor in the Hugging Face cache.
    #[error("weights `{given}`: {message}")]
    CheckpointNotFound {
        /// The file, folder or repo id as given.
        given: String,
        /// Where it was looked for, and how to provide it.
        message: String,
    },
    /// A Hugging Face shard index (`*.index.json`) that cannot be read or does not match its
    /// shards.
    #[error("{path}: shard index: {message}")]
    ShardIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A safetensors file could not be parsed.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A PyTorch checkpoint (`.pth`, `.pt`) the reader cannot parse.
    #[error("{path}: not a readable PyTorch checkpoint: {message}")]
    Pytorch {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A `config.json` could not be understood.
    #[error("{path}: {message}")]
    Config {
        /// The file (or a description of where the config came from).
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The weights lack a tensor the architecture needs.
    #[error("{path}: missing tensor `{key}` (expected shape {expected:?})")]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The key looked for.
        key: String,
        /// The shape it should have.
        expected: Vec<usize>,
    },
    /// A tensor in the weights has the wrong shape for the architecture.
    #[error("{path}: tensor `{key}` has shape {found:?}, the config implies {expected:?}")]
    ShapeMismatch {
        /// The weights file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// Two names of one tied parameter (a head every decoder level shares) hold different values.
    #[error(
        "{path}: tensors `{read}` and `{copy}` are copies of one tied parameter but differ \
         (flat index {index}: {read_value} vs {copy_value})"
    )]
    TiedCopiesDiffer {
        /// The weights file.
        path: PathBuf,
        /// The copy the model reads.
        read: String,
        /// The copy that differs from it.
        copy: String,
        /// The first element that differs, counted in the flattened tensor.
        index: usize,
        /// That element in `read`.
        read_value: f32,
        /// That element in `copy`.
        copy_value: f32,
    },
    /// The weights hold tensors the architecture does not use.
    #[error("{path}: {count} unexpected tensor(s) for this config, e.g. {examples:?}")]
    UnexpectedTensors {
        /// The weights file.
        path: PathBuf,
        /// How many keys were not used.
        count: usize,
        /// Up to five of them.
        examples: Vec<String>,
    },
    /// A tensor has a dtype the loader cannot convert to `f32`.
    #[error("{path}: tensor `{key}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The weights file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The dtype found.
        dtype: String,
    },
    /// An input the model cannot take.
    #[error("invalid input: expected {expected}, found {found}")]
    Input {
        /// What the model expects.
        expected: String,
        /// What it was given.
        found: String,
    },
    /// A tensor could not be read back from its device.
    #[error("could not read {what} back from the device: {message}")]
    Readback {
        /// Which tensor.
        what: &'static str,
        /// The backend's reason.
        message: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A tensor holds NaN or infinite values.
    #[error(
        "{path}: tensor `{key}` holds {count} non-finite value(s) (NaN or ±inf), the first at index {index:?}; refusing to run on it"
    )]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor.
        key: String,
        /// How many values are not finite.
        count: usize,
        /// Index of the first one, per axis (for `pixel_values` `[B, C, H, W]`, the image first).
        index: Vec<usize>,
    },
    /// An error of the LoRA layers.
    #[error(transparent)]
    Core(#[from] gs_lora_core::CoreError),
}

/// Result alias for `gs-lora-models`.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Attaches what was being done (`action`) and `path` to an I/O error.
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.into();
    move |source| ModelError::Io {
        action,
        path,
        source,
    }
}
