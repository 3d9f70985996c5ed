//! `gs-lora pretrain`: a classifier for a dataset, saved as a model directory.

use std::path::{Path, PathBuf};

use gs_lora_core::LoraConfig;
use gs_lora_models::weights::CheckpointFiles;
use gs_lora_train::classification::data::LoadOptions;
use gs_lora_train::classification::{ClassifierDir, ClassifierInfo};
use gs_lora_train::classification::{PretrainConfig, pretrain_from_scratch};
use gs_lora_train::classification::{
    ProbeConfig, checkpoint_preprocess, keep_pretrained_head, linear_probe, load_backbone,
    val_accuracy,
};
use gs_lora_train::image::{Normalization, Preprocess};
use gs_lora_train::io::ensure_disjoint;

use super::{CliError, Flags, compute_device, is_embedded, load_options, open_dataset};

/// The usage text, with the defaults of [`PretrainConfig`] and [`ProbeConfig`] (written there
/// only).
fn usage() -> String {
    let (scratch, probe) = (PretrainConfig::default(), ProbeConfig::default());
    format!(
        "\
usage: gs-lora pretrain --data D --out DIR [--weights W [--config C.json]
                        [--keep-head on | --head-classes NAMES.txt]]
                        [--image-size S] [--crop-pct P] [--epochs E] [--batch-size B] [--lr LR]
                        [--val-fraction F] [--max-classes N] [--train-per-class N]
                        [--eval-per-class N] [--split-seed 0] [--backend flex|ndarray|wgpu|cuda]
                        [--fused on|off] [--seed N]

Without --weights, trains the embedded default's small ViT (patch 8; --image-size a multiple of
8, default 32) from scratch on D: {} epochs, batch {}, lr {:e}, flips and shifts.
With --weights (timm ViT, Hugging Face ViT or DINOv2: a .safetensors, .pth or shard index
file, a model folder, or a Hugging Face repo id such as facebook/dinov2-small[@revision] read
from the local cache, never downloaded; --config defaults to the config.json found with the
weights), attaches a head of D's classes and trains it on the frozen backbone's cached
embeddings (linear probe: {} epochs, batch {}, lr {:e}); --image-size defaults to the
config's and must be a multiple of its patch size. --keep-head on keeps the checkpoint's own
head instead (the official protocol: the face CosFace head; it must have D's classes, in D's
order), --head-classes NAMES.txt cuts it to D's classes by name (one head class per line, in
head order: the official ImageNet-1k -> 100 cut with imagenet_folder_names.txt). --crop-pct to the format's (face ViT 1 with
raw [0, 1] pixels; Hugging Face from preprocessor_config.json; timm from pretrained_cfg; else
0.875 with ImageNet statistics) and, without --weights, to 1.
--split-seed chooses which training images become validation images when D has no validation
split (and which the per-class caps keep); --seed seeds training only. Writes DIR/config.json,
DIR/model.safetensors and DIR/gs_lora.json (class names, preprocessing, split seed: `eval` and
`forget` load D with it, so other training seeds never measure on images DIR trained on),
atomically; an existing DIR is replaced only if it is empty or a model directory, and DIR may not
be, contain or lie inside --data, --weights or --config.",
        scratch.epochs, scratch.batch_size, scratch.lr, probe.epochs, probe.batch_size, probe.lr,
    )
}

/// What `pretrain` makes: a head trained on a checkpoint's frozen backbone, the checkpoint's
/// own head kept (cut to the data's classes by a file of names when given), or the small ViT
/// trained from scratch.
enum Training {
    Probe {
        config: PathBuf,
        weights: PathBuf,
        probe: ProbeConfig,
    },
    KeepHead {
        config: PathBuf,
        weights: PathBuf,
        names: Option<PathBuf>,
    },
    FromScratch(PretrainConfig),
}

impl Training {
    /// The checkpoint's config, when it starts from one.
    fn checkpoint(&self) -> Option<(&PathBuf, &PathBuf)> {
        match self {
            Training::Probe {
                config, weights, ..
            }
            | Training::KeepHead {
                config, weights, ..
            } => Some((config, weights)),
            Training::FromScratch(_) => None,
        }
    }
}

pub(super) fn run(args: &[String]) -> Result<(), CliError> {
    let Some(mut flags) = Flags::parse(args, &[], usage())? else {
        return Ok(());
    };
    let data = flags.required_path("data")?;
    let out = ClassifierDir::new(flags.required_path("out")?);
    let config = flags.path("config");
    let weights = match flags.path("weights") {
        Some(weights) => Some(CheckpointFiles::locate(&weights, config.clone())?),
        None => None,
    };
    let image_size = flags.optional("image-size")?;
    let crop_pct: Option<f64> = flags.optional("crop-pct")?;
    let epochs = flags.optional("epochs")?;
    let batch_size = flags.optional("batch-size")?;
    let lr = flags.optional("lr")?;
    let seed = flags.number("seed", 0u64)?;
    let names = flags.path("head-classes");
    let keep_head = flags.on_off("keep-head", false)? || names.is_some();
    let device = compute_device(&mut flags)?.autodiff();
    // Every setting is checked before the data is read and anything is trained.
    let training = match (weights, config) {
        (Some(files), _) if keep_head => Training::KeepHead {
            config: files.config,
            weights: files.weights,
            names,
        },
        (Some(files), _) => {
            let defaults = ProbeConfig::default();
            let probe = ProbeConfig {
                epochs: epochs.unwrap_or(defaults.epochs),
                batch_size: batch_size.unwrap_or(defaults.batch_size),
                lr: lr.unwrap_or(defaults.lr),
                seed,
                ..defaults
            };
            probe.validate()?;
            Training::Probe {
                config: files.config,
                weights: files.weights,
                probe,
            }
        }
        (None, Some(_)) => {
            return Err(CliError::Usage(format!(
                "--config needs --weights\n\n{}",
                usage()
            )));
        }
        (None, None) if keep_head => {
            return Err(CliError::Usage(format!(
                "--keep-head and --head-classes need --weights\n\n{}",
                usage()
            )));
        }
        (None, None) => {
            let defaults = PretrainConfig::default();
            let pretrain = PretrainConfig {
                epochs: epochs.unwrap_or(defaults.epochs),
                batch_size: batch_size.unwrap_or(defaults.batch_size),
                lr: lr.unwrap_or(defaults.lr),
                seed,
                ..defaults
            };
            pretrain.validate()?;
            Training::FromScratch(pretrain)
        }
    };
    let mut inputs: Vec<(&str, &Path)> = Vec::new();
    if !is_embedded(&data) {
        inputs.push(("--data", data.as_path()));
    }
    if let Some((config, weights)) = training.checkpoint() {
        inputs.extend([
            ("--config", config.as_path()),
            ("--weights", weights.as_path()),
        ]);
    }
    if let Training::KeepHead {
        names: Some(names), ..
    } = &training
    {
        inputs.push(("--head-classes", names.as_path()));
    }
    ensure_disjoint(&[("--out", out.path())], &inputs)?;
    out.ensure_writable()?;
    let preprocess = match training.checkpoint() {
        Some((config, _)) => checkpoint_preprocess(config, image_size, crop_pct)?,
        None => Preprocess {
            crop_pct: crop_pct.unwrap_or(1.0),
            ..Preprocess::new(image_size.unwrap_or(32), 3, Normalization::HALF)
        },
    };
    preprocess.validate()?;
    let options = load_options(
        &mut flags,
        LoadOptions {
            max_side: Some(preprocess.resize_side()),
            ..LoadOptions::default()
        },
    )?;
    flags.finish()?;

    let dataset = open_dataset(&data, &options)?;
    let lora = LoraConfig::new();
    let (model, accuracy) = match training {
        Training::Probe {
            config,
            weights,
            probe,
        } => {
            let backbone = load_backbone(&config, &weights, &preprocess, &lora, seed, &device)?;
            linear_probe(backbone, &dataset, &preprocess, &probe, &device)?
        }
        Training::KeepHead {
            config,
            weights,
            names,
        } => {
            let model = load_backbone(&config, &weights, &preprocess, &lora, seed, &device)?;
            let model = keep_pretrained_head(model, names.as_deref(), &dataset.class_names)?;
            let accuracy = val_accuracy(&model, &dataset, &preprocess, 64, &device)?;
            (model, accuracy)
        }
        Training::FromScratch(pretrain) => {
            pretrain_from_scratch(&dataset, &preprocess, &pretrain, &lora, &device)?
        }
    };
    let info = ClassifierInfo {
        class_names: dataset.class_names.clone(),
        preprocess,
        forgotten: Vec::new(),
        split_seed: dataset.split_seed,
    };
    out.save(&model, &info)?;
    println!(
        "validation accuracy {accuracy:.2}%; model saved in {}",
        out.path().display()
    );
    Ok(())
}
