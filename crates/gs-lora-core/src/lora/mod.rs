//! Low-rank adapters on Linear layers, with the semantics GS-LoRA needs: a frozen base,
//! seeded per-task initialisation, merge/unmerge and reset to a fresh adapter.

mod config;
mod init;
mod linear;

pub use config::LoraConfig;
pub use init::{LoraInit, derive_seed};
pub use linear::LoraLinear;
