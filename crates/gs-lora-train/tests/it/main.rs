//! Integration tests of `gs-lora-train`, one binary: data formats, schedules and batches,
//! detection matching and AP, and whole forgetting runs (classification and detection). The
//! fused-ops comparison (`fused_training.rs`) and the fuzzer (`fuzz.rs`) have binaries of their
//! own: they switch process-wide state.

mod common;

mod data_formats;
mod data_parallel;
mod detection;
mod detection_forgetting;
mod forgetting_run;
mod protocol;
mod schedule_and_data;
