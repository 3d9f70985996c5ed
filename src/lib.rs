//! # gs-lora
//!
//! Continual forgetting for pre-trained vision models with GS-LoRA (Zhao et al., CVPR 2024) and
//! GS-LoRA++, on [Burn](https://burn.dev). Each erasure request trains fresh LoRA adapters on
//! every Transformer block's FFN with a bounded forgetting loss on the classes to erase, a
//! retention loss on the rest and a group-lasso penalty that switches whole blocks' adapters
//! off; the adapters are merged when the task ends.
//!
//! This facade re-exports the workspace crates and owns the backend features:
//!
//! | module | crate | contents |
//! |---|---|---|
//! | [`core`] | `gs-lora-core` | LoRA layers, group sparsity, losses, metrics |
//! | [`models`] | `gs-lora-models` | Vision Transformers and Deformable DETR with LoRA |
//! | [`train`] | `gs-lora-train` | data, task schedules, the forgetting loop, reports |
//! | [`backend`] | this crate | `--backend flex\|ndarray\|wgpu\|cuda` to a `Device` |

#[cfg(feature = "mimalloc")]
pub mod allocator;
pub mod backend;
pub mod cli;

pub use gs_lora_core as core;
pub use gs_lora_models as models;
pub use gs_lora_train as train;

/// The README, so that its Rust example ("Using the core API") compiles and runs as a doctest
/// (`cargo test --doc`); only built for doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
