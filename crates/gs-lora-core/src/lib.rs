//! # gs-lora-core
//!
//! The building blocks of GS-LoRA (Zhao et al., CVPR 2024) and GS-LoRA++: LoRA adapters on
//! Linear layers, group sparsity over adapter groups, the retention, bounded forgetting and
//! prototype losses, and the continual-forgetting metrics.
//!
//! Everything here is device-agnostic (Burn picks the backend at run time from the tensors'
//! device) and does no file I/O. Models expose their adapters through [`LoraModel`].
//!
//! ```text
//! L = L_r + β·L_f + α·L_s + L_pro
//! L_r   = CE(logits(x_r), y_r)                       retain_loss
//! L_f   = ReLU(BND − CE(logits(x_f), y_f))           forget_loss
//! L_s   = Σ_g sqrt(Σ_{p∈g} ‖p‖_F²)                   group_lasso
//! L_pro = w_f·ReLU(BND_pro − KL_f) + w_r·KL_r        PrototypeLossConfig::loss
//! ```

mod adapter_group;
mod data_parallel;
mod dropout;
mod error;
pub mod fused;
mod group_lasso;
pub mod limits;
pub mod lora;
pub mod loss;
mod metrics;
mod param;
mod select_rows;

pub use adapter_group::{
    LoraGroup, LoraModel, adapter_param_ids, checked_groups, checked_groups_mut, merge_adapters,
    reset_adapters,
};
pub use data_parallel::{Batched, DataParallel};
pub use dropout::{check_dropout, dropout, seed_dropout};
pub use error::{CoreError, Result};
pub use group_lasso::{
    GroupLassoConfig, group_gradient_squares, group_lasso, group_norms, group_soft_threshold,
};
pub use limits::Limits;
pub use lora::{LoraConfig, LoraInit, LoraLinear};
pub use metrics::{ClassAccuracy, TaskMetrics, h_mean};
pub use select_rows::select_rows;
