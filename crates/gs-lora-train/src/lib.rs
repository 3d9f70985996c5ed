//! # gs-lora-train
//!
//! Continual forgetting for GS-LoRA: given a pretrained model and a dataset, a sequence of
//! forgetting tasks is run, measured after every task and checkpointed so an interrupted run
//! resumes.
//!
//! - [`engine`]: the model-agnostic task loop (run directory, schedule, training, resume), which
//!   takes a [`Method`](engine::Method) and a [`Family`](engine::Family);
//! - [`method`]: the forgetting methods (GS-LoRA, GS-LoRA++);
//! - [`classification`] and [`detection`]: the two model families, each with its data, model
//!   directory, pretraining and evaluation;
//! - [`report`]: the records a run writes and the files made from them;
//! - [`image`], [`io`], [`progress`]: images and their preprocessing, safe file writing, the
//!   progress line.

pub mod classification;
pub mod compare;
pub mod config;
pub mod detection;
pub mod engine;
mod error;
pub mod image;
pub mod io;
pub mod membership;
pub mod method;
pub mod progress;
pub mod protocol;
mod record;
pub mod report;

pub use config::{
    BaselineConfig, EvalSplit, FEW_SHOT_RETAIN_WEIGHT, ForgetConfig, ForgetLabels, ForgetLoss,
    MethodKind, Replay,
};
pub use engine::{RunDir, RunState, Task, TaskSchedule};
pub use error::{Result, TrainError};
pub use report::TaskResult;
