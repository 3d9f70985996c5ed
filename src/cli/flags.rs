//! `--name value` flags, and the groups of flags several commands share: data loading and the
//! forgetting hyper-parameters (DESIGN.md §2, each with the reference default).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::tensor::Device;
use gs_lora_core::fused;
use gs_lora_core::loss::PrototypeLossConfig;
use gs_lora_core::{GroupLassoConfig, LoraConfig};
use gs_lora_train::classification::data::{Dataset, LoadOptions};
use gs_lora_train::classification::embedded_dataset;
use gs_lora_train::protocol::Preset;
use gs_lora_train::{EvalSplit, ForgetConfig, Replay};

use super::CliError;
use crate::backend;

/// Flags of one command: `--name value` pairs and value-less switches, taken one by one so that
/// whatever is left over is reported as unknown.
#[derive(Debug)]
pub struct Flags {
    values: HashMap<String, String>,
    switches: HashSet<String>,
    usage: String,
}

impl Flags {
    /// Parses `args`; `switches` are the flags that take no value. `None` when `--help` was
    /// asked for (the usage has been printed).
    ///
    /// # Errors
    /// A stray argument, a flag without its value, or a flag given twice.
    pub fn parse(
        args: &[String],
        switches: &[&str],
        usage: impl Into<String>,
    ) -> Result<Option<Self>, CliError> {
        let mut flags = Self {
            values: HashMap::new(),
            switches: HashSet::new(),
            usage: usage.into(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                println!("{}", flags.usage);
                return Ok(None);
            }
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| flags.usage_error(format!("unexpected argument `{arg}`")))?;
            if switches.contains(&name) {
                flags.switches.insert(name.to_string());
                continue;
            }
            let value = args
                .next()
                .ok_or_else(|| flags.usage_error(format!("`--{name}` needs a value")))?;
            if flags
                .values
                .insert(name.to_string(), value.clone())
                .is_some()
            {
                return Err(flags.usage_error(format!("`--{name}` is given twice")));
            }
        }
        Ok(Some(flags))
    }

    fn usage_error(&self, message: String) -> CliError {
        CliError::Usage(format!("{message}\n\n{}", self.usage))
    }

    /// The value of `--name`, if given.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.values.remove(name)
    }

    /// The value of `--name on|off`, `default` when absent.
    ///
    /// # Errors
    /// A value other than `on` or `off`.
    pub fn on_off(&mut self, name: &str, default: bool) -> Result<bool, CliError> {
        match self.take(name).as_deref() {
            None => Ok(default),
            Some("on") => Ok(true),
            Some("off") => Ok(false),
            Some(other) => {
                Err(self.usage_error(format!("`--{name}` is on or off, found `{other}`")))
            }
        }
    }

    /// Whether the switch `--name` was given.
    pub fn switch(&mut self, name: &str) -> bool {
        self.switches.remove(name)
    }

    /// The path `--name`, if given.
    pub fn path(&mut self, name: &str) -> Option<PathBuf> {
        self.take(name).map(PathBuf::from)
    }

    /// The path `--name`.
    ///
    /// # Errors
    /// When the flag is missing.
    pub fn required_path(&mut self, name: &str) -> Result<PathBuf, CliError> {
        self.path(name)
            .ok_or_else(|| self.usage_error(format!("missing `--{name}`")))
    }

    /// The value of `--name` parsed, if given.
    ///
    /// # Errors
    /// When the value does not parse.
    pub fn optional<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, CliError> {
        self.take(name)
            .map(|value| {
                value.parse().map_err(|_| {
                    self.usage_error(format!("`--{name} {value}` is not a valid value"))
                })
            })
            .transpose()
    }

    /// The value of `--name` parsed, or `default`.
    ///
    /// # Errors
    /// When the value does not parse.
    pub fn number<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, CliError> {
        Ok(self.optional(name)?.unwrap_or(default))
    }

    /// A comma-separated list of numbers, if given.
    ///
    /// # Errors
    /// When an element does not parse.
    pub fn list<T: FromStr>(&mut self, name: &str) -> Result<Option<Vec<T>>, CliError> {
        let Some(value) = self.take(name) else {
            return Ok(None);
        };
        value
            .split(',')
            .map(|part| {
                part.trim().parse().map_err(|_| {
                    self.usage_error(format!("`--{name} {value}`: `{part}` is not a number"))
                })
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Ends parsing.
    ///
    /// # Errors
    /// When a flag was given that the command does not know.
    pub fn finish(self) -> Result<(), CliError> {
        let unknown = self.values.keys().chain(&self.switches).min();
        match unknown {
            Some(name) => Err(self.usage_error(format!("unknown flag `--{name}`"))),
            None => Ok(()),
        }
    }
}

/// Flags of [`LoadOptions`] on top of `defaults`: `--val-fraction`, `--max-classes`,
/// `--train-per-class`, `--eval-per-class`, `--split-seed` (`max_side` comes from the command;
/// the split seed defaults to the model's, or 0 before there is one, never to the run's
/// `--seed`: a run with another seed must not measure on images the model trained on).
///
/// # Errors
/// A value that does not parse.
pub fn load_options(flags: &mut Flags, defaults: LoadOptions) -> Result<LoadOptions, CliError> {
    Ok(LoadOptions {
        val_fraction: flags.number("val-fraction", defaults.val_fraction)?,
        max_classes: flags.optional("max-classes")?.or(defaults.max_classes),
        train_per_class: flags
            .optional("train-per-class")?
            .or(defaults.train_per_class),
        eval_per_class: flags
            .optional("eval-per-class")?
            .or(defaults.eval_per_class),
        seed: flags.number("split-seed", defaults.seed)?,
        ..defaults
    })
}

/// The device of `--backend NAME` (or `BURN_DEVICE`; Flex by default), with the fused CPU ops
/// on or off for the whole process as `--fused on|off` says (on by default). Off runs Burn's
/// own ops: the same results to rounding, in another floating-point order, which is how a
/// training result is checked against the order of another CPU.
///
/// # Errors
/// An unknown or not compiled backend, or `--fused` other than `on` or `off`.
pub fn compute_device(flags: &mut Flags) -> Result<Device, CliError> {
    let device = backend::device(flags.take("backend").as_deref())?;
    fused::set_enabled(flags.on_off("fused", true)?);
    Ok(device)
}

/// The data defaults of a forgetting run on a model that resizes to `max_side` and was trained
/// on the split of `split_seed`: no validation split carved out of the training images when the
/// run measures on the test split (it would only shrink the pool the subsets are drawn from).
pub fn forget_load_options(config: &ForgetConfig, max_side: usize, split_seed: u64) -> LoadOptions {
    let defaults = LoadOptions::default();
    LoadOptions {
        max_side: Some(max_side),
        seed: split_seed,
        val_fraction: match config.eval_split {
            EvalSplit::Test => 0.0,
            EvalSplit::Validation => defaults.val_fraction,
        },
        ..defaults
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

/// Every forgetting hyper-parameter as a flag, on top of `defaults` (or of the official
/// experiment `--protocol NAME` names, which replaces them): `--seed --tasks --forget-per-task --missing-classes --class-order --eval-split --eval-margin --method --few-shot
/// --group-few-shot --replay-fraction --replay-stratified --epochs --min-steps
/// --batch-size --rank --lora-alpha --lr --min-lr --weight-decay --clip-grad-norm --bnd --bnd-per-sample --beta --alpha
/// --alpha-warmup-epochs --big-alpha --proximal --bnd-pro --pro-forget-weight
/// --pro-forget-weights --pro-retain-weight --dropout --augment`.
///
/// # Errors
/// A value that does not parse, more than one of `--few-shot`, `--group-few-shot`,
/// `--replay-fraction` and `--replay-stratified`, or an unknown method.
pub fn forget_config(flags: &mut Flags, defaults: ForgetConfig) -> Result<ForgetConfig, CliError> {
    let defaults = match flags.take("protocol") {
        Some(name) => name.parse::<Preset>()?.config(),
        None => defaults,
    };
    let replay = match (
        flags.optional("few-shot")?,
        flags.optional("replay-fraction")?,
        flags.optional("replay-stratified")?,
        flags.optional("group-few-shot")?,
    ) {
        (None, None, None, None) => defaults.replay,
        (Some(k), None, None, None) => Replay::FewShot(k),
        (None, Some(f), None, None) => Replay::Fraction(f),
        (None, None, Some(f), None) => Replay::Stratified(f),
        (None, None, None, Some(k)) => Replay::GroupFewShot(k),
        _ => {
            return Err(flags.usage_error(
                "give one of --few-shot, --group-few-shot, --replay-fraction and \
                 --replay-stratified"
                    .into(),
            ));
        }
    };
    let method = match flags.take("method") {
        Some(name) => name.parse()?,
        None => defaults.method,
    };
    let class_order = match flags.take("class-order") {
        Some(order) => order.parse()?,
        None => defaults.class_order,
    };
    let eval_split = match flags.take("eval-split") {
        Some(split) => split.parse()?,
        None => defaults.eval_split,
    };
    let bnd = match flags.take("bnd") {
        None => defaults.bnd,
        Some(value) if value == "auto" => None,
        Some(value) => Some(value.parse().map_err(|_| {
            flags.usage_error(format!("`--bnd {value}`: expected auto or a number"))
        })?),
    };
    let eval_margin = flags.on_off("eval-margin", defaults.eval_margin)?;
    let proximal = flags.on_off("proximal", defaults.group_lasso.proximal)?;
    Ok(ForgetConfig {
        protocol: defaults.protocol,
        seed: flags.number("seed", defaults.seed)?,
        tasks: flags.number("tasks", defaults.tasks)?,
        forget_per_task: flags.number("forget-per-task", defaults.forget_per_task)?,
        missing_classes: flags.number("missing-classes", defaults.missing_classes)?,
        class_order,
        eval_split,
        eval_margin,
        method,
        replay,
        epochs: flags.number("epochs", defaults.epochs)?,
        min_steps: flags.number("min-steps", defaults.min_steps)?,
        batch_size: flags.number("batch-size", defaults.batch_size)?,
        lr: flags.number("lr", defaults.lr)?,
        min_lr: flags.number("min-lr", defaults.min_lr)?,
        weight_decay: flags.number("weight-decay", defaults.weight_decay)?,
        clip_grad_norm: flags
            .optional("clip-grad-norm")?
            .or(defaults.clip_grad_norm),
        bnd,
        bnd_per_sample: flags.on_off("bnd-per-sample", defaults.bnd_per_sample)?,
        beta: flags.list("beta")?.unwrap_or(defaults.beta),
        lora: LoraConfig {
            rank: flags.number("rank", defaults.lora.rank)?,
            lora_alpha: flags.number("lora-alpha", defaults.lora.lora_alpha)?,
            ..defaults.lora
        },
        group_lasso: GroupLassoConfig {
            weight: flags.number("alpha", defaults.group_lasso.weight)?,
            warmup_epochs: flags
                .number("alpha-warmup-epochs", defaults.group_lasso.warmup_epochs)?,
            warmup_weight: flags
                .optional("big-alpha")?
                .or(defaults.group_lasso.warmup_weight),
            proximal,
        },
        prototype: PrototypeLossConfig {
            bound: flags.number("bnd-pro", defaults.prototype.bound)?,
            forget_weight: flags.number("pro-forget-weight", defaults.prototype.forget_weight)?,
            retain_weight: flags.number("pro-retain-weight", defaults.prototype.retain_weight)?,
        },
        prototype_forget_weights: flags
            .list("pro-forget-weights")?
            .unwrap_or(defaults.prototype_forget_weights),
        dropout: flags.optional("dropout")?.or(defaults.dropout),
        augment: flags.on_off("augment", defaults.augment)?,
    })
}

/// The flag that sets the config field `name` (as [`TrainError::Setting`] names it): the field
/// with `-` for `_`, except where the flag keeps the reference code's name.
///
/// [`TrainError::Setting`]: gs_lora_train::TrainError::Setting
pub(crate) fn flag_for(name: &str) -> String {
    const RENAMED: [(&str, &str); 10] = [
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
    ];
    let flag = RENAMED
        .iter()
        .find(|(field, _)| *field == name)
        .map_or_else(|| name.replace('_', "-"), |(_, flag)| (*flag).to_string());
    format!("--{flag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<ForgetConfig, CliError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut flags = Flags::parse(&args, &[], "usage")?.expect("flags");
        forget_config(&mut flags, ForgetConfig::default())
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
            config(&["--protocol", "official-face-fewshot", "--min-steps", "200"]).expect("config");
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
        assert!(err.to_string().contains("unknown protocol"), "{err}");
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
            "--bnd",
            "5",
            "--dropout",
            "0.1",
            "--replay-fraction",
            "0.2",
        ])
        .expect("flags");
        assert!(!set.bnd_per_sample);
        assert_eq!(
            (set.bnd, set.dropout, set.replay),
            (Some(5.0), Some(0.1), Replay::Fraction(0.2))
        );
        let official = config(&["--protocol", "official-face"]).expect("preset");
        assert_eq!(
            (official.bnd, official.bnd_per_sample),
            (Some(105.0), false)
        );
        let auto = config(&["--protocol", "official-face", "--bnd", "auto"]).expect("auto");
        assert_eq!(auto.bnd, None);
        let stratified = config(&["--replay-stratified", "0.3"]).expect("stratified");
        assert_eq!(stratified.replay, Replay::Stratified(0.3));
        let group = config(&["--group-few-shot", "32"]).expect("group few-shot");
        assert_eq!(group.replay, Replay::GroupFewShot(32));
        for bad in [
            &["--bnd-per-sample", "yes"][..],
            &["--bnd", "big"],
            &["--replay-stratified", "0.1", "--few-shot", "2"],
        ] {
            let err = config(bad).expect_err("refused");
            assert!(err.to_string().contains(&bad[0][2..]), "{bad:?}: {err}");
        }
    }
}
