//! # gs-lora-train
//!
//! Datasets, task schedules, the continual-forgetting loop, checkpoints and reports for GS-LoRA,
//! and the `gs-lora` command-line program.
//!
//! Not implemented yet: this crate is tracked by the project's training issue and currently
//! only re-exports the core building blocks the loop composes.

pub use gs_lora_core::{GroupLassoConfig, LoraConfig, TaskMetrics};
