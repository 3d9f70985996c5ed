//! The records a run writes: per task (`results.json`) and per epoch (`curves.csv`).

use serde::{Deserialize, Serialize};

use super::Machine;
use crate::membership::MiaEfficacy;

/// A model's score (%) on the class groups of a task: top-1 accuracy for a classifier, COCO AP
/// for a detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// On the classes the task erases.
    pub forget: f64,
    /// On the classes that remain.
    pub retain: f64,
    /// On the classes erased by earlier tasks (`None` on the first task).
    pub old: Option<f64>,
    /// On the missing classes (the missing-class setting only).
    pub missing: Option<f64>,
    /// On the remaining and the missing classes together (the missing-class setting only).
    pub retain_and_missing: Option<f64>,
}

/// What one task achieved, as written to `results.json`. Scores are the model family's (top-1
/// accuracy or COCO AP, %); the file keeps the paper's `acc_*` keys for both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// 0-based task index.
    pub task: usize,
    /// Classes erased by the task.
    pub forget_classes: Vec<usize>,
    /// Score on the forget classes before the task.
    #[serde(rename = "acc_f_before")]
    pub forget_before: f64,
    /// Score on the remaining classes before the task.
    #[serde(rename = "acc_r_before")]
    pub retain_before: f64,
    /// Score on the forget classes after the task.
    #[serde(rename = "acc_f")]
    pub forget_after: f64,
    /// Score on the remaining classes after the task.
    #[serde(rename = "acc_r")]
    pub retain_after: f64,
    /// Score on classes erased by earlier tasks, `null` on the first task.
    #[serde(rename = "acc_o")]
    pub old_after: Option<f64>,
    /// Score on the missing classes after the task (the missing-class setting only; the
    /// official `acc_open`).
    #[serde(rename = "acc_m", default, skip_serializing_if = "Option::is_none")]
    pub missing_after: Option<f64>,
    /// Score on the remaining and missing classes together before the task (the official
    /// `remain_all`).
    #[serde(
        rename = "acc_rm_before",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub retain_and_missing_before: Option<f64>,
    /// Score on the remaining and missing classes together after the task.
    #[serde(rename = "acc_rm", default, skip_serializing_if = "Option::is_none")]
    pub retain_and_missing_after: Option<f64>,
    /// Harmonic mean of the forgetting drop and `acc_r`.
    pub h_mean: f64,
    /// Norm of each adapter group at the end of the task, before merging.
    pub group_norms: Vec<f64>,
    /// Groups whose adapters are exactly zero (left untouched by the task).
    pub zero_groups: Vec<usize>,
    /// Wall time of the task in seconds (training and evaluation).
    pub seconds: f64,
    /// Membership-inference attack efficacy on the forget classes' training samples after the
    /// task (%; classification only, see [`membership`](crate::membership)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mia: Option<MiaEfficacy>,
    /// Scalars the method trained in the task.
    #[serde(default)]
    pub trainable_params: usize,
    /// Peak resident memory of the process by the end of the task, in MiB (where the system
    /// reports it: Linux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// The machine the task ran on (absent in runs made before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<Machine>,
}

/// One epoch's mean losses, a row of `curves.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Task index.
    pub task: usize,
    /// Epoch within the task.
    pub epoch: usize,
    /// Learning rate of the epoch.
    pub lr: f64,
    /// Mean total loss.
    pub loss: f64,
    /// Mean retention loss.
    pub retain: f64,
    /// Mean forgetting loss (before `β`).
    pub forget: f64,
    /// Mean penalty of the method (before its weight): the group lasso of the adapter
    /// methods, the anchors or the distillation of the baselines (`sparsity` in earlier
    /// versions' files).
    #[serde(alias = "sparsity")]
    pub penalty: f64,
    /// Mean prototype loss (GS-LoRA++; weights included).
    pub prototype: f64,
}
