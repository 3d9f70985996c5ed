//! Integration tests of `gs-lora-core`, one binary: LoRA layers, group sparsity, losses,
//! metrics and the fused ops, each against hand computation or a reference fixture.

mod common;

mod detection_losses;
mod dropout;
mod fused;
mod group_lasso;
mod lora_linear;
mod losses;
mod metrics;
