//! The Vision Transformer family: timm ViT, Hugging Face ViT and DINOv2, with LoRA on every FFN.

mod attention;
mod block;
mod config;
mod hf;
mod model;
mod pos_embed;
mod timm;

use std::path::Path;

use burn::tensor::Device;
use gs_lora_core::LoraConfig;

pub use attention::Attention;
pub use block::{Block, Mlp};
pub use config::{GlobalPool, VitConfig, VitFormat};
pub use hf::HfKeys;
pub use model::{VisionTransformer, VitOutput};
pub use pos_embed::{PosResample, resample_grid};

use crate::error::Result;
use crate::weights::{IdentityKeys, SafetensorsSource};

impl VisionTransformer {
    /// Loads a checkpoint as users download it: `config.json` (Hugging Face or timm) and
    /// `model.safetensors`, with fresh LoRA adapters drawn from `seed`.
    ///
    /// # Errors
    /// An unreadable or unsupported config, or weights that do not match it: a missing,
    /// unexpected or mis-shaped tensor is an error naming the key and both shapes.
    pub fn from_pretrained(
        config_path: impl AsRef<Path>,
        weights_path: impl AsRef<Path>,
        lora: &LoraConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let config = VitConfig::from_file(config_path)?;
        match config.format {
            VitFormat::Timm => {
                let mut source = SafetensorsSource::open(weights_path, IdentityKeys)?;
                let model = Self::load(&config, &mut source, lora, seed, device)?;
                source.finish()?;
                Ok(model)
            }
            VitFormat::HfVit | VitFormat::HfDinov2 => {
                let mut source = SafetensorsSource::open(weights_path, HfKeys::new(&config))?;
                let model = Self::load(&config, &mut source, lora, seed, device)?;
                source.finish()?;
                Ok(model)
            }
        }
    }
}
