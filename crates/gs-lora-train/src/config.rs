//! Every hyper-parameter of a forgetting run, with the reference code's defaults.

use gs_lora_core::LoraConfig;
use gs_lora_core::loss::PrototypeLossConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// GS-LoRA or GS-LoRA++ (with prototype losses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// GS-LoRA: retention + bounded forgetting + group lasso.
    GsLora,
    /// GS-LoRA++: GS-LoRA plus the prototype KL losses.
    #[serde(rename = "gs-lora++", alias = "gs-lora-plus-plus")]
    GsLoraPlusPlus,
}

impl std::str::FromStr for Method {
    type Err = TrainError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "gs-lora" => Ok(Method::GsLora),
            "gs-lora++" => Ok(Method::GsLoraPlusPlus),
            other => Err(TrainError::InvalidSetting(format!(
                "unknown method `{other}`; expected gs-lora or gs-lora++"
            ))),
        }
    }
}

/// Which remaining-class images the retention loss sees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Replay {
    /// A seeded fraction of each remaining class's training images.
    Fraction(f64),
    /// `k` training images per class (few-shot), for remaining and forget classes alike.
    FewShot(usize),
}

/// The settings of a forgetting run (DESIGN.md §2), saved as `config.json` in the run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgetConfig {
    /// Seed of the class order, data order and adapter initialisation.
    pub seed: u64,
    /// Number of tasks.
    pub tasks: usize,
    /// Classes forgotten per task.
    pub forget_per_task: usize,
    /// GS-LoRA or GS-LoRA++.
    pub method: Method,
    /// Replay subset of the retention loss.
    pub replay: Replay,
    /// Epochs per task.
    pub epochs: usize,
    /// Images per batch (one remaining and one forget batch per step).
    pub batch_size: usize,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha (scale `alpha / rank`).
    pub lora_alpha: f64,
    /// Peak learning rate of the cosine schedule.
    pub lr: f64,
    /// Final learning rate of the cosine schedule.
    pub min_lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Bound `BND` of the forgetting loss.
    pub bnd: f64,
    /// Weight `β` of the forgetting loss per task (the last value repeats).
    pub beta: Vec<f64>,
    /// Weight `α` of the group lasso.
    pub alpha: f64,
    /// Epochs with `α = 0` at the start of each task (0: no warm-up).
    pub alpha_warmup_epochs: usize,
    /// `α` after the warm-up (`big_alpha`); `alpha` when absent.
    pub big_alpha: Option<f64>,
    /// Bound of the prototype loss (GS-LoRA++).
    pub bnd_pro: f64,
    /// Weight of the forget prototype term (GS-LoRA++).
    pub pro_forget_weight: f64,
    /// Weight of the retain prototype term (GS-LoRA++).
    pub pro_retain_weight: f64,
}

impl Default for ForgetConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            tasks: 4,
            forget_per_task: 20,
            method: Method::GsLora,
            replay: Replay::Fraction(0.1),
            epochs: 10,
            batch_size: 32,
            rank: 8,
            lora_alpha: 1.0,
            lr: 1e-2,
            min_lr: 1e-5,
            weight_decay: 0.05,
            bnd: 105.0,
            beta: vec![0.2, 0.25, 0.25, 0.2],
            alpha: 1e-4,
            alpha_warmup_epochs: 0,
            big_alpha: None,
            bnd_pro: 18.0,
            pro_forget_weight: 0.01,
            pro_retain_weight: 0.0,
        }
    }
}

impl ForgetConfig {
    /// `β` of task `task` (the last listed value for later tasks).
    pub fn beta_for(&self, task: usize) -> f64 {
        self.beta
            .get(task)
            .or(self.beta.last())
            .copied()
            .unwrap_or(0.2)
    }

    /// The adapters of these settings (rank and alpha).
    pub fn lora(&self) -> LoraConfig {
        LoraConfig::new()
            .with_rank(self.rank)
            .with_alpha(self.lora_alpha)
    }

    /// The GS-LoRA++ prototype loss of these settings.
    pub fn prototype_loss(&self) -> PrototypeLossConfig {
        PrototypeLossConfig::new()
            .with_bound(self.bnd_pro)
            .with_forget_weight(self.pro_forget_weight)
            .with_retain_weight(self.pro_retain_weight)
    }

    /// The learning rate of epoch `epoch`: cosine from `lr` to `min_lr` over the task.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        if self.epochs <= 1 {
            return self.lr;
        }
        let progress = epoch as f64 / (self.epochs - 1) as f64;
        self.min_lr
            + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// Checks every setting: counts at least 1, rates finite and in range, `min_lr ≤ lr`.
    ///
    /// # Errors
    /// [`TrainError::InvalidSetting`] naming the setting and its value.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(TrainError::InvalidSetting(message));
        check_training(self.epochs, self.batch_size, self.lr, self.weight_decay)?;
        let counts = [
            ("--tasks", self.tasks),
            ("--forget-per-task", self.forget_per_task),
            ("--rank", self.rank),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, v)| *v == 0) {
            return bad(format!("{name} must be at least 1, found 0"));
        }
        match self.replay {
            Replay::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
                return bad(format!("--replay-fraction must be in (0, 1], found {f}"));
            }
            Replay::FewShot(0) => return bad("--few-shot must be at least 1, found 0".into()),
            _ => {}
        }
        let non_negative = [
            ("--min-lr", self.min_lr),
            ("--bnd", self.bnd),
            ("--alpha", self.alpha),
            ("--big-alpha", self.big_alpha.unwrap_or(0.0)),
            ("--bnd-pro", self.bnd_pro),
            ("--pro-forget-weight", self.pro_forget_weight),
            ("--pro-retain-weight", self.pro_retain_weight),
        ];
        if let Some((name, value)) = non_negative
            .iter()
            .find(|(_, v)| !v.is_finite() || *v < 0.0)
        {
            return bad(format!("{name} must be a finite number ≥ 0, found {value}"));
        }
        if self.min_lr > self.lr {
            return bad(format!(
                "--min-lr {} is above --lr {}: the cosine schedule would climb",
                self.min_lr, self.lr
            ));
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return bad(format!(
                "--lora-alpha must be a finite number > 0, found {}",
                self.lora_alpha
            ));
        }
        if self.beta.is_empty() || self.beta.iter().any(|b| !b.is_finite() || *b < 0.0) {
            return bad(format!(
                "--beta must list finite numbers ≥ 0, found {:?}",
                self.beta
            ));
        }
        Ok(())
    }
}

/// Checks the settings every training loop shares: at least one epoch and one sample per
/// batch, a finite positive `--lr`, a finite `--weight-decay` ≥ 0.
///
/// # Errors
/// [`TrainError::InvalidSetting`] naming the flag and the value.
pub(crate) fn check_training(
    epochs: usize,
    batch_size: usize,
    lr: f64,
    weight_decay: f64,
) -> Result<()> {
    let bad = |message: String| Err(TrainError::InvalidSetting(message));
    if epochs == 0 {
        return bad("--epochs must be at least 1, found 0".into());
    }
    if batch_size == 0 {
        return bad("--batch-size must be at least 1, found 0".into());
    }
    if !(lr.is_finite() && lr > 0.0) {
        return bad(format!("--lr must be a finite number > 0, found {lr}"));
    }
    if !(weight_decay.is_finite() && weight_decay >= 0.0) {
        return bad(format!(
            "--weight-decay must be a finite number ≥ 0, found {weight_decay}"
        ));
    }
    Ok(())
}
