//! What the engine asks of a model family (classification, detection): how it trains, its data,
//! its scores and its checkpoints.

use std::path::Path;

use burn::module::ParamId;
use burn::tensor::Tensor;
use gs_lora_core::LoraModel;
use gs_lora_core::loss::Prototypes;

use super::sampling::Pair;
use super::schedule::Task;
use crate::config::ForgetLoss;
use crate::error::Result;
use crate::membership::MiaEfficacy;
use crate::report::Scores;

/// How a model family is trained, independent of any data: the criterion of a batch and the
/// pairs its prototype loss compares.
pub trait Objective {
    /// The model, with adapters, on an autodiff device.
    type Model: LoraModel;
    /// Training samples as model inputs and targets.
    type Batch: Clone;
    /// A batch's forward pass with its targets, from which losses are read.
    type Criterion: Criterion;

    /// `model`'s forward pass on `batch`, matched to its targets.
    ///
    /// # Errors
    /// A failing forward pass.
    fn criterion(&self, model: &Self::Model, batch: Self::Batch) -> Result<Self::Criterion>;

    /// The `(embeddings, prototypes)` of the forget and the remaining criterion, each `[M, D]`,
    /// or `None` when a batch has nothing to compare (no matched object). `prototypes` are the
    /// ones [`Family::prototypes`] computed, if any.
    ///
    /// # Errors
    /// A label without a prototype.
    fn prototype_pairs(
        &self,
        model: &Self::Model,
        criteria: Pair<&Self::Criterion>,
        prototypes: Option<&Prototypes>,
    ) -> Result<Option<Pair<(Tensor<2>, Tensor<2>)>>>;
}

/// A model family on its data: training samples and batches, its objective, its score, its
/// checkpoints, and (for GS-LoRA++) its class prototypes.
pub trait Family {
    /// The model, with adapters, on an autodiff device.
    type Model: LoraModel;
    /// Training samples as model inputs and targets.
    type Batch: Clone;
    /// How the model trains.
    type Objective: Objective<Model = Self::Model, Batch = Self::Batch>;

    /// The score's name in logs and tables (`acc`, `AP`).
    const METRIC: &'static str;

    /// The model labels the schedule draws its tasks from.
    fn classes(&self) -> Vec<usize>;

    /// The training samples that show `class`.
    fn samples_of(&self, class: usize) -> Vec<usize>;

    /// The training samples `indices` as a batch supervised on `classes`, with the training
    /// augmentation the family applies (if any) drawn from `seed`.
    ///
    /// # Errors
    /// Samples that cannot become a batch.
    fn batch(&self, indices: &[usize], classes: &[usize], seed: u64) -> Result<Self::Batch>;

    /// How the model trains.
    fn objective(&self) -> &Self::Objective;

    /// `model`'s scores on the class groups of `task`, on the validation split.
    ///
    /// # Errors
    /// A failing forward pass, or a group that cannot be scored (no validation sample).
    fn evaluate(&self, model: &Self::Model, task: &Task) -> Result<Scores>;

    /// The prototypes of `classes` over the training samples `indices` with `model` as it is,
    /// or `None` where the family reads its prototypes from the model during training.
    ///
    /// # Errors
    /// A failing forward pass.
    fn prototypes(
        &self,
        model: &Self::Model,
        indices: &[usize],
        classes: &[usize],
    ) -> Result<Option<Prototypes>>;

    /// The parameters the full-model methods train: every one but the output head, which
    /// the official baselines keep frozen (PROTOCOL §3, §4), and never a LoRA factor.
    fn full_model_params(&self, model: &Self::Model) -> Vec<ParamId>;

    /// The parameters of the model's lower half, which LIRF trains: the embeddings and the
    /// first `⌊depth/2⌋` blocks, never a LoRA factor.
    ///
    /// # Errors
    /// A family whose models have no such split (detection).
    fn lower_half_params(&self, model: &Self::Model) -> Result<Vec<ParamId>>;

    /// The membership-inference attack on `model` after `task` (see
    /// [`membership`](crate::membership)), drawing its subsets from `seed`; `None` where the
    /// family has no per-sample class distribution to attack (detection).
    ///
    /// # Errors
    /// A failing forward pass, or too few samples to train the attack.
    fn membership_attack(
        &self,
        model: &Self::Model,
        task: &Task,
        seed: u64,
    ) -> Result<Option<MiaEfficacy>>;

    /// The merged model saved at `path` (a checkpoint of this run), with fresh adapters.
    ///
    /// # Errors
    /// A missing or unreadable checkpoint.
    fn load(&self, path: &Path) -> Result<Self::Model>;

    /// Saves the merged `model` after `task` at `path`.
    ///
    /// # Errors
    /// File errors.
    fn save(&self, model: &Self::Model, task: &Task, path: &Path) -> Result<()>;
}

/// The losses a method reads from one batch's forward pass.
pub trait Criterion {
    /// The supervised loss of the batch (the retention loss on remaining classes), `[1]`.
    ///
    /// # Errors
    /// Malformed targets.
    fn loss(&self) -> Result<Tensor<1>>;

    /// The bounded forgetting loss of the form `loss`, `relu(BND − ·)` on the classification
    /// part, `[1]`: on the batch mean, or on each sample and then averaged when `per_sample`;
    /// `bound` `None` is the family's default ([`ForgetConfig::bnd`](crate::ForgetConfig::bnd)).
    ///
    /// # Errors
    /// A non-finite bound, no bound where the family has no default, or `per_sample` or a
    /// `loss` the family does not have.
    fn bounded_loss(
        &self,
        bound: Option<f64>,
        per_sample: bool,
        loss: ForgetLoss,
    ) -> Result<Tensor<1>>;

    /// The supervised loss of the batch with each sample's label `y` replaced by
    /// `relabel(y)` (random labelling), `[1]`.
    ///
    /// # Errors
    /// A new label outside the model's classes, or a family that cannot relabel its targets.
    fn relabelled_loss(&self, relabel: &mut dyn FnMut(usize) -> usize) -> Result<Tensor<1>>;

    /// The training logits the loss reads (a CosFace head's margin on each sample's label),
    /// one row per prediction: `[N, C]` for `N` images, or `N` queries of a detector.
    fn logits(&self) -> Tensor<2>;

    /// What DER holds to its teacher: a classifier's embeddings `[N, D]` (PROTOCOL §3), a
    /// detector's class logits `[N, C]` (§4).
    fn features(&self) -> Tensor<2>;

    /// The hidden tokens after the model's lower half `[N, T, D]`, which LIRF's attention
    /// transfer compares.
    ///
    /// # Errors
    /// A family whose models have no such split (detection).
    fn middle(&self) -> Result<Tensor<3>>;
}
