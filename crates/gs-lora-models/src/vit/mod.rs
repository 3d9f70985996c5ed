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
mod peft;
mod pos_embed;
mod timm;
mod torchvision;

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
pub use peft::{PeftLoraConfig, TargetModules};
pub use pos_embed::{PosResample, resample_grid};
pub use torchvision::TorchvisionKeys;

use crate::error::Result;
use crate::weights::{CheckpointSource, IdentityKeys, KeyMap};

impl VisionTransformer {
    /// Loads a checkpoint as users download it: `config.json` (Hugging Face, timm, or one written
    /// for a torchvision or GS-LoRA face state dict) and the weights (`model.safetensors`, or a
    /// PyTorch `.pth`), with fresh LoRA adapters drawn from `seed`.
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
        let source = CheckpointSource::open(weights_path, config.key_map())?;
        let mut source = match config.format {
            VitFormat::Torchvision => {
                let keys = TorchvisionKeys::for_names(source.names());
                source.with_keys(Box::new(keys) as Box<dyn KeyMap>)
            }
            _ => source,
        };
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
            VitFormat::Torchvision => Box::new(TorchvisionKeys::default()),
        }
    }
}
