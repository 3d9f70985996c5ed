//! The groups of flags several commands and the examples share: the device, data loading and
//! the forgetting hyper-parameters (DESIGN.md §2). Every setting is an `Option`: absent, it
//! keeps the value of the layer below (a run file, an official protocol, the defaults).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use gs_lora_core::loss::PrototypeLossConfig;
use gs_lora_core::{DataParallel, fused};
use gs_lora_core::{GroupLassoConfig, LoraConfig};
use gs_lora_train::classification::data::{Dataset, LoadOptions};
use gs_lora_train::classification::{ClassifierInfo, embedded_dataset};
use gs_lora_train::protocol::{ClassOrder, PRESETS, Preset};
use gs_lora_train::{
    BaselineConfig, EvalSplit, ForgetConfig, ForgetLabels, ForgetLoss, MethodKind, Replay,
    TrainError,
};
use serde::{Deserialize, Serialize};

use super::CliError;
use crate::backend;

/// The parser of an `on|off` flag.
pub(crate) fn on_off() -> impl TypedValueParser<Value = bool> {
    PossibleValuesParser::new(["on", "off"]).map(|value| value == "on")
}

/// The compute device: `--backend`, `--devices` and `--fused`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Device")]
pub struct DeviceArgs {
    /// Backend: flex (the pure-Rust CPU default), ndarray, wgpu or cuda (when compiled in).
    #[arg(long, env = "BURN_DEVICE", value_name = "NAME")]
    pub backend: Option<String>,
    /// Split every training batch across these devices: NAME[:INDEX] of one backend, comma
    /// separated (wgpu:0,wgpu:1 or cuda:0,cuda:1; flex,flex splits on the one CPU). The model,
    /// the loss and the optimiser live on the first; the result is the one-device result to
    /// rounding (docs/scaling.md). Training commands only.
    #[arg(long, value_name = "LIST")]
    pub devices: Option<String>,
    /// The fused CPU ops (on by default); off runs Burn's own ops: the same results to
    /// rounding in another floating-point order, which is how a training result is checked
    /// against the order of another CPU.
    #[arg(long, env = "GS_LORA_FUSED", value_name = "on|off", value_parser = on_off())]
    pub fused: Option<bool>,
}

impl DeviceArgs {
    /// The device of `--backend` (Flex by default) or the one device of `--devices`, with the
    /// fused CPU ops switched for the whole process as `--fused` says.
    ///
    /// # Errors
    /// An unknown or not compiled backend, or several devices (this command does not split
    /// batches).
    pub fn device(&self) -> Result<Device, CliError> {
        let mut devices = self.devices()?;
        if devices.len() > 1 {
            return Err(CliError::Usage(format!(
                "--devices {} names {} devices, but this command runs on one; batches are split \
                 by forget, compare, pretrain (from scratch) and forget_cub",
                self.devices.as_deref().unwrap_or_default(),
                devices.len()
            )));
        }
        Ok(devices.remove(0))
    }

    /// The autodiff devices every training batch is split across: those of `--devices`, else
    /// the one of `--backend`; the fused CPU ops switched as `--fused` says.
    ///
    /// # Errors
    /// An unknown or not compiled backend, a malformed list, or `--backend` naming another
    /// backend than `--devices`.
    pub fn data_parallel(&self) -> Result<DataParallel, CliError> {
        let devices = self.devices()?.into_iter().map(Device::autodiff).collect();
        Ok(DataParallel::new(devices).map_err(TrainError::from)?)
    }

    /// These flags as given, for a command line that runs on the same devices.
    pub fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(backend) = &self.backend {
            flags.extend(["--backend".to_string(), backend.clone()]);
        }
        if let Some(devices) = &self.devices {
            flags.extend(["--devices".to_string(), devices.clone()]);
        }
        if let Some(fused) = self.fused {
            let value = if fused { "on" } else { "off" };
            flags.extend(["--fused".to_string(), value.to_string()]);
        }
        flags
    }

    /// The devices of `--devices`, else the one of `--backend`.
    fn devices(&self) -> Result<Vec<Device>, CliError> {
        fused::set_enabled(self.fused.unwrap_or(true));
        let Some(list) = &self.devices else {
            return Ok(vec![backend::device(self.backend.as_deref())?]);
        };
        let devices = backend::devices(list)?;
        if let Some(name) = &self.backend {
            let named = backend::Backend::select(Some(name))?;
            let listed = backend::Backend::select(list.split([',', ':']).next())?;
            if named != listed {
                return Err(CliError::Usage(format!(
                    "--backend (or BURN_DEVICE) is {named} but --devices lists {listed} devices; \
                     give one of the two"
                )));
            }
        }
        Ok(devices)
    }
}

/// Which images of a dataset are loaded ([`LoadOptions`]; the image size comes from the model).
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Data")]
pub struct DataArgs {
    /// Share of each class's training images set aside for validation when the dataset has
    /// no validation split.
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub val_fraction: Option<f64>,
    /// Only the first N classes (in sorted folder order).
    #[arg(long, value_name = "N")]
    pub max_classes: Option<usize>,
    /// At most N training images of each class.
    #[arg(long, value_name = "N")]
    pub train_per_class: Option<usize>,
    /// At most N validation and N test images of each class.
    #[arg(long, value_name = "N")]
    pub eval_per_class: Option<usize>,
    /// Which training images become validation images (and which the per-class caps keep);
    /// defaults to the model's split, or 0 before there is a model. Never the run's --seed: a
    /// run with another seed must not measure on images the model trained on.
    #[arg(long, value_name = "S")]
    pub split_seed: Option<u64>,
}

impl DataArgs {
    /// These flags as given, for a command line that loads the same images.
    pub fn flags(&self) -> Vec<String> {
        let flag = |name: &str, value: Option<String>| {
            value
                .map(|value| [format!("--{name}"), value])
                .into_iter()
                .flatten()
        };
        flag("val-fraction", self.val_fraction.map(|v| v.to_string()))
            .chain(flag("max-classes", self.max_classes.map(|v| v.to_string())))
            .chain(flag(
                "train-per-class",
                self.train_per_class.map(|v| v.to_string()),
            ))
            .chain(flag(
                "eval-per-class",
                self.eval_per_class.map(|v| v.to_string()),
            ))
            .chain(flag("split-seed", self.split_seed.map(|v| v.to_string())))
            .collect()
    }

    /// These flags on top of `defaults`.
    pub fn options(&self, defaults: LoadOptions) -> LoadOptions {
        LoadOptions {
            val_fraction: self.val_fraction.unwrap_or(defaults.val_fraction),
            max_classes: self.max_classes.or(defaults.max_classes),
            train_per_class: self.train_per_class.or(defaults.train_per_class),
            eval_per_class: self.eval_per_class.or(defaults.eval_per_class),
            seed: self.split_seed.unwrap_or(defaults.seed),
            ..defaults
        }
    }
}

/// The data defaults of a run on the model `info` records: its image side, its split seed and
/// its validation share.
pub fn model_load_options(info: &ClassifierInfo) -> LoadOptions {
    let defaults = LoadOptions::default();
    LoadOptions {
        max_side: Some(info.preprocess.resize_side()),
        seed: info.split_seed,
        val_fraction: info.val_fraction.unwrap_or(defaults.val_fraction),
        ..defaults
    }
}

/// The data defaults of a forgetting run on a model loaded with `model` (a recorded model's:
/// [`model_load_options`]), except that no validation split is carved out of the training
/// images when the run measures on the test split (it would only shrink the pool the subsets
/// are drawn from).
pub fn forget_load_options(config: &ForgetConfig, model: LoadOptions) -> LoadOptions {
    LoadOptions {
        val_fraction: match config.eval_split {
            EvalSplit::Test => 0.0,
            EvalSplit::Validation => model.val_fraction,
        },
        ..model
    }
}

/// Whether `--data` names the generated default rather than a path.
pub fn is_embedded(data: &Path) -> bool {
    data == Path::new("embedded")
}

/// The dataset at `path` (`embedded` for the generated default), with its size printed.
///
/// # Errors
/// The loader's error, or subset flags given with the embedded data (whose splits are fixed).
pub fn open_dataset(path: &Path, options: &LoadOptions) -> Result<Dataset, CliError> {
    let dataset = if is_embedded(path) {
        let fixed = LoadOptions {
            max_side: options.max_side,
            seed: options.seed,
            ..LoadOptions::default()
        };
        if *options != fixed {
            return Err(CliError::Usage(
                "--data embedded has fixed splits and classes: --val-fraction, --max-classes, \
                 --train-per-class and --eval-per-class do not apply to it"
                    .into(),
            ));
        }
        embedded_dataset(options.seed)
    } else {
        Dataset::open(path, options)?
    };
    eprintln!(
        "{}: {} classes, {} train / {} val / {} test images",
        path.display(),
        dataset.num_classes(),
        dataset.train.len(),
        dataset.val.len(),
        dataset.test.len()
    );
    Ok(dataset)
}

/// The forgetting bound: `auto` (ln C + 1 per sample, or the reference's 105 on the batch mean)
/// or a number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BoundArg {
    /// Chosen from the head's number of classes.
    Auto,
    /// This bound.
    Value(f64),
}

impl std::str::FromStr for BoundArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        keyword_or_number(text, ("auto", Self::Auto), Self::Value)
    }
}

/// `keyword`'s value if `text` is it, else `text` as a number through `value`.
fn keyword_or_number<T>(
    text: &str,
    (keyword, at_keyword): (&str, T),
    value: fn(f64) -> T,
) -> Result<T, String> {
    if text == keyword {
        return Ok(at_keyword);
    }
    text.parse()
        .map(value)
        .map_err(|_| format!("expected {keyword} or a number, found `{text}`"))
}

/// `--forget-loss`: a form, or the method's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ForgetLossArg {
    /// The method's form ([`ForgetConfig::forget_form`]).
    Auto,
    /// This form.
    Form(ForgetLoss),
}

impl std::str::FromStr for ForgetLossArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            form => form.parse().map(Self::Form).map_err(|_| {
                format!("expected auto, cross-entropy, unlikelihood or log-odds, found `{text}`")
            }),
        }
    }
}

/// `--forget-fraction`: a share of every forget class's training images, or the replay rule's
/// draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ForgetFractionArg {
    /// The forget classes drawn by the replay rule, as the official code.
    Replay,
    /// This share of each forget class.
    Value(f64),
}

impl std::str::FromStr for ForgetFractionArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        keyword_or_number(text, ("replay", Self::Replay), Self::Value)
    }
}

/// Every forgetting hyper-parameter as a flag (the fields of [`ForgetConfig`]), over the
/// settings of a run file (`--config`), an official experiment (`--protocol`) or the
/// command's defaults.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Forgetting")]
pub struct ForgetArgs {
    /// The settings of an earlier run (the config.json it wrote) replace the defaults; the
    /// other flags override them.
    #[arg(long, value_name = "RUN.json", conflicts_with = "protocol")]
    pub config: Option<PathBuf>,
    /// Every value of an official experiment (PROTOCOL.md §1), which the other flags then
    /// override.
    #[arg(long, value_name = "NAME", value_parser = PossibleValuesParser::new(PRESETS.iter().map(|(name, _)| *name)))]
    pub protocol: Option<String>,
    /// Seed of the class order, the subsets, the adapters' initialisation and the batches.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of forgetting tasks.
    #[arg(long)]
    pub tasks: Option<usize>,
    /// Classes erased by each task.
    #[arg(long)]
    pub forget_per_task: Option<usize>,
    /// Never trains on the first O classes of the order and reports their accuracy (acc_m)
    /// and that of the remaining and missing classes together (acc_rm); official open
    /// setting: 5.
    #[arg(long, value_name = "O")]
    pub missing_classes: Option<usize>,
    /// The class order: a shuffle seeded by --seed (`seeded`), or the official code's
    /// (`python:1337` for its face and ImageNet runs, `numpy:123` for COCO).
    #[arg(long, value_name = "seeded|python:SEED|numpy:SEED")]
    pub class_order: Option<ClassOrder>,
    /// Where accuracy is measured: the test split, as the official code, or the validation
    /// split for a dataset without one.
    #[arg(long, value_name = "test|validation")]
    pub eval_split: Option<EvalSplit>,
    /// Scores a CosFace head with its training margin on the true class, as the official
    /// code does (it reads the test labels: only to reproduce the official face numbers).
    #[arg(long, value_name = "on|off", value_parser = on_off())]
    pub eval_margin: Option<bool>,
    /// gs-lora, gs-lora++ (prototype losses for the few-shot case), or a baseline
    /// (docs/baselines.md): lora (no group lasso); fine-tune (GS-LoRA's losses), neg-grad+,
    /// random-labels, salun, retrain-ft (the remaining classes alone), l2, ewc, mas, lwf, der,
    /// der++, fdr, scrub and scrub-s train every parameter but the head; lirf its lower half;
    /// retrain every parameter of a model drawn afresh.
    #[arg(long, value_name = "METHOD")]
    pub method: Option<MethodKind>,
    /// Keeps K training images of every class.
    #[arg(long, value_name = "K", group = "replay")]
    pub few_shot: Option<usize>,
    /// Draws K × #classes images over each group (the official COCO draw).
    #[arg(long, value_name = "K", group = "replay")]
    pub group_few_shot: Option<usize>,
    /// Replays floor(F·n) images drawn over each whole group (the official draw, which can
    /// leave classes with few images out of the retention loss).
    #[arg(long, value_name = "F", group = "replay")]
    pub replay_fraction: Option<f64>,
    /// Replays ⌈F·n⌉ training images of every class, at least --min-replay.
    #[arg(long, value_name = "F", group = "replay")]
    pub replay_stratified: Option<f64>,
    /// The stratified draws (--replay-stratified, --forget-fraction) keep at least K training
    /// images of every class, or all it has (0: no floor; the official draws have none).
    #[arg(long, value_name = "K")]
    pub min_replay: Option<usize>,
    /// The forgetting loss trains on ⌈F·n⌉ training images of every forget class (1: all of
    /// them, the default), or on the replay rule's draw (`replay`: the official code's).
    /// --few-shot and --group-few-shot draw the forget classes as the others unless it is given.
    #[arg(long, value_name = "F|replay")]
    pub forget_fraction: Option<ForgetFractionArg>,
    /// Epochs per task.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Every task takes at least S optimizer steps: an epoch cycles the remaining-class batches
    /// up to ⌈S / epochs⌉ steps when one pass is shorter (0: one pass, as the official loop).
    #[arg(long, value_name = "S")]
    pub min_steps: Option<usize>,
    /// Images per batch, of the forget and of the remaining classes each.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// LoRA rank of the adapters.
    #[arg(long)]
    pub rank: Option<usize>,
    /// LoRA scale numerator (scale = lora_alpha / rank).
    #[arg(long, allow_negative_numbers = true)]
    pub lora_alpha: Option<f64>,
    /// Peak learning rate (AdamW, cosine per epoch).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Learning rate at the end of the cosine.
    #[arg(long, allow_negative_numbers = true)]
    pub min_lr: Option<f64>,
    /// AdamW weight decay.
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// Clips the gradients' global norm at N.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub clip_grad_norm: Option<f64>,
    /// The forgetting bound BND of relu(BND − CE): auto (ln C + 1 per sample; 105 on the batch
    /// mean) or a number.
    #[arg(long, value_name = "auto|B", allow_negative_numbers = true)]
    pub bnd: Option<BoundArg>,
    /// Bounds each forget image's cross-entropy (on) or the batch mean (off, the official).
    #[arg(long, value_name = "on|off", value_parser = on_off())]
    pub bnd_per_sample: Option<bool>,
    /// The forgetting loss, each stopping at p_y = e^−BND: cross-entropy (relu(BND − CE), the
    /// official), unlikelihood (−ln(1 − p_y) per image: its push grows with the model's
    /// confidence), log-odds (ln(p_y / (1 − p_y)) per image: the sum of the two, a push of
    /// the same size whatever the confidence), or auto (the method's: log-odds for gs-lora++
    /// with --few-shot and the per-sample bound, cross-entropy otherwise).
    #[arg(long, value_name = "auto|cross-entropy|unlikelihood|log-odds")]
    pub forget_loss: Option<ForgetLossArg>,
    /// Weight β of the forgetting loss, one per task (the last repeats).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "B0,B1,...",
        allow_negative_numbers = true
    )]
    pub beta: Option<Vec<f64>>,
    /// Group-lasso weight α.
    #[arg(long, allow_negative_numbers = true)]
    pub alpha: Option<f64>,
    /// Epochs with α = 0 at the start of each task (the paper's sparsity warm-up).
    #[arg(long)]
    pub alpha_warmup_epochs: Option<usize>,
    /// α after the warm-up (default: --alpha).
    #[arg(long, value_name = "A", allow_negative_numbers = true)]
    pub big_alpha: Option<f64>,
    /// The group soft-threshold after each step; off is the official code's behaviour (no
    /// block's adapters become exactly zero).
    #[arg(long, value_name = "on|off", value_parser = on_off())]
    pub proximal: Option<bool>,
    /// Bound of the prototype forgetting loss (GS-LoRA++).
    #[arg(long, allow_negative_numbers = true)]
    pub bnd_pro: Option<f64>,
    /// Weight of the prototype forgetting loss.
    #[arg(
        long,
        allow_negative_numbers = true,
        conflicts_with = "pro_forget_weights"
    )]
    pub pro_forget_weight: Option<f64>,
    /// Weight of the prototype forgetting loss, one per task.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "W0,W1,...",
        allow_negative_numbers = true
    )]
    pub pro_forget_weights: Option<Vec<f64>>,
    /// Weight w_r of the prototype retention loss (gs-lora++; 0, the official, or 10 with
    /// --few-shot and the per-sample bound).
    #[arg(long, allow_negative_numbers = true)]
    pub pro_retain_weight: Option<f64>,
    /// Every dropout rate of the model while training (default: the model's config: 0.1 for
    /// the official face ViT and Deformable DETR's residual branches).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub dropout: Option<f64>,
    /// DETR's detection augmentation (flips, resizes, crops).
    #[arg(long, value_name = "on|off", value_parser = on_off())]
    pub augment: Option<bool>,
    /// L2's weight λ of Σ (θ − θ*)².
    #[arg(long, value_name = "λ", allow_negative_numbers = true)]
    pub l2_lambda: Option<f64>,
    /// EWC's weight λ of Σ F·(θ − θ*)².
    #[arg(long, value_name = "λ", allow_negative_numbers = true)]
    pub ewc_lambda: Option<f64>,
    /// MAS's weight λ of Σ Ω·(θ − θ*)².
    #[arg(long, value_name = "λ", allow_negative_numbers = true)]
    pub mas_lambda: Option<f64>,
    /// LwF's weight of the cross-entropy on the remaining samples.
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    pub lwf_retain: Option<f64>,
    /// LwF's weight of the distillation.
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    pub lwf_distill: Option<f64>,
    /// LwF's distillation temperature.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub kd_temperature: Option<f64>,
    /// DER's weight λ of Σ ‖e_s − e_t‖².
    #[arg(long, value_name = "λ", allow_negative_numbers = true)]
    pub der_lambda: Option<f64>,
    /// DER++'s weight λ of Σ ‖e_s − e_t‖².
    #[arg(long, value_name = "λ", allow_negative_numbers = true)]
    pub der_plus_plus_lambda: Option<f64>,
    /// DER++'s weight λ⁺ of the cross-entropy on the remaining samples.
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    pub der_plus_plus_retain: Option<f64>,
    /// FDR's weight λ of mean ‖z_s − z_t‖₂.
    #[arg(long, value_name = "λ", allow_negative_numbers = true)]
    pub fdr_lambda: Option<f64>,
    /// SCRUB's weight γ of the cross-entropy in its min steps.
    #[arg(long, value_name = "γ", allow_negative_numbers = true)]
    pub scrub_gamma: Option<f64>,
    /// SCRUB-S's weight γ.
    #[arg(long, value_name = "γ", allow_negative_numbers = true)]
    pub scrub_s_gamma: Option<f64>,
    /// SCRUB-S's weight of Σ ‖θ − θ_swa‖.
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    pub scrub_s_smoothing: Option<f64>,
    /// The labels the relabelling baselines train forget samples towards: official
    /// ((y + U{1..100}) mod K_f), corrected (another forget class) or unused (a label no class
    /// of the schedule uses, the official detection rule).
    #[arg(long, value_name = "official|corrected|unused")]
    pub forget_labels: Option<ForgetLabels>,
    /// L2/EWC/MAS measure later tasks' importance on every remaining-class training sample,
    /// as the official code (on), or on the task's subset (off).
    #[arg(long, value_name = "on|off", value_parser = on_off())]
    pub importance_full_split: Option<bool>,
}

impl ForgetArgs {
    /// The run's settings: these flags over the run file `--config`, else over the official
    /// experiment `--protocol`, else over `defaults` (with `--few-shot K`, over
    /// [`ForgetConfig::few_shot`] of them).
    ///
    /// # Errors
    /// A run file that cannot be read or parsed.
    pub fn config(&self, defaults: ForgetConfig) -> Result<ForgetConfig, CliError> {
        let base = match (&self.config, &self.protocol) {
            (Some(path), _) => ForgetConfig::from_file(path)?,
            (None, Some(name)) => name.parse::<Preset>()?.config(),
            // The few-shot setting's own draw (k images of the forget classes too).
            (None, None) => match self.few_shot {
                Some(k) => defaults.few_shot(k),
                None => defaults,
            },
        };
        let replay = match (
            self.few_shot,
            self.group_few_shot,
            self.replay_fraction,
            self.replay_stratified,
        ) {
            (Some(k), ..) => Replay::FewShot(k),
            (_, Some(k), ..) => Replay::GroupFewShot(k),
            (_, _, Some(f), _) => Replay::Fraction(f),
            (.., Some(f)) => Replay::Stratified(f),
            _ => base.replay,
        };
        let forget_fraction = match self.forget_fraction {
            Some(ForgetFractionArg::Replay) => None,
            Some(ForgetFractionArg::Value(fraction)) => Some(fraction),
            // The few-shot setting has k images of the classes to erase too.
            None if self.few_shot.is_some() || self.group_few_shot.is_some() => None,
            None => base.forget_fraction,
        };
        let bnd = match self.bnd {
            None => base.bnd,
            Some(BoundArg::Auto) => None,
            Some(BoundArg::Value(bound)) => Some(bound),
        };
        let config = ForgetConfig {
            protocol: base.protocol,
            seed: self.seed.unwrap_or(base.seed),
            tasks: self.tasks.unwrap_or(base.tasks),
            forget_per_task: self.forget_per_task.unwrap_or(base.forget_per_task),
            missing_classes: self.missing_classes.unwrap_or(base.missing_classes),
            class_order: self.class_order.unwrap_or(base.class_order),
            eval_split: self.eval_split.unwrap_or(base.eval_split),
            eval_margin: self.eval_margin.unwrap_or(base.eval_margin),
            method: self.method.unwrap_or(base.method),
            replay,
            min_replay: self.min_replay.unwrap_or(base.min_replay),
            forget_fraction,
            epochs: self.epochs.unwrap_or(base.epochs),
            min_steps: self.min_steps.unwrap_or(base.min_steps),
            batch_size: self.batch_size.unwrap_or(base.batch_size),
            lr: self.lr.unwrap_or(base.lr),
            min_lr: self.min_lr.unwrap_or(base.min_lr),
            weight_decay: self.weight_decay.unwrap_or(base.weight_decay),
            clip_grad_norm: self.clip_grad_norm.or(base.clip_grad_norm),
            bnd,
            bnd_per_sample: self.bnd_per_sample.unwrap_or(base.bnd_per_sample),
            forget_loss: match self.forget_loss {
                None => base.forget_loss,
                Some(ForgetLossArg::Auto) => None,
                Some(ForgetLossArg::Form(form)) => Some(form),
            },
            beta: self.beta.clone().unwrap_or(base.beta),
            lora: LoraConfig {
                rank: self.rank.unwrap_or(base.lora.rank),
                lora_alpha: self.lora_alpha.unwrap_or(base.lora.lora_alpha),
                ..base.lora
            },
            group_lasso: GroupLassoConfig {
                weight: self.alpha.unwrap_or(base.group_lasso.weight),
                warmup_epochs: self
                    .alpha_warmup_epochs
                    .unwrap_or(base.group_lasso.warmup_epochs),
                warmup_weight: self.big_alpha.or(base.group_lasso.warmup_weight),
                proximal: self.proximal.unwrap_or(base.group_lasso.proximal),
            },
            prototype: base.prototype,
            prototype_forget_weights: self
                .pro_forget_weights
                .clone()
                .unwrap_or(base.prototype_forget_weights),
            dropout: self.dropout.or(base.dropout),
            augment: self.augment.unwrap_or(base.augment),
            baseline: BaselineConfig {
                l2: self.l2_lambda.unwrap_or(base.baseline.l2),
                ewc: self.ewc_lambda.unwrap_or(base.baseline.ewc),
                mas: self.mas_lambda.unwrap_or(base.baseline.mas),
                lwf_retain: self.lwf_retain.unwrap_or(base.baseline.lwf_retain),
                lwf_distill: self.lwf_distill.unwrap_or(base.baseline.lwf_distill),
                temperature: self.kd_temperature.unwrap_or(base.baseline.temperature),
                der: self.der_lambda.unwrap_or(base.baseline.der),
                der_plus_plus: self
                    .der_plus_plus_lambda
                    .unwrap_or(base.baseline.der_plus_plus),
                der_plus_plus_retain: self
                    .der_plus_plus_retain
                    .unwrap_or(base.baseline.der_plus_plus_retain),
                fdr: self.fdr_lambda.unwrap_or(base.baseline.fdr),
                scrub_gamma: self.scrub_gamma.unwrap_or(base.baseline.scrub_gamma),
                scrub_s_gamma: self.scrub_s_gamma.unwrap_or(base.baseline.scrub_s_gamma),
                scrub_s_smoothing: self
                    .scrub_s_smoothing
                    .unwrap_or(base.baseline.scrub_s_smoothing),
                forget_labels: self.forget_labels.unwrap_or(base.baseline.forget_labels),
                importance_full_split: self
                    .importance_full_split
                    .unwrap_or(base.baseline.importance_full_split),
                lr: base.baseline.lr,
            },
        };
        Ok(self.with_prototype_flags(config))
    }

    /// `config` with the prototype flags over its prototype loss, the method's own where it
    /// names none (resolved for the final method and replay).
    fn with_prototype_flags(&self, config: ForgetConfig) -> ForgetConfig {
        if (self.bnd_pro, self.pro_forget_weight, self.pro_retain_weight) == (None, None, None) {
            return config;
        }
        let own = config.prototype_loss();
        ForgetConfig {
            prototype: Some(PrototypeLossConfig {
                bound: self.bnd_pro.unwrap_or(own.bound),
                forget_weight: self.pro_forget_weight.unwrap_or(own.forget_weight),
                retain_weight: self.pro_retain_weight.unwrap_or(own.retain_weight),
            }),
            ..config
        }
    }
}

/// The values a run takes when no flag sets them, as a help paragraph (the defaults are
/// written in [`ForgetConfig`] or the example's settings only).
pub fn forget_defaults_help(defaults: &ForgetConfig) -> String {
    let replay = match defaults.replay {
        Replay::FewShot(k) => format!("--few-shot {k}"),
        Replay::GroupFewShot(k) => format!("--group-few-shot {k}"),
        Replay::Fraction(f) => format!("--replay-fraction {f}"),
        Replay::Stratified(f) => format!("--replay-stratified {f}"),
    };
    let list = |values: &[f64]| {
        let values: Vec<String> = values.iter().map(f64::to_string).collect();
        values.join(",")
    };
    let on_off = |on: bool| if on { "on" } else { "off" };
    let big_alpha = defaults
        .group_lasso
        .warmup_weight
        .map_or(String::new(), |weight| format!(" --big-alpha {weight}"));
    let d = defaults;
    let prototype = d.prototype_loss();
    format!(
        "Defaults: --seed {} --tasks {} --forget-per-task {} --missing-classes {} --method {} \
         {replay} --min-replay {} --forget-fraction {} --epochs {} --min-steps {} --batch-size {} --rank {} \
         --lora-alpha {} --lr {:e} --min-lr {:e} --weight-decay {} --bnd {} --bnd-per-sample {} --forget-loss {} --beta {} --alpha {:e} \
         --alpha-warmup-epochs {}{big_alpha} --proximal {} --bnd-pro {} --pro-forget-weight {} \
         --pro-retain-weight {}",
        d.seed,
        d.tasks,
        d.forget_per_task,
        d.missing_classes,
        d.method,
        d.min_replay,
        d.forget_fraction
            .map_or("replay".to_string(), |f| f.to_string()),
        d.epochs,
        d.min_steps,
        d.batch_size,
        d.lora.rank,
        d.lora.lora_alpha,
        d.lr,
        d.min_lr,
        d.weight_decay,
        d.bnd.map_or("auto".to_string(), |b| b.to_string()),
        on_off(d.bnd_per_sample),
        d.forget_loss.map_or("auto", ForgetLoss::name),
        list(&d.beta),
        d.group_lasso.weight,
        d.group_lasso.warmup_epochs,
        on_off(d.group_lasso.proximal),
        prototype.bound,
        prototype.forget_weight,
        prototype.retain_weight,
    )
}

/// The flag that sets the config field `name` (as [`TrainError::Setting`] names it): the field
/// with `-` for `_`, except where the flag keeps the reference code's name.
///
/// [`TrainError::Setting`]: gs_lora_train::TrainError::Setting
pub(crate) fn flag_for(name: &str) -> String {
    const RENAMED: [(&str, &str); 20] = [
        ("lora.rank", "rank"),
        ("lora.lora_alpha", "lora-alpha"),
        ("replay.fraction", "replay-fraction"),
        ("replay.few_shot", "few-shot"),
        ("group_lasso.weight", "alpha"),
        ("group_lasso.warmup_weight", "big-alpha"),
        ("prototype.bound", "bnd-pro"),
        ("prototype.forget_weight", "pro-forget-weight"),
        ("prototype.retain_weight", "pro-retain-weight"),
        ("prototype_forget_weights", "pro-forget-weights"),
        ("baseline.l2", "l2-lambda"),
        ("baseline.ewc", "ewc-lambda"),
        ("baseline.mas", "mas-lambda"),
        ("baseline.lwf_retain", "lwf-retain"),
        ("baseline.lwf_distill", "lwf-distill"),
        ("baseline.temperature", "kd-temperature"),
        ("baseline.der", "der-lambda"),
        ("baseline.der_plus_plus", "der-plus-plus-lambda"),
        ("baseline.der_plus_plus_retain", "der-plus-plus-retain"),
        ("baseline.fdr", "fdr-lambda"),
    ];
    let flag = RENAMED
        .iter()
        .find(|(field, _)| *field == name)
        .map_or_else(|| name.replace('_', "-"), |(_, flag)| (*flag).to_string());
    format!("--{flag}")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        forget: ForgetArgs,
    }

    fn config(args: &[&str]) -> Result<ForgetConfig, String> {
        let command = Command::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .map_err(|err| err.to_string())?;
        command
            .forget
            .config(ForgetConfig::default())
            .map_err(|err| err.to_string())
    }

    /// `--protocol` replaces the defaults with the official experiment's and is recorded; other
    /// flags still override it. Catches the preset ignored, a flag losing to it, and the record
    /// dropped from `config.json`.
    #[test]
    fn a_protocol_sets_the_defaults_and_flags_override_it() {
        let found =
            config(&["--protocol", "official-face-fewshot", "--epochs", "3"]).expect("config");
        let preset = Preset::OfficialFaceFewshot.config();
        assert_eq!(found.protocol, Some(Preset::OfficialFaceFewshot));
        assert_eq!(found.epochs, 3);
        assert_eq!(preset.min_steps, 0, "official: one pass per epoch");
        let floor =
            config(&["--protocol", "official-face-fewshot", "--min-steps=200"]).expect("config");
        assert_eq!(floor.min_steps, 200);
        assert_eq!(
            ForgetConfig {
                epochs: preset.epochs,
                ..found
            },
            preset
        );
        assert_eq!(config(&[]).expect("plain").protocol, None);
        let err = config(&["--protocol", "official-voc"]).expect_err("unknown");
        assert!(err.contains("invalid value 'official-voc'"), "{err}");
        assert!(
            err.contains("official-face-fewshot"),
            "lists the presets: {err}"
        );
    }

    /// The bound, replay and dropout flags reach the config, over the defaults (per-sample
    /// `ln C + 1`, stratified replay, the model's dropout) and over an official protocol's.
    /// Catches a flag read under another name or dropped, `auto` not read, and two replay
    /// flags accepted together.
    #[test]
    fn the_bound_replay_and_dropout_flags_reach_the_config() {
        let plain = config(&[]).expect("plain");
        assert_eq!(
            (plain.bnd, plain.bnd_per_sample, plain.replay, plain.dropout),
            (None, true, Replay::Stratified(0.1), None)
        );
        let set = config(&[
            "--bnd-per-sample",
            "off",
            "--bnd=5",
            "--dropout",
            "0.1",
            "--replay-fraction",
            "0.2",
            "--beta",
            "0.1,0.3",
        ])
        .expect("flags");
        assert!(!set.bnd_per_sample);
        assert_eq!(
            (set.bnd, set.dropout, set.replay, set.beta),
            (Some(5.0), Some(0.1), Replay::Fraction(0.2), vec![0.1, 0.3])
        );
        let official = config(&["--protocol", "official-face"]).expect("preset");
        assert_eq!(
            (official.bnd, official.bnd_per_sample),
            (Some(105.0), false)
        );
        let auto = config(&["--protocol", "official-face", "--bnd", "auto"]).expect("auto");
        assert_eq!(auto.bnd, None);
        let stratified = config(&["--replay-stratified", "0.3"]).expect("stratified");
        assert_eq!(
            (stratified.replay, stratified.min_replay),
            (Replay::Stratified(0.3), 4)
        );
        let floor = config(&["--min-replay", "0"]).expect("no floor");
        assert_eq!(floor.min_replay, 0);
        let group = config(&["--group-few-shot", "32"]).expect("group few-shot");
        assert_eq!(group.replay, Replay::GroupFewShot(32));
        assert_eq!(plain.forget_fraction, Some(1.0));
        let official_draw = config(&["--forget-fraction", "replay"]).expect("replay");
        assert_eq!(official_draw.forget_fraction, None);
        let half = config(&["--forget-fraction=0.5"]).expect("half");
        assert_eq!(half.forget_fraction, Some(0.5));
        for few_shot in [&["--few-shot", "4"][..], &["--group-few-shot", "4"]] {
            let few = config(few_shot).expect("few-shot");
            assert_eq!(
                few.forget_fraction, None,
                "{few_shot:?}: k forget images too"
            );
        }
        let whole = config(&["--few-shot", "4", "--forget-fraction", "1"]).expect("fraction");
        assert_eq!(
            (whole.replay, whole.forget_fraction),
            (Replay::FewShot(4), Some(1.0))
        );
        let preset = config(&["--protocol", "official-face"]).expect("preset");
        assert_eq!((preset.forget_fraction, preset.min_replay), (None, 0));
        // The method's form unless named: log-odds for GS-LoRA++ with `--few-shot` (and its
        // w_r 10), the cross-entropy with more replay, for GS-LoRA and for a preset; `auto`
        // returns to the method's.
        assert_eq!(
            (plain.forget_loss, plain.forget_form()),
            (None, ForgetLoss::CrossEntropy)
        );
        let plus = |flags: &[&str]| {
            let config = config(&[&["--method", "gs-lora++"], flags].concat()).expect("gs-lora++");
            (config.forget_form(), config.prototype_loss().retain_weight)
        };
        assert_eq!(plus(&[]), (ForgetLoss::CrossEntropy, 0.0));
        assert_eq!(plus(&["--few-shot", "4"]), (ForgetLoss::LogOdds, 10.0));
        assert_eq!(
            plus(&["--few-shot", "4", "--pro-retain-weight", "1"]),
            (ForgetLoss::LogOdds, 1.0)
        );
        assert_eq!(
            plus(&["--few-shot", "4", "--bnd-pro", "50"]),
            (ForgetLoss::LogOdds, 10.0),
            "another prototype flag keeps the method's w_r"
        );
        assert_eq!(
            plus(&["--few-shot", "4", "--bnd-per-sample", "off"]),
            (ForgetLoss::CrossEntropy, 0.0)
        );
        assert_eq!(
            plus(&["--protocol", "official-face", "--few-shot", "4"]),
            (ForgetLoss::CrossEntropy, 0.0)
        );
        let back = config(&["--protocol", "official-face", "--forget-loss", "auto"]).expect("auto");
        assert_eq!(back.forget_loss, None);
        let unlikelihood = config(&["--forget-loss", "unlikelihood"]).expect("unlikelihood");
        assert_eq!(unlikelihood.forget_form(), ForgetLoss::Unlikelihood);
        let log_odds = config(&["--forget-loss", "log-odds"]).expect("log-odds");
        assert_eq!(log_odds.forget_form(), ForgetLoss::LogOdds);
        let official = config(&[
            "--method",
            "gs-lora++",
            "--few-shot",
            "4",
            "--forget-loss",
            "cross-entropy",
        ])
        .expect("ce");
        assert_eq!(official.forget_form(), ForgetLoss::CrossEntropy);
        let err = config(&["--forget-loss", "unlikelihood", "--bnd-per-sample", "off"])
            .expect("parsed")
            .validate()
            .expect_err("no batch-mean form");
        assert!(err.to_string().contains("needs bnd_per_sample on"), "{err}");
        let negative = config(&["--alpha", "-1"]).expect("parsed, refused by validate");
        assert_eq!(negative.group_lasso.weight, -1.0);
        for (bad, needle) in [
            (&["--bnd-per-sample", "yes"][..], "--bnd-per-sample"),
            (
                &["--forget-loss", "ascent"],
                "expected auto, cross-entropy, unlikelihood or log-odds, found `ascent`",
            ),
            (&["--bnd", "big"], "expected auto or a number, found `big`"),
            (
                &["--forget-fraction", "all"],
                "expected replay or a number, found `all`",
            ),
            (
                &["--replay-stratified", "0.1", "--few-shot", "2"],
                "cannot be used with",
            ),
            (
                &["--epoch", "3"],
                "tip: a similar argument exists: '--epochs'",
            ),
        ] {
            let err = config(bad).expect_err("refused");
            assert!(err.contains(needle), "{bad:?}: {err}");
        }
    }

    /// A run file replaces the defaults and the flags override it; `--protocol` with it is
    /// refused. Catches the file ignored, a flag losing to the file, and a file read without
    /// its nested sections.
    #[test]
    fn a_run_file_sets_the_defaults_and_flags_override_it() {
        let dir = std::env::temp_dir().join(format!("gs-lora-run-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("config.json");
        let saved = ForgetConfig {
            epochs: 7,
            lr: 3e-3,
            group_lasso: GroupLassoConfig::new().with_warmup_epochs(2),
            ..Preset::OfficialFace.config()
        };
        std::fs::write(&path, serde_json::to_string(&saved).expect("json")).expect("write");
        let file = path.to_str().expect("utf-8");
        assert_eq!(config(&["--config", file]).expect("file"), saved);
        let overridden = config(&["--config", file, "--epochs", "2"]).expect("override");
        assert_eq!(overridden, ForgetConfig { epochs: 2, ..saved });
        let err = config(&["--config", file, "--protocol", "official-face"]).expect_err("both");
        assert!(err.contains("cannot be used with"), "{err}");
        std::fs::write(&path, "{\"epochs\": \"many\"}").expect("write");
        let err = config(&["--config", file]).expect_err("malformed");
        assert!(err.contains(file), "names the file: {err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The defaults paragraph shows the values the run takes. Catches it reading another
    /// config than the one passed.
    #[test]
    fn the_defaults_help_shows_the_given_defaults() {
        let help = forget_defaults_help(&ForgetConfig {
            epochs: 10,
            replay: Replay::Fraction(0.5),
            bnd: Some(5.0),
            ..ForgetConfig::default()
        });
        for needle in [
            "--epochs 10 ",
            "--replay-fraction 0.5 ",
            "--bnd 5 ",
            "--forget-fraction 1 ",
            "--rank 8 ",
        ] {
            assert!(help.contains(needle), "`{needle}` in {help}");
        }
    }
}
