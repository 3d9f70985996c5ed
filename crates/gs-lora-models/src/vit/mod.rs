//! The Vision Transformer family: timm ViT, Hugging Face ViT and DINOv2, and GS-LoRA's face
//! Transformer, with LoRA on every FFN.

mod attention;
mod block;
pub(crate) mod config;
mod export;
mod face;
mod head;
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
pub use face::FaceKeys;
pub use head::{CosFace, Head, HeadKind};
pub use hf::HfKeys;
pub use model::{VisionTransformer, VitOutput};
pub use pos_embed::{PosResample, resample_grid};

use crate::error::Result;
use crate::weights::{IdentityKeys, KeyMap, SafetensorsSource};

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
        let mut source = SafetensorsSource::open(weights_path, config.key_map())?;
        let model = Self::load(&config, &mut source, lora, seed, device)?;
        source.finish()?;
        Ok(model)
    }
}

impl VitConfig {
    /// How checkpoints of this config's format name their tensors.
    pub fn key_map(&self) -> Box<dyn KeyMap> {
        match self.format {
            VitFormat::Timm => Box::new(IdentityKeys),
            VitFormat::HfVit | VitFormat::HfDinov2 => Box::new(HfKeys::new(self)),
            VitFormat::GsLoraFace => Box::new(FaceKeys),
        }
    }
}
