//! Every hyper-parameter of a forgetting run, with the reference code's defaults. The adapters,
//! the group lasso and the prototype loss keep their own configs (written once, in
//! `gs-lora-core`); this run config nests them.

use gs_lora_core::loss::PrototypeLossConfig;
use gs_lora_core::{GroupLassoConfig, LoraConfig};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError, io};
use crate::protocol::{ClassOrder, Preset};

/// The forgetting method a run uses (its [`Method`](crate::engine::Method) is built from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodKind {
    /// GS-LoRA: retention + bounded forgetting + group lasso.
    GsLora,
    /// GS-LoRA++: GS-LoRA plus the prototype KL losses.
    #[serde(rename = "gs-lora++", alias = "gs-lora-plus-plus")]
    GsLoraPlusPlus,
    /// GS-LoRA's adapters and losses without the group lasso: what the group sparsity buys.
    Lora,
    /// Every parameter but the head, with GS-LoRA's retention and bounded forgetting losses.
    FineTune,
    /// NegGrad+: every parameter but the head, descent on the remaining classes' cross-entropy
    /// and ascent (weight `β`) on the forget classes'.
    #[serde(rename = "neg-grad+", alias = "neg-grad-plus")]
    NegGradPlus,
    /// Random labelling: every parameter but the head, the forget samples trained towards
    /// random remaining classes.
    RandomLabels,
    /// SalUn: random labelling on the salient half of the weights only.
    #[serde(rename = "salun")]
    SalUn,
    /// Retrain by fine-tuning: every parameter but the head, trained on the remaining classes
    /// alone (the official detection Retrain; SalUn's `FT`).
    RetrainFt,
    /// Retrain from scratch: the model drawn afresh before the first task, then every
    /// parameter, the head included, trained on the remaining classes alone (the official
    /// classification Retrain).
    Retrain,
    /// L2: every parameter but the head on the relabelled forget and the remaining samples,
    /// anchored to the parameters before each task with unit importance.
    L2,
    /// EWC: L2's anchors weighted by the diagonal Fisher information.
    Ewc,
    /// MAS: L2's anchors weighted by the sensitivity of the squared outputs.
    Mas,
    /// LwF: the relabelled forget samples, and the remaining ones with the pretrained
    /// teacher's softened outputs distilled.
    Lwf,
    /// DER: the relabelled forget samples, with the remaining samples' embeddings held to the
    /// teacher's.
    Der,
    /// LIRF: the model's lower half, the relabelled forget samples with the teacher's
    /// attention pushed away and its outputs on the other classes distilled.
    Lirf,
    /// SCRUB: every parameter but the head, alternating passes that push the forget samples'
    /// outputs away from the pretrained teacher's and pull the remaining ones' back.
    Scrub,
    /// SCRUB-S: SCRUB with the parameters held near their running average.
    #[serde(rename = "scrub-s")]
    ScrubS,
    /// DER++: DER plus the cross-entropy on the remaining samples.
    #[serde(rename = "der++", alias = "der-plus-plus")]
    DerPlusPlus,
    /// FDR: the relabelled forget samples, with the distance of the remaining samples' outputs
    /// to the teacher's penalised.
    Fdr,
}

impl MethodKind {
    /// Every method, in the order tables list them.
    pub const ALL: [MethodKind; 19] = [
        MethodKind::GsLora,
        MethodKind::GsLoraPlusPlus,
        MethodKind::Lora,
        MethodKind::FineTune,
        MethodKind::NegGradPlus,
        MethodKind::RandomLabels,
        MethodKind::SalUn,
        MethodKind::RetrainFt,
        MethodKind::Retrain,
        MethodKind::L2,
        MethodKind::Ewc,
        MethodKind::Mas,
        MethodKind::Lwf,
        MethodKind::Der,
        MethodKind::DerPlusPlus,
        MethodKind::Fdr,
        MethodKind::Lirf,
        MethodKind::Scrub,
        MethodKind::ScrubS,
    ];

    /// The method's name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            MethodKind::GsLora => "gs-lora",
            MethodKind::GsLoraPlusPlus => "gs-lora++",
            MethodKind::Lora => "lora",
            MethodKind::FineTune => "fine-tune",
            MethodKind::NegGradPlus => "neg-grad+",
            MethodKind::RandomLabels => "random-labels",
            MethodKind::SalUn => "salun",
            MethodKind::RetrainFt => "retrain-ft",
            MethodKind::Retrain => "retrain",
            MethodKind::L2 => "l2",
            MethodKind::Ewc => "ewc",
            MethodKind::Mas => "mas",
            MethodKind::Lwf => "lwf",
            MethodKind::Der => "der",
            MethodKind::DerPlusPlus => "der++",
            MethodKind::Fdr => "fdr",
            MethodKind::Lirf => "lirf",
            MethodKind::Scrub => "scrub",
            MethodKind::ScrubS => "scrub-s",
        }
    }

    /// Whether the method trains per-task LoRA adapters (otherwise every parameter but the
    /// head).
    pub fn trains_adapters(self) -> bool {
        matches!(
            self,
            MethodKind::GsLora | MethodKind::GsLoraPlusPlus | MethodKind::Lora
        )
    }

    /// Whether the method reads the `baseline` section of its config (weights, forget labels).
    pub fn reads_baseline(self) -> bool {
        self.anchors() || self.distils() || matches!(self, MethodKind::Scrub | MethodKind::ScrubS)
    }

    /// Whether the method reads the prototype loss (`prototype`, `prototype_forget_weights`).
    pub fn reads_prototype(self) -> bool {
        self == MethodKind::GsLoraPlusPlus
    }

    /// Whether the method anchors the parameters to earlier tasks' (L2, EWC, MAS).
    pub fn anchors(self) -> bool {
        matches!(self, MethodKind::L2 | MethodKind::Ewc | MethodKind::Mas)
    }

    /// Whether the method distils the pretrained teacher (LwF, DER, DER++, FDR, LIRF).
    pub fn distils(self) -> bool {
        matches!(
            self,
            MethodKind::Lwf
                | MethodKind::Der
                | MethodKind::DerPlusPlus
                | MethodKind::Fdr
                | MethodKind::Lirf
        )
    }
}

impl std::fmt::Display for MethodKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for MethodKind {
    type Err = TrainError;

    fn from_str(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|method| method.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|m| m.name()).collect();
                TrainError::InvalidSetting(format!(
                    "unknown method `{name}`; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// The label a relabelling baseline (L2, EWC, MAS, LwF, DER, DER++, FDR) trains a forget
/// sample towards, drawn anew at every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForgetLabels {
    /// As the official code (`M:image_iter.py:108-121`): `y' = (y + U{1..100}) mod K_f`, and
    /// `(y + 1) mod K_f` when that is `y`, with `K_f` the task's number of forget classes. The
    /// result is a model label below `K_f`, whichever class that is (PROTOCOL §6.7).
    Official,
    /// Another of the task's forget classes, uniformly (what the official rule means); a task
    /// with a single forget class draws a remaining class. The default.
    Corrected,
    /// A label no class of the schedule uses (the first one): the official detection
    /// baselines relabel every forget object to 12, an id COCO leaves unused.
    Unused,
}

impl std::str::FromStr for ForgetLabels {
    type Err = TrainError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "official" => Ok(ForgetLabels::Official),
            "corrected" => Ok(ForgetLabels::Corrected),
            "unused" => Ok(ForgetLabels::Unused),
            other => Err(TrainError::InvalidSetting(format!(
                "unknown forget labelling `{other}`; expected official, corrected or unused"
            ))),
        }
    }
}

/// The official baselines' weights (PROTOCOL §3, Table 3; the 4-task face column by default,
/// the protocol presets set their own) and how their forget samples are relabelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BaselineConfig {
    /// L2's weight `λ` of `Σ (θ − θ*)²` (`--l2_lambda`).
    pub l2: f64,
    /// EWC's weight `λ` of `Σ F·(θ − θ*)²` (`--ewc_lambda`).
    pub ewc: f64,
    /// MAS's weight `λ` of `Σ Ω·(θ − θ*)²` (`--mas_lambda`).
    pub mas: f64,
    /// LwF's weight `λ_r` of the cross-entropy on the remaining samples (`--lambda_remain`).
    pub lwf_retain: f64,
    /// LwF's weight of the distillation on the remaining samples (0.5 in the official code).
    pub lwf_distill: f64,
    /// The distillation temperature `T` of LwF and SCRUB (2).
    pub temperature: f64,
    /// DER's weight `λ` of `‖e_s − e_t‖²` on the remaining samples.
    pub der: f64,
    /// DER++'s weight `λ` of `‖e_s − e_t‖²`.
    pub der_plus_plus: f64,
    /// DER++'s weight `λ⁺` of the cross-entropy on the remaining samples.
    pub der_plus_plus_retain: f64,
    /// FDR's weight `λ` of `mean ‖z_s − z_t‖₂` on the remaining samples.
    pub fdr: f64,
    /// SCRUB's weight `γ` of the cross-entropy in its min steps (`--sgda_gamma`).
    pub scrub_gamma: f64,
    /// SCRUB-S's weight `γ`.
    pub scrub_s_gamma: f64,
    /// SCRUB-S's weight of `Σ ‖θ − θ_swa‖_F` (`--sgda_smoothing`; SCRUB's is 0).
    pub scrub_s_smoothing: f64,
    /// The label a forget sample is trained towards.
    pub forget_labels: ForgetLabels,
    /// Whether L2/EWC/MAS measure a later task's importance over every training sample of its
    /// remaining classes, as the official code (slow on large sets), instead of the task's
    /// remaining-class training subset, as for the first task.
    pub importance_full_split: bool,
    /// Peak learning rates of particular baselines in a comparison, in place of its
    /// whole-model rate (Table 3: 3e-4 for Retrain, 1e-3 for DER, DER++ and FDR on faces).
    pub lr: std::collections::BTreeMap<MethodKind, f64>,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            l2: 0.1,
            ewc: 10.0,
            mas: 0.005,
            lwf_retain: 10.0,
            lwf_distill: 0.5,
            temperature: 2.0,
            der: 0.01,
            der_plus_plus: 0.005,
            der_plus_plus_retain: 0.005,
            fdr: 50.0,
            scrub_gamma: 0.99,
            scrub_s_gamma: 0.99,
            scrub_s_smoothing: 0.1,
            forget_labels: ForgetLabels::Corrected,
            importance_full_split: false,
            lr: [
                (MethodKind::Retrain, 3e-4),
                (MethodKind::Der, 1e-3),
                (MethodKind::DerPlusPlus, 1e-3),
                (MethodKind::Fdr, 1e-3),
            ]
            .into(),
        }
    }
}

impl BaselineConfig {
    /// Checks every weight is a finite number ≥ 0, the temperature and rates > 0.
    ///
    /// # Errors
    /// [`TrainError::Setting`] naming the setting and its value.
    pub fn validate(&self) -> Result<()> {
        let weights = [
            ("baseline.l2", self.l2),
            ("baseline.ewc", self.ewc),
            ("baseline.mas", self.mas),
            ("baseline.lwf_retain", self.lwf_retain),
            ("baseline.lwf_distill", self.lwf_distill),
            ("baseline.der", self.der),
            ("baseline.der_plus_plus", self.der_plus_plus),
            ("baseline.der_plus_plus_retain", self.der_plus_plus_retain),
            ("baseline.fdr", self.fdr),
            ("baseline.scrub_gamma", self.scrub_gamma),
            ("baseline.scrub_s_gamma", self.scrub_s_gamma),
            ("baseline.scrub_s_smoothing", self.scrub_s_smoothing),
        ];
        if let Some((name, value)) = weights.iter().find(|(_, v)| !v.is_finite() || *v < 0.0) {
            return Err(TrainError::Setting {
                name,
                problem: format!("must be a finite number ≥ 0, found {value}"),
            });
        }
        let positive = std::iter::once(("baseline.temperature", self.temperature))
            .chain(self.lr.values().map(|&lr| ("baseline.lr", lr)));
        for (name, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(TrainError::Setting {
                    name,
                    problem: format!("must be a finite number > 0, found {value}"),
                });
            }
        }
        Ok(())
    }
}

/// The split a forgetting run measures its accuracies on (classification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvalSplit {
    /// The dataset's test split, as the official code (no model is selected during forgetting,
    /// so the test split is only measured, never tuned on). The default.
    Test,
    /// The validation split (what versions before the official protocol measured on).
    Validation,
}

impl EvalSplit {
    /// What `config.json` files of earlier versions, which do not name the split, measured on.
    fn earlier() -> Self {
        EvalSplit::Validation
    }
}

impl std::str::FromStr for EvalSplit {
    type Err = TrainError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "test" => Ok(EvalSplit::Test),
            "validation" => Ok(EvalSplit::Validation),
            other => Err(TrainError::InvalidSetting(format!(
                "unknown evaluation split `{other}`; expected test or validation"
            ))),
        }
    }
}

/// The form of the classification forgetting loss (each stops at the bound `BND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForgetLoss {
    /// `relu(BND − CE)`, gradient ascent on the cross-entropy, as the official code (and
    /// earlier versions' files).
    CrossEntropy,
    /// `relu(−ln(1 − p_y) + ln(1 − e^{−BND}))` per image
    /// ([`forget_loss_unlikelihood`](gs_lora_core::loss::forget_loss_unlikelihood)): stops at
    /// the same point, but its gradient does not vanish on an image the model is sure of.
    /// Per-sample bound only.
    Unlikelihood,
    /// `relu(ln(p_y / (1 − p_y)) − ln(e^{−BND} / (1 − e^{−BND})))` per image, the sum of the
    /// two others ([`forget_loss_log_odds`](gs_lora_core::loss::forget_loss_log_odds)): the
    /// same stop, a push on the true logit of the same size whatever the model's confidence.
    /// Per-sample bound only.
    LogOdds,
}

impl ForgetLoss {
    /// The name of `--forget-loss`.
    pub fn name(self) -> &'static str {
        match self {
            ForgetLoss::CrossEntropy => "cross-entropy",
            ForgetLoss::Unlikelihood => "unlikelihood",
            ForgetLoss::LogOdds => "log-odds",
        }
    }
}

impl std::fmt::Display for ForgetLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ForgetLoss {
    type Err = TrainError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "cross-entropy" => Ok(ForgetLoss::CrossEntropy),
            "unlikelihood" => Ok(ForgetLoss::Unlikelihood),
            "log-odds" => Ok(ForgetLoss::LogOdds),
            other => Err(TrainError::InvalidSetting(format!(
                "unknown forgetting loss `{other}`; expected cross-entropy, unlikelihood or \
                 log-odds"
            ))),
        }
    }
}

/// Which training images a task sees, of the remaining and of the forget classes alike
/// (drawn by [`task_samples`](crate::engine::task_samples)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Replay {
    /// A seeded fraction of each group's training images (the official `--data_ratio`:
    /// uniform over the group, so with few images per class some classes get none).
    Fraction(f64),
    /// A seeded fraction of each class's training images, rounded up: `⌈f·n_c⌉`, so every
    /// class keeps at least one, and at least [`ForgetConfig::min_replay`] (the default). The
    /// same as `Fraction` in expectation when classes have many images; with few, the classes
    /// `Fraction` leaves out lose their accuracy while the adapters train (docs/results.md,
    /// Omniglot).
    Stratified(f64),
    /// `k` training images per class (few-shot).
    FewShot(usize),
    /// `k · #classes` training images drawn uniformly over the group's (the official COCO
    /// few-shot draw: image-level, so a class may get more or fewer than `k`); from a group with
    /// fewer images, with replacement (the official fallback), so some repeat.
    GroupFewShot(usize),
}

impl Replay {
    /// The name of the setting that holds this replay's value.
    pub fn setting(self) -> &'static str {
        match self {
            Replay::Fraction(_) => "replay.fraction",
            Replay::Stratified(_) => "replay.stratified",
            Replay::FewShot(_) => "replay.few_shot",
            Replay::GroupFewShot(_) => "replay.group_few_shot",
        }
    }
}

/// GS-LoRA++'s own remaining-class prototype weight `w_r` with a few-shot replay and the
/// per-sample bound ([`ForgetConfig::prototype_loss`]; 0 in every official script and preset,
/// and with more replay).
/// With `k` images of a class the retention cross-entropy fits them to 0 and no longer holds
/// the remaining classes' borders; the prototype term keeps their embeddings near the class
/// means (Fashion-MNIST 4-shot, first task: −5.6 points of acc_r at 0, +3.6 at 10; on the
/// embedded default's half replay, 10 costs the first task 4 points: docs/results.md).
pub const FEW_SHOT_RETAIN_WEIGHT: f64 = 10.0;

/// The settings of a forgetting run (DESIGN.md §2), saved as `config.json` in the run directory.
///
/// [`ForgetConfig::from_json`] also reads the `config.json` of versions before the adapters,
/// group lasso and prototype loss were nested (flat `rank`, `lora_alpha`, `alpha`,
/// `alpha_warmup_epochs`, `big_alpha`, `bnd_pro`, `pro_forget_weight`, `pro_retain_weight`),
/// so old runs resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgetConfig {
    /// The official experiment these settings started from (`--protocol`), if any; every
    /// value below is what the run used, preset or not (absent from earlier versions' files).
    #[serde(default)]
    pub protocol: Option<Preset>,
    /// Seed of the class order, data order and adapter initialisation.
    pub seed: u64,
    /// Number of tasks.
    pub tasks: usize,
    /// Classes forgotten per task.
    pub forget_per_task: usize,
    /// The missing-class setting: the first this many classes of the order are never trained on
    /// and measured after every task (PROTOCOL §0.2 "open continual", 5 there); 0 (the default,
    /// and in earlier versions' files) for the plain setting.
    #[serde(default)]
    pub missing_classes: usize,
    /// How the class order is drawn (absent from earlier versions' files: the seeded shuffle).
    #[serde(default)]
    pub class_order: ClassOrder,
    /// The split accuracies are measured on (absent from earlier versions' files: validation).
    /// Detection always measures on its validation split, COCO's evaluation set (val2017).
    #[serde(default = "EvalSplit::earlier")]
    pub eval_split: EvalSplit,
    /// Whether a CosFace head is scored with its training margin on the true class, reading the
    /// labels of the images scored, as the official code does (a flaw; on only to reproduce its
    /// reported face numbers). Off by default; Linear heads have no margin.
    #[serde(default)]
    pub eval_margin: bool,
    /// The forgetting method.
    pub method: MethodKind,
    /// Replay subset of the retention loss, and of the forgetting loss unless
    /// `forget_fraction` is set.
    pub replay: Replay,
    /// The fewest training images of a class the stratified rule keeps (or all it has):
    /// `max(⌈f·n_c⌉, min(min_replay, n_c))`, for `Replay::Stratified` and `forget_fraction`
    /// (the official fraction draw and the few-shot rules draw as they do). 4 by default, the
    /// few-shot setting's `k`: 10% of a class of 12 images is 2, too few to hold its accuracy
    /// while its siblings are erased (docs/results.md, Omniglot); 0 in every preset and in
    /// earlier versions' files (no floor beyond the rule's one image).
    #[serde(default)]
    pub min_replay: usize,
    /// Share of each forget class's training images the forgetting loss trains on, rounded up
    /// per class (`--forget-fraction`); `None` (every preset, and earlier versions' files)
    /// draws them by `replay`, as the official code. The default is 1, every image: acc_f is
    /// measured on images the loss never sees, and a share of them forgets those images but
    /// not the classes (docs/results.md: 51 of 52 Omniglot tasks at acc_f ≤ 5% with every
    /// image, against misses of up to 16% with 10%). The few-shot setting has `k` images of
    /// the classes to erase too: with a few-shot `replay`, set `None` ([`few_shot`](Self::few_shot)
    /// does, and so does the CLI's `--few-shot` unless `--forget-fraction` is given).
    #[serde(default)]
    pub forget_fraction: Option<f64>,
    /// Epochs per task.
    pub epochs: usize,
    /// Optimizer steps a task takes at least: each epoch takes `⌈min_steps / epochs⌉` steps
    /// when one pass over the remaining-class batches is shorter, cycling them (as the forget
    /// batches are cycled). 0: one pass per epoch, as the official loop (every preset).
    #[serde(default)]
    pub min_steps: usize,
    /// Images per batch (one remaining and one forget batch per step).
    pub batch_size: usize,
    /// Peak learning rate of the cosine schedule.
    pub lr: f64,
    /// Final learning rate of the cosine schedule.
    pub min_lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// The largest global L2 norm of a step's gradients (`--clip-grad-norm`; PyTorch's
    /// `clip_grad_norm_`, 0.1 in the official detection training); `None` (the default, and
    /// the official classification training) clips nothing.
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    /// Bound `BND` of the forgetting loss `relu(BND − CE)`; `None` (the default, `--bnd auto`)
    /// is `ln C + 1` for a classifier of `C` classes: a sample whose cross-entropy passes
    /// `ln C` has its true class below `1/C`, so another class wins, and the bound stops
    /// pushing just past that. Official runs use 105 on the face CosFace head (whose logits
    /// are scaled by 64) and 15 for COCO; detection needs a number.
    pub bnd: Option<f64>,
    /// Whether `BND` bounds each forget sample's cross-entropy (then averaged; the default)
    /// instead of the batch mean (the official code's, and earlier versions' files;
    /// `--bnd-per-sample`). A bounded batch mean is reached by a few samples pushed far past
    /// recognition while others are still recognised (docs/results.md). Classification only.
    #[serde(default)]
    pub bnd_per_sample: bool,
    /// The form of the forgetting loss (`--forget-loss`): the official cross-entropy ascent,
    /// or the unlikelihood or log-odds terms, whose push does not fade on the images the model
    /// is surest of (classification only). `None` (the default, `auto`) is the method's form,
    /// [`forget_form`](Self::forget_form): log-odds for GS-LoRA++ with a few-shot replay and
    /// the per-sample bound, the cross-entropy otherwise. Earlier versions' files, which have
    /// no such field, used the cross-entropy.
    #[serde(default = "cross_entropy_form")]
    pub forget_loss: Option<ForgetLoss>,
    /// Weight `β` of the forgetting loss per task (the last value repeats).
    pub beta: Vec<f64>,
    /// The adapters: rank and `lora_alpha`.
    pub lora: LoraConfig,
    /// The group lasso's weight `α` and its warm-up.
    pub group_lasso: GroupLassoConfig,
    /// The prototype loss (GS-LoRA++, `--bnd-pro`, `--pro-forget-weight`,
    /// `--pro-retain-weight`). `None` (the default) is the method's own,
    /// [`prototype_loss`](Self::prototype_loss): the official bound 18, `w_f` 0.01 and `w_r`
    /// 0, with `w_r` [`FEW_SHOT_RETAIN_WEIGHT`] for GS-LoRA++ with a few-shot replay and the
    /// per-sample bound (where its own forgetting form is the log-odds). Earlier versions'
    /// files always name it.
    #[serde(default)]
    pub prototype: Option<PrototypeLossConfig>,
    /// The prototype loss's forget weight `w_f` per task (the last value repeats), in place of
    /// `prototype.forget_weight` when not empty: the official few-shot face run sets
    /// .015 .06 .025 .012 this way (PROTOCOL §1, E2). Absent from earlier versions' files.
    #[serde(default)]
    pub prototype_forget_weights: Vec<f64>,
    /// Every dropout rate of the model while training, in place of its config's (`--dropout`);
    /// `None` (the default) keeps the model's: 0.1 for the official face ViT and for Deformable
    /// DETR's residual branches, 0 for the other released checkpoints.
    #[serde(default)]
    pub dropout: Option<f64>,
    /// DETR's training augmentation (`--augment`; [`DetrAugment`](crate::detection::DetrAugment):
    /// flips, multi-scale resizing, random crops), as the official COCO training uses it.
    /// Detection only; off by default and in earlier versions' files.
    #[serde(default)]
    pub augment: bool,
    /// The baselines' weights and forget labels (absent from earlier versions' files: the
    /// defaults).
    #[serde(default)]
    pub baseline: BaselineConfig,
}

impl Default for ForgetConfig {
    fn default() -> Self {
        Self {
            protocol: None,
            seed: 0,
            tasks: 4,
            forget_per_task: 20,
            missing_classes: 0,
            class_order: ClassOrder::Seeded,
            eval_split: EvalSplit::Test,
            eval_margin: false,
            method: MethodKind::GsLora,
            replay: Replay::Stratified(0.1),
            min_replay: 4,
            forget_fraction: Some(1.0),
            epochs: 10,
            min_steps: 0,
            batch_size: 32,
            lr: 1e-2,
            min_lr: 1e-5,
            weight_decay: 0.05,
            clip_grad_norm: None,
            bnd: None,
            bnd_per_sample: true,
            forget_loss: None,
            beta: vec![0.2, 0.25, 0.25, 0.2],
            lora: LoraConfig::new(),
            group_lasso: GroupLassoConfig::new(),
            prototype: None,
            prototype_forget_weights: Vec::new(),
            dropout: None,
            augment: false,
            baseline: BaselineConfig::default(),
        }
    }
}

/// Settings earlier versions wrote at the top level of `config.json`: `(old key, section,
/// key in the section)`.
const FLAT_KEYS: [(&str, &str, &str); 8] = [
    ("rank", "lora", "rank"),
    ("lora_alpha", "lora", "lora_alpha"),
    ("alpha", "group_lasso", "weight"),
    ("alpha_warmup_epochs", "group_lasso", "warmup_epochs"),
    ("big_alpha", "group_lasso", "warmup_weight"),
    ("bnd_pro", "prototype", "bound"),
    ("pro_forget_weight", "prototype", "forget_weight"),
    ("pro_retain_weight", "prototype", "retain_weight"),
];

impl ForgetConfig {
    /// The settings a run saved (its `config.json`), in either form [`from_json`](Self::from_json)
    /// reads.
    ///
    /// # Errors
    /// [`TrainError::Io`] when the file cannot be read, [`TrainError::Format`] naming it when
    /// it is not a config.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        Self::from_json(&text).map_err(|err| TrainError::Format {
            path: path.to_path_buf(),
            message: err.to_string(),
        })
    }

    /// Settings from `config.json` text, in the nested form or the flat one of earlier
    /// versions (whose keys move into their sections).
    ///
    /// # Errors
    /// Text that is not a config of either form.
    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        let mut value: serde_json::Value = serde_json::from_str(text)?;
        if let Some(map) = value.as_object_mut() {
            let defaults = serde_json::to_value(Self {
                prototype: Some(PrototypeLossConfig::new()),
                ..Self::default()
            })?;
            for (old, section, key) in FLAT_KEYS {
                let Some(setting) = map.remove(old) else {
                    continue;
                };
                // The section's other keys (never written flat) take their defaults; a flat key
                // that is missing stays missing, and the file is refused.
                let section = map.entry(section).or_insert_with(|| {
                    let mut fresh = defaults[section].clone();
                    if let Some(fresh) = fresh.as_object_mut() {
                        fresh.retain(|k, _| {
                            !FLAT_KEYS.iter().any(|(_, s, f)| *s == section && f == k)
                        });
                    }
                    fresh
                });
                if let Some(section) = section.as_object_mut() {
                    section.insert(key.into(), setting);
                }
            }
        }
        serde_json::from_value(value)
    }

    /// The settings a run's results depend on: these settings with the baselines' section and
    /// the prototype loss reset to their defaults for a method that does not read them,
    /// `min_replay` for a draw that does not read it (the few-shot and official fraction
    /// rules), the forgetting loss's form resolved ([`forget_form`](Self::forget_form)), and
    /// the per-method learning rates (a comparison's, not a run's: a run trains at `lr`) always
    /// left out. A run resumes only under the same run settings.
    pub fn run_settings(&self) -> Self {
        let baseline = match self.method.reads_baseline() {
            true => BaselineConfig {
                lr: Default::default(),
                ..self.baseline.clone()
            },
            false => BaselineConfig {
                lr: Default::default(),
                ..BaselineConfig::default()
            },
        };
        // The floor is read by the stratified rule only (the replay's or the forget draw's).
        let floor_read =
            matches!(self.replay, Replay::Stratified(_)) || self.forget_fraction.is_some();
        let (prototype, prototype_forget_weights) = match self.method.reads_prototype() {
            true => (self.prototype_loss(), self.prototype_forget_weights.clone()),
            false => (PrototypeLossConfig::new(), Vec::new()),
        };
        Self {
            baseline,
            min_replay: match floor_read {
                true => self.min_replay,
                false => Self::default().min_replay,
            },
            forget_loss: Some(self.forget_form()),
            prototype: Some(prototype),
            prototype_forget_weights,
            ..self.clone()
        }
    }

    /// Whether these settings run GS-LoRA++'s few-shot recipe: the method with a few-shot
    /// replay and the per-sample bound, where its own forgetting form and prototype loss
    /// differ from the official ones (docs/results.md, "GS-LoRA++'s few-shot defaults").
    fn few_shot_recipe(&self) -> bool {
        self.method == MethodKind::GsLoraPlusPlus
            && matches!(self.replay, Replay::FewShot(_))
            && self.bnd_per_sample
    }

    /// A note for GS-LoRA with a few-shot replay: with `k` images per remaining class the
    /// retention cross-entropy fits them and stops holding the classes' borders, which only
    /// GS-LoRA++'s remaining-class prototype term does (Fashion-MNIST 4-shot: GS-LoRA meets the
    /// targets in 6 of 12 tasks, GS-LoRA++ in 24 of 24; docs/results.md). `None` otherwise.
    pub fn few_shot_note(&self) -> Option<String> {
        match (self.method, &self.replay) {
            (MethodKind::GsLora, Replay::FewShot(k)) => Some(format!(
                "note: GS-LoRA with {k} replayed images per class keeps no prototype of the \
                 remaining classes, and they lose accuracy as the retention loss fits {k} images \
                 of each; GS-LoRA++ (--method gs-lora++) is the few-shot method \
                 (docs/results.md, \"Fashion-MNIST 4-shot\")"
            )),
            _ => None,
        }
    }

    /// The form of the forgetting loss: `forget_loss`, or where that is `None` the method's
    /// own. GS-LoRA++, the few-shot method, takes the log-odds form with a few-shot replay and
    /// the per-sample bound: with `k` images of a class the cross-entropy's push,
    /// `(1 − p_y)/B`, fades on a class the model is sure of (one that absorbed an earlier
    /// task's erased images stays recognised: Fashion-MNIST 4-shot, docs/results.md), where
    /// the log-odds push does not. Everything else (other methods and replays, the batch-mean
    /// bound, which has no other form, and detection) takes the official cross-entropy. The
    /// form was measured with `w_r` 10, which the method's own prototype loss has there
    /// ([`prototype_loss`](Self::prototype_loss)).
    pub fn forget_form(&self) -> ForgetLoss {
        match self.forget_loss {
            Some(form) => form,
            None if self.few_shot_recipe() => ForgetLoss::LogOdds,
            None => ForgetLoss::CrossEntropy,
        }
    }

    /// The prototype loss: `prototype`, or where that is `None` the method's own: the
    /// official settings, with `w_r` [`FEW_SHOT_RETAIN_WEIGHT`] for GS-LoRA++ with a few-shot
    /// replay and the per-sample bound, the case where the method's own
    /// [`forget_form`](Self::forget_form) is the log-odds (the two were measured together).
    pub fn prototype_loss(&self) -> PrototypeLossConfig {
        self.prototype.clone().unwrap_or_else(|| {
            let official = PrototypeLossConfig::new();
            match self.few_shot_recipe() {
                true => official.with_retain_weight(FEW_SHOT_RETAIN_WEIGHT),
                false => official,
            }
        })
    }

    /// These settings with the few-shot replay of `k` images per class, the forget classes'
    /// too (`forget_fraction` `None`): what `--few-shot K` starts from when no run file or
    /// preset is given.
    pub fn few_shot(self, k: usize) -> Self {
        Self {
            replay: Replay::FewShot(k),
            forget_fraction: None,
            ..self
        }
    }

    /// `β` of task `task` (the last listed value for later tasks).
    pub fn beta_for(&self, task: usize) -> f64 {
        for_task(&self.beta, task).unwrap_or(0.2)
    }

    /// The prototype loss of task `task`: [`prototype_loss`](Self::prototype_loss) with the
    /// task's forget weight from `prototype_forget_weights` (the last listed value for later
    /// tasks) when that is not empty.
    pub fn prototype_for(&self, task: usize) -> PrototypeLossConfig {
        let prototype = self.prototype_loss();
        let forget_weight = for_task(&self.prototype_forget_weights, task);
        PrototypeLossConfig {
            forget_weight: forget_weight.unwrap_or(prototype.forget_weight),
            ..prototype
        }
    }

    /// The learning rate of epoch `epoch` of `E = epochs`, as timm's cosine scheduler stepped
    /// once before each epoch (PROTOCOL §0.4): `min_lr + ½(lr − min_lr)(1 + cos(π·epoch/E))`,
    /// so the first epoch runs at `lr` and the last one just above `min_lr`, never at it.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let progress = epoch as f64 / self.epochs as f64;
        self.min_lr
            + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// Checks every setting: counts at least 1, rates finite and in range, `min_lr ≤ lr`.
    ///
    /// # Errors
    /// [`TrainError::Setting`] naming the setting and its value.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, problem: String| Err(TrainError::Setting { name, problem });
        check_training(self.epochs, self.batch_size, self.lr, self.weight_decay)?;
        let counts = [
            ("tasks", self.tasks),
            ("forget_per_task", self.forget_per_task),
            ("lora.rank", self.lora.rank),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, v)| *v == 0) {
            return bad(name, "must be at least 1, found 0".into());
        }
        match self.replay {
            Replay::Fraction(f) | Replay::Stratified(f) if !(f > 0.0 && f <= 1.0) => {
                return bad(
                    self.replay.setting(),
                    format!("must be in (0, 1], found {f}"),
                );
            }
            Replay::FewShot(0) | Replay::GroupFewShot(0) => {
                return bad(self.replay.setting(), "must be at least 1, found 0".into());
            }
            _ => {}
        }
        if let Some(f) = self.forget_fraction.filter(|f| !(*f > 0.0 && *f <= 1.0)) {
            return bad("forget_fraction", format!("must be in (0, 1], found {f}"));
        }
        let prototype = self.prototype_loss();
        let non_negative = [
            ("min_lr", self.min_lr),
            ("bnd", self.bnd.unwrap_or(0.0)),
            ("group_lasso.weight", self.group_lasso.weight),
            (
                "group_lasso.warmup_weight",
                self.group_lasso.warmup_weight.unwrap_or(0.0),
            ),
            ("prototype.bound", prototype.bound),
            ("prototype.forget_weight", prototype.forget_weight),
            ("prototype.retain_weight", prototype.retain_weight),
        ];
        if let Some((name, value)) = non_negative
            .iter()
            .find(|(_, v)| !v.is_finite() || *v < 0.0)
        {
            return bad(name, format!("must be a finite number ≥ 0, found {value}"));
        }
        if let Some(max_norm) = self.clip_grad_norm
            && !(max_norm.is_finite() && max_norm > 0.0)
        {
            return bad(
                "clip_grad_norm",
                format!("must be a finite number > 0, found {max_norm}"),
            );
        }
        if let Some(prob) = self.dropout {
            gs_lora_core::check_dropout("dropout", prob)?;
        }
        if self.forget_form() != ForgetLoss::CrossEntropy && !self.bnd_per_sample {
            return Err(per_sample_form_on_the_batch_mean(self.forget_form()));
        }
        self.baseline.validate()?;
        if self.min_lr > self.lr {
            return bad(
                "min_lr",
                format!(
                    "{} is above the learning rate {}: the cosine schedule would climb",
                    self.min_lr, self.lr
                ),
            );
        }
        if !(self.lora.lora_alpha.is_finite() && self.lora.lora_alpha > 0.0) {
            return bad(
                "lora.lora_alpha",
                format!(
                    "must be a finite number > 0, found {}",
                    self.lora.lora_alpha
                ),
            );
        }
        let lists = [
            ("beta", &self.beta, false),
            (
                "prototype_forget_weights",
                &self.prototype_forget_weights,
                true,
            ),
        ];
        for (name, values, may_be_empty) in lists {
            if (values.is_empty() && !may_be_empty)
                || values.iter().any(|v| !v.is_finite() || *v < 0.0)
            {
                return bad(
                    name,
                    format!("must list finite numbers ≥ 0, found {values:?}"),
                );
            }
        }
        Ok(())
    }
}

/// The unlikelihood and log-odds terms bound each image; neither has a batch-mean form.
pub(crate) fn per_sample_form_on_the_batch_mean(form: ForgetLoss) -> TrainError {
    TrainError::Setting {
        name: "forget_loss",
        problem: format!("is {form}, which bounds each image; it needs bnd_per_sample on"),
    }
}

/// The form earlier versions' files (which have no `forget_loss`) trained with.
fn cross_entropy_form() -> Option<ForgetLoss> {
    Some(ForgetLoss::CrossEntropy)
}

/// Entry `task` of a per-task list, the last entry for later tasks; `None` for an empty list.
fn for_task(values: &[f64], task: usize) -> Option<f64> {
    values.get(task).or(values.last()).copied()
}

/// Checks the settings every training loop shares: at least one epoch and one sample per
/// batch, a finite positive `lr`, a finite `weight_decay` ≥ 0.
///
/// # Errors
/// [`TrainError::Setting`] naming the setting and the value.
pub(crate) fn check_training(
    epochs: usize,
    batch_size: usize,
    lr: f64,
    weight_decay: f64,
) -> Result<()> {
    let bad = |name, problem: String| Err(TrainError::Setting { name, problem });
    if epochs == 0 {
        return bad("epochs", "must be at least 1, found 0".into());
    }
    if batch_size == 0 {
        return bad("batch_size", "must be at least 1, found 0".into());
    }
    if !(lr.is_finite() && lr > 0.0) {
        return bad("lr", format!("must be a finite number > 0, found {lr}"));
    }
    if !(weight_decay.is_finite() && weight_decay >= 0.0) {
        return bad(
            "weight_decay",
            format!("must be a finite number ≥ 0, found {weight_decay}"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `config.json` as versions before the nested configs wrote it (this one by the
    /// `forget_cub` example).
    const FLAT: &str = r#"{
      "seed": 0, "tasks": 4, "forget_per_task": 10, "method": "gs-lora",
      "replay": {"kind": "fraction", "value": 0.5}, "epochs": 10, "batch_size": 32,
      "rank": 4, "lora_alpha": 2.0, "lr": 0.01, "min_lr": 0.00001, "weight_decay": 0.05,
      "bnd": 15.0, "beta": [0.1], "alpha": 0.0003, "alpha_warmup_epochs": 2, "big_alpha": 0.5,
      "bnd_pro": 12.0, "pro_forget_weight": 0.02, "pro_retain_weight": 0.1
    }"#;

    /// Every flat field lands in its nested config, so a run directory of an earlier version
    /// resumes (its settings compare equal; without `forget_fraction`, the replay draw it ran
    /// with; without `forget_loss`, the cross-entropy); the nested form round-trips. Catches a flat field
    /// dropped or sent to the wrong place, and a nested config that does not read back.
    #[test]
    fn flat_config_files_of_earlier_versions_still_read() {
        let old = ForgetConfig::from_json(FLAT).expect("flat config");
        let expected = ForgetConfig {
            forget_per_task: 10,
            replay: Replay::Fraction(0.5),
            bnd: Some(15.0),
            bnd_per_sample: false,
            beta: vec![0.1],
            lora: LoraConfig::new().with_rank(4).with_lora_alpha(2.0),
            group_lasso: GroupLassoConfig::new()
                .with_weight(3e-4)
                .with_warmup_epochs(2)
                .with_warmup_weight(Some(0.5)),
            prototype: Some(
                PrototypeLossConfig::new()
                    .with_bound(12.0)
                    .with_forget_weight(0.02)
                    .with_retain_weight(0.1),
            ),
            eval_split: EvalSplit::Validation,
            forget_fraction: None,
            min_replay: 0,
            forget_loss: Some(ForgetLoss::CrossEntropy),
            ..ForgetConfig::default()
        };
        assert_eq!(old, expected);
        // Today's default (the method's form) reads back as itself, not as the earlier files'.
        let today = serde_json::to_string(&ForgetConfig::default()).expect("serialise");
        assert_eq!(
            ForgetConfig::from_json(&today).expect("today's config"),
            ForgetConfig::default()
        );
        let nested = serde_json::to_string(&expected).expect("serialise");
        assert!(nested.contains("\"group_lasso\"") && !nested.contains("\"big_alpha\""));
        let back = ForgetConfig::from_json(&nested).expect("nested config");
        assert_eq!(back, expected);
        let broken = FLAT.replace("\"alpha\": 0.0003,", "");
        assert!(ForgetConfig::from_json(&broken).is_err());
    }

    /// A named form or prototype loss is the run's whatever the method and replay; with
    /// none, GS-LoRA++ with a few-shot replay and the per-sample bound takes the log-odds form
    /// and `w_r` 10 together, and every other method, replay or bound the cross-entropy and
    /// the official prototype loss (the batch mean has no other form); a form other than the
    /// cross-entropy under the batch mean is refused by name. `few_shot` gives the forget
    /// classes `k` images too. Catches the method's form or `w_r` given to another method or
    /// replay, kept under the batch mean, or resolved apart from each other.
    #[test]
    fn the_forgetting_form_is_the_methods_unless_named() {
        for method in MethodKind::ALL {
            for (replay, per_sample) in [
                (Replay::FewShot(4), true),
                (Replay::FewShot(4), false),
                (Replay::Stratified(0.1), true),
                (Replay::GroupFewShot(4), true),
            ] {
                let config = |forget_loss| ForgetConfig {
                    method,
                    replay,
                    bnd_per_sample: per_sample,
                    forget_loss,
                    ..ForgetConfig::default()
                };
                let own = match (method, replay, per_sample) {
                    (MethodKind::GsLoraPlusPlus, Replay::FewShot(_), true) => {
                        (ForgetLoss::LogOdds, FEW_SHOT_RETAIN_WEIGHT)
                    }
                    _ => (ForgetLoss::CrossEntropy, 0.0),
                };
                let case = format!("{method}, {replay:?}, per sample {per_sample}");
                let auto = config(None);
                let found = (auto.forget_form(), auto.prototype_for(2).retain_weight);
                assert_eq!(found, own, "{case}");
                auto.validate().expect("the method's form is valid");
                let named = ForgetConfig {
                    prototype: Some(PrototypeLossConfig::new().with_retain_weight(0.5)),
                    ..auto
                };
                assert_eq!(named.prototype_for(0).retain_weight, 0.5, "{case}");
                let named = config(Some(ForgetLoss::Unlikelihood));
                assert_eq!(named.forget_form(), ForgetLoss::Unlikelihood, "{case}");
                let refused = named.validate().map_err(|err| err.to_string());
                assert_eq!(refused.is_err(), !per_sample, "{case}: {refused:?}");
                if let Err(err) = refused {
                    assert!(err.contains("forget_loss"), "{err}");
                }
            }
        }
        let few = ForgetConfig {
            method: MethodKind::GsLoraPlusPlus,
            ..ForgetConfig::default()
        }
        .few_shot(4);
        assert_eq!(
            (few.replay, few.forget_fraction, few.forget_form()),
            (Replay::FewShot(4), None, ForgetLoss::LogOdds)
        );
        let settings = few.run_settings();
        assert_eq!(
            (
                settings.forget_loss,
                settings.prototype.map(|p| p.retain_weight)
            ),
            (Some(ForgetLoss::LogOdds), Some(FEW_SHOT_RETAIN_WEIGHT)),
            "a run records the pair it ran"
        );
    }

    /// Only GS-LoRA with a few-shot replay is told that GS-LoRA++ is the few-shot method.
    #[test]
    fn only_gs_lora_with_a_few_shot_replay_gets_the_note() {
        for method in [
            MethodKind::GsLora,
            MethodKind::GsLoraPlusPlus,
            MethodKind::Lora,
        ] {
            for replay in [Replay::FewShot(4), Replay::Stratified(0.1)] {
                let config = ForgetConfig {
                    method,
                    replay,
                    ..ForgetConfig::default()
                };
                let note = config.few_shot_note();
                let expected = method == MethodKind::GsLora && replay == Replay::FewShot(4);
                assert_eq!(note.is_some(), expected, "{method}, {replay:?}");
                if let Some(note) = note {
                    assert!(note.contains("4 replayed images") && note.contains("gs-lora++"));
                }
            }
        }
    }

    /// Task `t` takes entry `t` of the per-task forget weights, later tasks the last entry,
    /// every task the single weight when the list is empty; a negative entry is refused by
    /// name.
    #[test]
    fn the_prototype_forget_weight_follows_the_per_task_list() {
        let single = ForgetConfig::default();
        assert_eq!(single.prototype_for(3).forget_weight, 0.01);
        let listed = ForgetConfig {
            prototype_forget_weights: vec![0.015, 0.06, 0.025, 0.012],
            ..ForgetConfig::default()
        };
        let weights: Vec<f64> = (0..6)
            .map(|t| listed.prototype_for(t).forget_weight)
            .collect();
        assert_eq!(weights, [0.015, 0.06, 0.025, 0.012, 0.012, 0.012]);
        assert_eq!(listed.prototype_for(1).bound, single.prototype_loss().bound);
        let bad = ForgetConfig {
            prototype_forget_weights: vec![0.01, -1.0],
            ..ForgetConfig::default()
        };
        let text = bad.validate().expect_err("negative").to_string();
        assert!(
            text.contains("prototype_forget_weights") && text.contains("-1"),
            "{text}"
        );
    }
}
