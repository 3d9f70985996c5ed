//! `gs-lora pretrain`: a classifier for a dataset, saved as a model directory.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};

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

use super::args::on_off;
use super::run_file::read_settings;
use super::{CliError, DataArgs, DeviceArgs, is_embedded, open_dataset, overlay};

/// The flags of `gs-lora pretrain` (its help is on [`Command`](super::Command)).
#[derive(Debug, Args)]
#[command(after_long_help = after_help())]
pub struct PretrainCommand {
    /// The dataset.
    #[arg(long, value_name = "D")]
    data: PathBuf,
    /// The model directory written.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A pretrained checkpoint (timm ViT, Hugging Face ViT or DINOv2): a .safetensors, .pth or
    /// shard index file, a model folder, or a Hugging Face repo id such as
    /// facebook/dinov2-small[@revision] read from the local cache, never downloaded.
    #[arg(long, value_name = "W")]
    weights: Option<PathBuf>,
    /// The checkpoint's config.json (default: the one found with the weights).
    #[arg(long, value_name = "CONFIG.json", requires = "weights")]
    model_config: Option<PathBuf>,
    /// Cuts the checkpoint's own head to D's classes by name (one head class per line, in
    /// head order: the official ImageNet-1k -> 100 cut with imagenet_folder_names.txt);
    /// implies --keep-head on.
    #[arg(long, value_name = "NAMES.txt", requires = "weights")]
    head_classes: Option<PathBuf>,
    /// The settings of an earlier pretraining (the pretrain.json it wrote) replace the
    /// defaults; the other flags override them.
    #[arg(long, value_name = "PRETRAIN.json")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: PretrainSettings,
    #[command(flatten)]
    device: DeviceArgs,
}

/// The settings of a pretraining, as flags and as `pretrain.json` (the values used, written
/// with the model).
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainSettings {
    /// Keeps the checkpoint's own head instead of training one (the official protocol: the
    /// face CosFace head; it must have D's classes, in D's order).
    #[arg(long, value_name = "on|off", value_parser = on_off())]
    keep_head: Option<bool>,
    /// Side of the square model input.
    #[arg(long, value_name = "S")]
    image_size: Option<usize>,
    /// Share of the resized image the centre crop keeps (default: the format's: face ViT 1
    /// with raw [0, 1] pixels; Hugging Face from preprocessor_config.json; timm from
    /// pretrained_cfg; else 0.875 with ImageNet statistics; 1 without --weights).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    crop_pct: Option<f64>,
    /// Training epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate.
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Seed of training only (--split-seed chooses the validation images).
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    #[serde(default)]
    data: DataArgs,
}

/// The defaults under `gs-lora pretrain --help`, from [`PretrainConfig`] and [`ProbeConfig`]
/// (written there only).
fn after_help() -> String {
    let (scratch, probe) = (PretrainConfig::default(), ProbeConfig::default());
    format!(
        "Defaults: from scratch {} epochs, batch {}, lr {:e}; linear probe {} epochs, batch {}, \
         lr {:e}; --seed 0 --split-seed 0",
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

    /// The training hyper-parameters, as settings (none when the checkpoint's head is kept).
    fn settings(&self) -> PretrainSettings {
        let (epochs, batch_size, lr) = match self {
            Training::Probe { probe, .. } => (probe.epochs, probe.batch_size, probe.lr),
            Training::FromScratch(pretrain) => (pretrain.epochs, pretrain.batch_size, pretrain.lr),
            Training::KeepHead { .. } => return PretrainSettings::default(),
        };
        PretrainSettings {
            epochs: Some(epochs),
            batch_size: Some(batch_size),
            lr: Some(lr),
            ..PretrainSettings::default()
        }
    }
}

impl PretrainCommand {
    pub(super) fn run(self) -> Result<(), CliError> {
        let settings = match &self.config {
            Some(path) => overlay(&read_settings(path)?, &self.settings)?,
            None => self.settings.clone(),
        };
        let out = ClassifierDir::new(&self.out);
        let weights = match &self.weights {
            Some(weights) => Some(CheckpointFiles::locate(weights, self.model_config.clone())?),
            None => None,
        };
        let seed = settings.seed.unwrap_or(0);
        let keep_head = settings.keep_head.unwrap_or(false) || self.head_classes.is_some();
        let devices = self.device.data_parallel()?;
        let device = devices.primary().clone();
        // Every setting is checked before the data is read and anything is trained.
        let training = match weights {
            Some(files) if keep_head => Training::KeepHead {
                config: files.config,
                weights: files.weights,
                names: self.head_classes.clone(),
            },
            Some(files) => {
                let defaults = ProbeConfig::default();
                let probe = ProbeConfig {
                    epochs: settings.epochs.unwrap_or(defaults.epochs),
                    batch_size: settings.batch_size.unwrap_or(defaults.batch_size),
                    lr: settings.lr.unwrap_or(defaults.lr),
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
            None if keep_head => {
                return Err(CliError::Usage(
                    "--keep-head on needs --weights (the checkpoint whose head is kept)".into(),
                ));
            }
            None => {
                let defaults = PretrainConfig::default();
                let pretrain = PretrainConfig {
                    epochs: settings.epochs.unwrap_or(defaults.epochs),
                    batch_size: settings.batch_size.unwrap_or(defaults.batch_size),
                    lr: settings.lr.unwrap_or(defaults.lr),
                    seed,
                    ..defaults
                };
                pretrain.validate()?;
                Training::FromScratch(pretrain)
            }
        };
        if devices.devices().len() > 1 && training.checkpoint().is_some() {
            return Err(CliError::Usage(
                "--devices splits the batches of training from scratch; a linear probe or a \
                 kept head (--weights) runs on one device"
                    .into(),
            ));
        }
        let mut inputs: Vec<(&str, &Path)> = Vec::new();
        if !is_embedded(&self.data) {
            inputs.push(("--data", self.data.as_path()));
        }
        if let Some((config, weights)) = training.checkpoint() {
            inputs.extend([
                ("--model-config", config.as_path()),
                ("--weights", weights.as_path()),
            ]);
        }
        if let Some(names) = &self.head_classes {
            inputs.push(("--head-classes", names.as_path()));
        }
        ensure_disjoint(&[("--out", out.path())], &inputs)?;
        out.ensure_writable()?;
        let preprocess = match training.checkpoint() {
            Some((config, _)) => {
                checkpoint_preprocess(config, settings.image_size, settings.crop_pct)?
            }
            None => Preprocess {
                crop_pct: settings.crop_pct.unwrap_or(1.0),
                ..Preprocess::new(settings.image_size.unwrap_or(32), 3, Normalization::HALF)
            },
        };
        preprocess.validate()?;
        let options = settings.data.options(LoadOptions {
            max_side: Some(preprocess.resize_side()),
            ..LoadOptions::default()
        });

        let dataset = open_dataset(&self.data, &options)?;
        let used = PretrainSettings {
            keep_head: Some(keep_head),
            image_size: Some(preprocess.image_size),
            crop_pct: Some(preprocess.crop_pct),
            seed: Some(seed),
            data: DataArgs {
                val_fraction: Some(options.val_fraction),
                max_classes: options.max_classes,
                train_per_class: options.train_per_class,
                eval_per_class: options.eval_per_class,
                split_seed: Some(options.seed),
            },
            ..training.settings()
        };
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
                pretrain_from_scratch(&dataset, &preprocess, &pretrain, &lora, &devices)?
            }
        };
        let info = ClassifierInfo {
            class_names: dataset.class_names.clone(),
            preprocess,
            forgotten: Vec::new(),
            split_seed: dataset.split_seed,
            val_fraction: Some(dataset.val_fraction),
        };
        out.save_with_settings(&model, &info, &used)?;
        println!(
            "validation accuracy {accuracy:.2}%; model saved in {}",
            out.path().display()
        );
        Ok(())
    }
}
