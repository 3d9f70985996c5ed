//! # gs-lora-train
//!
//! Datasets, task schedules, the continual-forgetting loop, checkpoints and reports for
//! GS-LoRA: given a pretrained model and a dataset, a sequence of forgetting tasks is run,
//! measured on the validation split and saved after every task so an interrupted run resumes.

pub mod batch;
pub mod config;
pub mod data;
pub mod detection;
pub mod embedded;
mod error;
pub mod eval;
pub mod forget;
pub mod io;
pub mod model_dir;
pub mod pretrain;
pub mod probe;
pub mod progress;
pub mod report;
pub mod schedule;
pub mod step;

pub use config::{ForgetConfig, Method, Replay};
pub use error::{Result, TrainError};
pub use forget::{RunDir, RunState, TaskResult, run_forgetting};
pub use model_dir::{ModelDir, ModelInfo};
pub use schedule::{Task, TaskSchedule};
