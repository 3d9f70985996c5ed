//! Integration tests of `gs-lora-core`, one binary: LoRA layers, group sparsity, losses,
//! metrics, the fused ops and `select_rows`, each against hand computation or a reference fixture.

mod common;

mod detection_losses;
mod dropout;
mod fused;
mod group_lasso;
mod lora_linear;
mod losses;
mod metrics;
mod select_rows;
