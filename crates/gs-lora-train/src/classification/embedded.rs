//! The embedded default: a generated dataset and a small ViT pretrained on it, cached on disk.

use gs_lora_core::{DataParallel, LoraConfig};
use gs_lora_models::VisionTransformer;
use gs_lora_models::vit::{GlobalPool, HeadKind, PosResample, VitConfig, VitFormat};
use gs_lora_models::weights::SeededInit;

use super::classifier_dir::{ClassifierDir, ClassifierInfo};
use super::data::{Dataset, SyntheticShapes, SyntheticShapesConfig};
use super::pretrain::{PretrainConfig, pretrain};
use crate::error::{Result, TrainError};
use crate::image::{Normalization, Preprocess};

/// The small ViT of the embedded default: patch 8, width 64, six blocks of four heads, FFN 128
/// (16 tokens at the embedded 32×32 inputs): small enough to pretrain in minutes on two CPU
/// cores. `image_size` must be a multiple of 8.
pub fn embedded_config(image_size: usize, num_classes: usize) -> VitConfig {
    VitConfig {
        format: VitFormat::Timm,
        image_size,
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
        dropout: 0.0,
    }
}

/// How the embedded model reads its images: whole 32×32 RGB images, `[0, 1]` mapped to `[−1, 1]`.
pub const EMBEDDED_PREPROCESS: Preprocess = Preprocess {
    image_size: 32,
    crop_pct: 1.0,
    channels: 3,
    norm: Normalization::HALF,
};

/// The embedded dataset for `seed`.
pub fn embedded_dataset(seed: u64) -> Dataset {
    SyntheticShapes::generate(&SyntheticShapesConfig {
        seed,
        ..Default::default()
    })
}

/// The pretrained embedded model from the model directory `cache`, training it from scratch
/// and saving it there first when absent (each batch split across `devices`). Returns the model
/// on the primary device with fresh adapters.
///
/// # Errors
/// Training or file errors, or a cached model of other classes.
pub fn load_or_pretrain(
    cache: &ClassifierDir,
    dataset: &Dataset,
    pretrain_config: &PretrainConfig,
    lora: &LoraConfig,
    devices: &DataParallel,
) -> Result<VisionTransformer> {
    if !cache.exists() {
        eprintln!(
            "pretraining the embedded model (cached in {})",
            cache.path().display()
        );
        let (model, accuracy) = pretrain_from_scratch(
            dataset,
            &EMBEDDED_PREPROCESS,
            pretrain_config,
            lora,
            devices,
        )?;
        eprintln!("pretrained: validation accuracy {accuracy:.2}%");
        let info = ClassifierInfo {
            class_names: dataset.class_names.clone(),
            preprocess: EMBEDDED_PREPROCESS,
            forgotten: Vec::new(),
            split_seed: dataset.split_seed,
            val_fraction: Some(dataset.val_fraction),
        };
        cache.save(&model, &info)?;
    }
    cache.info()?.check_data(dataset)?;
    cache.load(lora, pretrain_config.seed, devices.primary())
}

/// A new small ViT ([`embedded_config`] at `preprocess.image_size`), initialised from
/// `config.seed` on the primary device of `devices` and trained on `dataset` with [`pretrain`].
///
/// # Errors
/// An image size that is not a multiple of the patch size (8), or [`pretrain`]'s errors.
pub fn pretrain_from_scratch(
    dataset: &Dataset,
    preprocess: &Preprocess,
    config: &PretrainConfig,
    lora: &LoraConfig,
    devices: &DataParallel,
) -> Result<(VisionTransformer, f64)> {
    let architecture = embedded_config(preprocess.image_size, dataset.num_classes());
    if !preprocess
        .image_size
        .is_multiple_of(architecture.patch_size)
    {
        return Err(TrainError::Setting {
            name: "image_size",
            problem: format!(
                "must be a multiple of the patch size {}, found {}",
                architecture.patch_size, preprocess.image_size
            ),
        });
    }
    let model = VisionTransformer::load(
        &architecture,
        &mut SeededInit::new(config.seed),
        lora,
        config.seed,
        devices.primary(),
    )?;
    pretrain(model, dataset, config, preprocess, devices.clone())
}
