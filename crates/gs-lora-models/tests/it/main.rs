//! Integration tests of `gs-lora-models`, one binary: every model family against the outputs
//! of its reference implementation (committed fixtures made by `tools/`), and saving.

mod common;

mod checkpoint_shards;
mod deformable_attention;
mod detr_parity;
mod dropout;
mod peft_adapters;
mod resnet;
mod vit_parity;
mod vit_save;
