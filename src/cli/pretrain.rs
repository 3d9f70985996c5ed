//! `gs-lora pretrain`: a classifier for a dataset, saved as a model directory.

use gs_lora_core::LoraConfig;
use gs_lora_train::batch::{Normalization, Preprocess};
use gs_lora_train::pretrain::{PretrainConfig, pretrain_from_scratch};
use gs_lora_train::probe::{ProbeConfig, checkpoint_preprocess, linear_probe, load_backbone};
use gs_lora_train::{ModelDir, ModelInfo};

use super::{CliError, Flags, load_options, open_dataset};
use crate::backend;

const USAGE: &str = "\
usage: gs-lora pretrain --data D --out DIR [--weights W.safetensors [--config C.json]]
                        [--image-size S] [--crop-pct P] [--epochs E] [--batch-size B] [--lr LR]
                        [--val-fraction F] [--max-classes N] [--train-per-class N]
                        [--eval-per-class N] [--backend flex|ndarray|wgpu|cuda] [--seed N]

Without --weights, trains the embedded default's small ViT (patch 8; --image-size a multiple of
8, default 32) from scratch on D: 40 epochs, batch 64, lr 2e-3, flips and shifts.
With --weights (timm ViT, Hugging Face ViT or DINOv2; --config defaults to config.json beside
the weights), attaches a head of D's classes and trains it on the frozen backbone's cached
embeddings (linear probe: 100 epochs, batch 256, lr 1e-3); --image-size defaults to the
config's and must be a multiple of its patch size.
Writes DIR/config.json, DIR/model.safetensors and DIR/gs_lora.json (class names, preprocessing).";

pub(super) fn run(args: &[String]) -> Result<(), CliError> {
    let Some(mut flags) = Flags::parse(args, &[], USAGE)? else {
        return Ok(());
    };
    let data = flags.required_path("data")?;
    let out = ModelDir::new(flags.required_path("out")?);
    let weights = flags.path("weights");
    let config = flags.path("config");
    let image_size = flags.optional("image-size")?;
    let crop_pct = flags.number("crop-pct", 1.0)?;
    let epochs = flags.optional("epochs")?;
    let batch_size = flags.optional("batch-size")?;
    let lr = flags.optional("lr")?;
    let seed = flags.number("seed", 0u64)?;
    let device = backend::device(flags.take("backend").as_deref())?.autodiff();
    let preprocess = match (&weights, &config) {
        (Some(weights), config) => {
            let config = config
                .clone()
                .unwrap_or_else(|| weights.with_file_name("config.json"));
            checkpoint_preprocess(&config, image_size, crop_pct)?
        }
        (None, Some(_)) => {
            return Err(CliError::Usage(format!(
                "--config needs --weights\n\n{USAGE}"
            )));
        }
        (None, None) => Preprocess {
            crop_pct,
            ..Preprocess::new(image_size.unwrap_or(32), 3, Normalization::HALF)
        },
    };
    preprocess.validate()?;
    let options = load_options(&mut flags, Some(preprocess.resize_side()), seed)?;
    flags.finish()?;

    let dataset = open_dataset(&data, &options)?;
    let lora = LoraConfig::new();
    let (model, accuracy) = match weights {
        Some(weights) => {
            let config = config.unwrap_or_else(|| weights.with_file_name("config.json"));
            let backbone = load_backbone(&config, &weights, &preprocess, &lora, seed, &device)?;
            let defaults = ProbeConfig::default();
            let probe = ProbeConfig {
                epochs: epochs.unwrap_or(defaults.epochs),
                batch_size: batch_size.unwrap_or(defaults.batch_size),
                lr: lr.unwrap_or(defaults.lr),
                seed,
                ..defaults
            };
            linear_probe(backbone, &dataset, &preprocess, &probe, &device)?
        }
        None => {
            let defaults = PretrainConfig::default();
            let pretrain = PretrainConfig {
                epochs: epochs.unwrap_or(defaults.epochs),
                batch_size: batch_size.unwrap_or(defaults.batch_size),
                lr: lr.unwrap_or(defaults.lr),
                seed,
                ..defaults
            };
            pretrain_from_scratch(&dataset, &preprocess, &pretrain, &lora, &device)?
        }
    };
    let info = ModelInfo {
        class_names: dataset.class_names.clone(),
        preprocess,
        forgotten: Vec::new(),
    };
    out.save(&model, &info)?;
    println!(
        "validation accuracy {accuracy:.2}%; model saved in {}",
        out.path().display()
    );
    Ok(())
}
