//! The embedded default: a generated dataset and a small ViT pretrained on it, cached on disk.

use std::path::Path;

use burn::tensor::Device;
use gs_lora_core::LoraConfig;
use gs_lora_models::VisionTransformer;
use gs_lora_models::vit::{GlobalPool, HeadKind, PosResample, VitConfig, VitFormat};
use gs_lora_models::weights::SeededInit;

use crate::batch::Normalization;
use crate::data::{Dataset, SyntheticShapes, SyntheticShapesConfig};
use crate::error::Result;
use crate::pretrain::{PretrainConfig, pretrain};

/// The small ViT of the embedded default: 32×32 inputs, patch 8 (16 tokens), width 64, six
/// blocks of four heads, FFN 128: small enough to pretrain in minutes on two CPU cores.
pub fn embedded_model_config(num_classes: usize) -> VitConfig {
    VitConfig {
        format: VitFormat::Timm,
        image_size: 32,
        patch_size: 8,
        num_channels: 3,
        hidden_size: 64,
        depth: 6,
        num_heads: 4,
        mlp_hidden: 128,
        qkv_bias: true,
        layer_norm_eps: 1e-6,
        class_token: true,
        global_pool: GlobalPool::Token,
        layer_scale: false,
        num_classes: Some(num_classes),
        pos_resample: PosResample::BicubicAntialias,
        attention_scale: None,
        head: HeadKind::Linear,
    }
}

/// The normalisation of the embedded default.
pub const EMBEDDED_NORMALIZATION: Normalization = Normalization::HALF;

/// The embedded dataset for `seed`.
pub fn embedded_dataset(seed: u64) -> Dataset {
    SyntheticShapes::generate(&SyntheticShapesConfig {
        seed,
        ..Default::default()
    })
}

/// The pretrained embedded model from `cache` (`config.json` + `model.safetensors`), training
/// and saving it there first when absent. Returns the model on `device` with fresh adapters.
///
/// # Errors
/// Training or file errors.
pub fn load_or_pretrain(
    cache: &Path,
    dataset: &Dataset,
    pretrain_config: &PretrainConfig,
    lora: &LoraConfig,
    device: &Device,
) -> Result<VisionTransformer> {
    let (config_path, weights_path) = (cache.join("config.json"), cache.join("model.safetensors"));
    if !weights_path.exists() {
        eprintln!(
            "pretraining the embedded model (cached in {})",
            cache.display()
        );
        let config = embedded_model_config(dataset.num_classes());
        let model = VisionTransformer::load(
            &config,
            &mut SeededInit::new(pretrain_config.seed),
            lora,
            pretrain_config.seed,
            device,
        )?;
        let (model, accuracy) = pretrain(
            model,
            dataset,
            pretrain_config,
            &EMBEDDED_NORMALIZATION,
            device,
        )?;
        eprintln!("pretrained: validation accuracy {accuracy:.2}%");
        let tmp = cache.with_extension("tmp");
        std::fs::remove_dir_all(&tmp).ok();
        model.save_pretrained(&tmp)?;
        std::fs::remove_dir_all(cache).ok();
        std::fs::rename(&tmp, cache).map_err(crate::error::io(cache))?;
    }
    Ok(VisionTransformer::from_pretrained(
        config_path,
        weights_path,
        lora,
        pretrain_config.seed,
        device,
    )?)
}
