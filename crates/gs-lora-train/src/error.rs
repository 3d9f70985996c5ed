//! The error type of `gs-lora-train`.

use std::path::PathBuf;

/// Everything that can go wrong preparing or running a forgetting run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A run setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// A setting of a config is out of range: `name` is its field (`tasks`, `lora.rank`,
    /// `group_lasso.weight`, …), `problem` what is wrong with its value.
    #[error("invalid setting: `{name}` {problem}")]
    Setting {
        /// The field, as in `config.json`.
        name: &'static str,
        /// What is wrong, with the value found.
        problem: String,
    },
    /// A dataset is missing, empty or inconsistent.
    #[error("dataset: {0}")]
    Data(String),
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done: `reading`, `writing`, `renaming into place`, ….
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A plot could not be drawn.
    #[error("drawing {path}: {message}")]
    Plot {
        /// The plot file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A saved file could not be parsed.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Pretraining's loss became NaN or infinite; nothing was saved.
    #[error(
        "pretraining: the loss became {value} at epoch {epoch}, step {step}; stopped, nothing was saved (lower --lr?)"
    )]
    NonFinitePretrainLoss {
        /// The epoch.
        epoch: usize,
        /// The step within the epoch.
        step: usize,
        /// The loss value.
        value: f64,
    },
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "task {task}: the loss became {value} at epoch {epoch}, step {step}; stopped, the last finished task's checkpoint is kept"
    )]
    NonFiniteLoss {
        /// The task.
        task: usize,
        /// The epoch.
        epoch: usize,
        /// The step within the epoch.
        step: usize,
        /// The loss value.
        value: f64,
    },
    /// An error of the core building blocks.
    #[error(transparent)]
    Core(#[from] gs_lora_core::CoreError),
    /// An error of the models.
    #[error(transparent)]
    Model(#[from] gs_lora_models::ModelError),
}

/// Result alias for `gs-lora-train`.
pub type Result<T> = std::result::Result<T, TrainError>;

/// Attaches `path` to an I/O error met while reading it.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    io_error("reading", path)
}

/// Attaches what was being done (`action`) and `path` to an I/O error.
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io {
        action,
        path,
        source,
    }
}
