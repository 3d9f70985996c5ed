//! # gs-lora-models
//!
//! Vision models with LoRA on their FFN layers for GS-LoRA, loaded from the safetensors
//! checkpoints users have: timm ViT, Hugging Face ViT and DINOv2, and the face Transformer of
//! the official GS-LoRA code ([`vit`]); merged models and PEFT-style adapters are saved back.
//!
//! Every model implements [`gs_lora_core::LoraModel`] with one adapter group per Transformer
//! block (`fc1` and `fc2` of its FFN).

mod config_file;
pub mod deformable;
mod error;
pub mod resnet;
pub mod vit;
pub mod weights;

pub use error::{ModelError, Result};
pub use vit::{VisionTransformer, VitConfig, VitOutput};
