//! # gs-lora-models
//!
//! Vision models with LoRA on their FFN layers for GS-LoRA: the ViT family (timm ViT, Hugging
//! Face ViT and DINOv2, the paper's face ViT) and Deformable DETR, loaded from safetensors.
//!
//! Not implemented yet: this crate is tracked by the project's model issues and currently only
//! re-exports the core trait every model implements.

pub use gs_lora_core::LoraModel;
