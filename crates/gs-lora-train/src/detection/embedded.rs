//! The embedded detection default: generated scenes and a small Deformable DETR trained on
//! them from scratch, cached on disk.

use burn::tensor::Device;
use gs_lora_core::LoraConfig;
use gs_lora_models::deformable::{DeformableDetr, DeformableDetrConfig};
use gs_lora_models::resnet::ResNetConfig;

use super::dataset::DetectionDataset;
use super::detector_dir::{DetectorDir, DetectorInfo};
use super::pretrain::{PretrainConfig, pretrain};
use super::synthetic::{SyntheticScenes, SyntheticScenesConfig};
use crate::error::{Result, TrainError};
use crate::image::{Normalization, Preprocess};

/// The small Deformable DETR of the embedded default: a four-stage bottleneck ResNet of one
/// block per stage (widths 8–64), width 64, two encoder and two decoder layers of four heads,
/// FFN 128, three feature levels with two sampling points each, 16 queries.
pub fn embedded_config(num_labels: usize) -> DeformableDetrConfig {
    DeformableDetrConfig {
        d_model: 64,
        encoder_layers: 2,
        decoder_layers: 2,
        encoder_heads: 4,
        decoder_heads: 4,
        encoder_ffn_dim: 128,
        decoder_ffn_dim: 128,
        num_queries: 16,
        num_feature_levels: 3,
        encoder_points: 2,
        decoder_points: 2,
        num_labels,
        with_box_refine: false,
        two_stage: false,
        two_stage_num_proposals: 0,
        dropout: 0.0,
        activation_dropout: 0.0,
        attention_dropout: 0.0,
        backbone: ResNetConfig {
            in_channels: 3,
            stem_width: 16,
            widths: vec![8, 16, 32, 64],
            depths: vec![1, 1, 1, 1],
        },
    }
}

/// How the embedded detector reads its images: whole 64×64 RGB images, ImageNet statistics.
pub const EMBEDDED_PREPROCESS: Preprocess = Preprocess {
    image_size: 64,
    crop_pct: 1.0,
    channels: 3,
    norm: Normalization::IMAGENET,
};

/// The embedded detection set for `seed`.
pub fn embedded_dataset(seed: u64) -> DetectionDataset {
    SyntheticScenes::generate(&SyntheticScenesConfig {
        seed,
        ..Default::default()
    })
}

/// The trained embedded detector from `cache`, training it from scratch and saving it there
/// first when absent. Returns it on `device` with fresh adapters.
///
/// # Errors
/// Training or file errors, or a cached detector of other classes.
pub fn load_or_pretrain(
    cache: &DetectorDir,
    dataset: &DetectionDataset,
    train_config: &PretrainConfig,
    lora: &LoraConfig,
    device: &Device,
) -> Result<DeformableDetr> {
    if !cache.exists() {
        eprintln!(
            "training the embedded detector (cached in {})",
            cache.path().display()
        );
        let config = embedded_config(dataset.num_classes());
        let model = DeformableDetr::init(&config, lora, train_config.seed, device)?;
        let (model, ap) = pretrain(model, dataset, train_config, &EMBEDDED_PREPROCESS, device)?;
        if let Some(ap) = ap {
            eprintln!("trained: validation AP {:.1}, AP50 {:.1}", ap.ap, ap.ap50);
        }
        let info = DetectorInfo {
            config,
            class_names: dataset.class_names.clone(),
            preprocess: EMBEDDED_PREPROCESS,
            forgotten: Vec::new(),
        };
        cache.save(&model, &info)?;
    }
    let info = cache.info()?;
    if info.class_names != dataset.class_names {
        return Err(TrainError::Data(format!(
            "{} holds a detector of classes {:?}, not the dataset's {:?}",
            cache.path().display(),
            info.class_names,
            dataset.class_names
        )));
    }
    cache.load(lora, train_config.seed, device)
}
