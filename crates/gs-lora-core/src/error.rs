//! The error type of `gs-lora-core`.

/// Everything that can go wrong in `gs-lora-core` on user input.
///
/// Each message says what was expected and what was found, so a caller can surface it as is.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CoreError {
    /// The LoRA rank is zero.
    #[error("LoRA rank must be at least 1, found 0")]
    ZeroRank,
    /// The LoRA rank exceeds a dimension of the layer it adapts.
    #[error(
        "LoRA rank {rank} exceeds the layer's smaller dimension (d_input {d_input}, d_output {d_output})"
    )]
    RankTooLarge {
        /// Requested rank.
        rank: usize,
        /// Input features of the adapted layer.
        d_input: usize,
        /// Output features of the adapted layer.
        d_output: usize,
    },
    /// A hyper-parameter that must be a finite number is not.
    #[error("{name} must be a finite number, found {value}")]
    NonFinite {
        /// Name of the hyper-parameter.
        name: &'static str,
        /// The value found.
        value: f64,
    },
    /// A hyper-parameter is outside its allowed range.
    #[error("{name} must be {expected}, found {value}")]
    OutOfRange {
        /// Name of the hyper-parameter.
        name: &'static str,
        /// The allowed range, in words.
        expected: &'static str,
        /// The value found.
        value: f64,
    },
    /// An adapter group holds no adapted layer.
    #[error("adapter group `{group}` holds no LoRA layer; every group needs at least one")]
    EmptyGroup {
        /// Name of the group.
        group: String,
    },
    /// A model exposes no adapter group at all.
    #[error("the model exposes no LoRA adapter group")]
    NoGroups,
    /// `merge` was called on a layer whose adapter is already merged.
    #[error(
        "the LoRA adapter is already merged into the base weight; merging twice would apply it twice"
    )]
    AlreadyMerged,
    /// `unmerge` was called on a layer whose adapter is not merged.
    #[error("the LoRA adapter is not merged into the base weight, so there is nothing to unmerge")]
    NotMerged,
    /// Two tensors that must agree in shape do not.
    #[error("{what}: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// Which tensors, in words.
        what: &'static str,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A class label lies outside `0..num_classes`.
    #[error("label {label} is out of range for {num_classes} classes")]
    LabelOutOfRange {
        /// The offending label.
        label: i64,
        /// Number of classes.
        num_classes: usize,
    },
    /// A prototype was requested for a class with no sample.
    #[error("cannot compute the prototype of class {class}: it has no sample")]
    EmptyClass {
        /// The class without samples.
        class: usize,
    },
    /// Reading a tensor's values back to the host failed (a device error).
    #[error("reading tensor values from the device failed: {0}")]
    Read(String),
    /// A batch is empty where at least one sample is needed.
    #[error("{what} is empty; at least one sample is needed")]
    EmptyBatch {
        /// Which input, in words.
        what: &'static str,
    },
    /// Something would need more memory (or a larger file) than the limit allows.
    #[error(
        "{what} needs about {} but the limit is {} (set {var} to raise it)",
        crate::limits::human_bytes(*bytes),
        crate::limits::human_bytes(u128::from(*limit))
    )]
    TooLarge {
        /// What was about to be allocated or read, in words.
        what: String,
        /// The bytes it would need.
        bytes: u128,
        /// The limit in force.
        limit: u64,
        /// The environment variable that raises the limit.
        var: &'static str,
    },
    /// A limit's environment variable is not a size.
    #[error("{var} must be a size in bytes such as 16G or 512M, found `{value}`")]
    InvalidLimit {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
}

/// Result alias for `gs-lora-core`.
pub type Result<T> = std::result::Result<T, CoreError>;

/// Reads a tensor's values to the host as `E` (converting the dtype).
pub(crate) fn read_values<const D: usize, K, E>(
    tensor: burn::tensor::Tensor<D, K>,
) -> Result<Vec<E>>
where
    K: burn::tensor::kind::Basic,
    E: burn::tensor::Element,
{
    tensor
        .try_into_vec_as::<E>()
        .map_err(|err| CoreError::Read(err.to_string()))
}

/// Checks that `value` is finite, naming it in the error.
pub(crate) fn ensure_finite(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(CoreError::NonFinite { name, value })
    }
}

/// Checks that `value` is finite and not negative, naming it in the error.
pub(crate) fn ensure_non_negative(name: &'static str, value: f64) -> Result<f64> {
    ensure_finite(name, value)?;
    if value >= 0.0 {
        Ok(value)
    } else {
        Err(CoreError::OutOfRange {
            name,
            expected: "at least 0",
            value,
        })
    }
}
