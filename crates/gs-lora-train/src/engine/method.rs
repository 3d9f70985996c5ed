//! What the engine asks of a forgetting method (GS-LoRA, GS-LoRA++; the baselines plug in the
//! same way): which parameters train, the loss of a step, what follows each optimiser step and
//! what ends a task.

use std::path::Path;

use burn::module::ParamId;
use burn::optim::{GradientsParams, ModuleOptimizer};

use super::family::Family;
use super::loss::LossTerms;
use super::sampling::{Pair, TaskSamples};
use super::schedule::Task;
use crate::config::ForgetConfig;
use crate::error::Result;

/// Norms of a task's adapter groups before merging, and the groups left exactly zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdapterGroups {
    /// Norm of each group.
    pub norms: Vec<f64>,
    /// Groups whose adapters are exactly zero.
    pub zero: Vec<usize>,
}

/// How an epoch pairs a task's batches (PROTOCOL §0.5); every step gets one remaining and one
/// forget batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EpochPlan {
    /// One pass over the remaining-class batches, the forget batches cycled (GS-LoRA).
    #[default]
    Retain,
    /// One pass over the forget batches, the remaining batches cycled (LwF, DER, FDR).
    Forget,
    /// One pass over the forget and remaining samples together: `⌈(n_f + n_r) / B⌉` steps,
    /// each batch split between the two in proportion to their sizes (at least one of each),
    /// both cycled; the official concatenated loader of L2, EWC and MAS, stratified.
    Joint,
    /// A pass over the forget batches alone (when `forget`), then one over the remaining
    /// batches alone: each step sees one group ([`Method::group_loss`]; SCRUB's max and min
    /// passes). Not cycled up to `min_steps`.
    Separate {
        /// Whether the epoch starts with the pass over the forget batches.
        forget: bool,
    },
}

/// One of a task's two groups of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// The remaining classes.
    Retain,
    /// The classes to forget.
    Forget,
}

/// A forgetting method: what trains during a task, the loss of a step, what follows each
/// optimiser step and what ends a task.
pub trait Method<F: Family> {
    /// Prepares `model` for `task`, which trains on `samples` and draws from `seed`: fresh
    /// trainable parameters, and whatever the loss needs.
    ///
    /// # Errors
    /// A model that cannot be prepared.
    fn begin_task(
        &mut self,
        family: &F,
        model: &mut F::Model,
        task: &Task,
        samples: &TaskSamples,
        seed: u64,
    ) -> Result<()>;

    /// The parameters the optimiser updates.
    fn trainable(&self, model: &F::Model) -> Vec<ParamId>;

    /// The loss of one step of `epoch` on a remaining and a forget batch.
    ///
    /// # Errors
    /// A failing forward pass or loss.
    fn loss(
        &self,
        family: &F,
        model: &F::Model,
        batches: Pair<F::Batch>,
        epoch: usize,
    ) -> Result<LossTerms>;

    /// Sees (and may change) each step's gradients before the optimiser uses them (nothing
    /// by default).
    ///
    /// # Errors
    /// Gradients that cannot be read.
    fn observe_gradients(&mut self, _model: &F::Model, _grads: &mut GradientsParams) -> Result<()> {
        Ok(())
    }

    /// Runs after each optimiser step of `epoch` taken at learning rate `lr` (nothing by
    /// default).
    ///
    /// # Errors
    /// A model that cannot be updated.
    fn after_step(&mut self, _model: &mut F::Model, _lr: f64, _epoch: usize) -> Result<()> {
        Ok(())
    }

    /// Ends the task, leaving the model the next task starts from; reports the adapter groups.
    ///
    /// # Errors
    /// A model that cannot be updated.
    fn end_task(&mut self, model: &mut F::Model) -> Result<AdapterGroups>;

    /// The loss of a step that sees one group's batch alone ([`EpochPlan::Separate`]);
    /// refused by default.
    ///
    /// # Errors
    /// A method without single-group steps, a failing forward pass or loss.
    fn group_loss(
        &self,
        _family: &F,
        _model: &F::Model,
        _group: Group,
        _batch: F::Batch,
        _epoch: usize,
    ) -> Result<LossTerms> {
        Err(crate::error::TrainError::InvalidSetting(
            "this method trains on paired batches only".into(),
        ))
    }

    /// How epoch `epoch` pairs the task's batches ([`EpochPlan::Retain`] by default).
    fn epoch_plan(&self, _epoch: usize) -> EpochPlan {
        EpochPlan::Retain
    }

    /// The optimiser of a task (AdamW as the official code builds it, by default).
    fn optimizer(&self, config: &ForgetConfig) -> ModuleOptimizer {
        super::task::adamw(config.weight_decay)
    }

    /// The learning rate of epoch `epoch` (`config`'s cosine schedule by default).
    fn lr(&self, config: &ForgetConfig, epoch: usize) -> f64 {
        config.lr_at(epoch)
    }

    /// Runs after the last step of epoch `epoch` (nothing by default).
    ///
    /// # Errors
    /// A model that cannot be read or updated.
    fn end_epoch(&mut self, _model: &F::Model, _epoch: usize) -> Result<()> {
        Ok(())
    }

    /// Writes what the method carries into later tasks (importance anchors, a teacher) into
    /// the folder `dir`, after a task ends (nothing by default).
    ///
    /// # Errors
    /// File errors.
    fn save_state(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }

    /// Reads back what [`save_state`](Self::save_state) wrote in `dir`, when a run resumes
    /// with `model` read from the same task's checkpoint (nothing by default).
    ///
    /// # Errors
    /// A missing or unreadable state.
    fn load_state(&mut self, _model: &F::Model, _dir: &Path) -> Result<()> {
        Ok(())
    }
}

impl<F: Family, M: Method<F> + ?Sized> Method<F> for Box<M> {
    fn begin_task(
        &mut self,
        family: &F,
        model: &mut F::Model,
        task: &Task,
        samples: &TaskSamples,
        seed: u64,
    ) -> Result<()> {
        (**self).begin_task(family, model, task, samples, seed)
    }

    fn trainable(&self, model: &F::Model) -> Vec<ParamId> {
        (**self).trainable(model)
    }

    fn loss(
        &self,
        family: &F,
        model: &F::Model,
        batches: Pair<F::Batch>,
        epoch: usize,
    ) -> Result<LossTerms> {
        (**self).loss(family, model, batches, epoch)
    }

    fn observe_gradients(&mut self, model: &F::Model, grads: &mut GradientsParams) -> Result<()> {
        (**self).observe_gradients(model, grads)
    }

    fn after_step(&mut self, model: &mut F::Model, lr: f64, epoch: usize) -> Result<()> {
        (**self).after_step(model, lr, epoch)
    }

    fn end_task(&mut self, model: &mut F::Model) -> Result<AdapterGroups> {
        (**self).end_task(model)
    }

    fn group_loss(
        &self,
        family: &F,
        model: &F::Model,
        group: Group,
        batch: F::Batch,
        epoch: usize,
    ) -> Result<LossTerms> {
        (**self).group_loss(family, model, group, batch, epoch)
    }

    fn epoch_plan(&self, epoch: usize) -> EpochPlan {
        (**self).epoch_plan(epoch)
    }

    fn optimizer(&self, config: &ForgetConfig) -> ModuleOptimizer {
        (**self).optimizer(config)
    }

    fn lr(&self, config: &ForgetConfig, epoch: usize) -> f64 {
        (**self).lr(config, epoch)
    }

    fn end_epoch(&mut self, model: &F::Model, epoch: usize) -> Result<()> {
        (**self).end_epoch(model, epoch)
    }

    fn save_state(&self, dir: &Path) -> Result<()> {
        (**self).save_state(dir)
    }

    fn load_state(&mut self, model: &F::Model, dir: &Path) -> Result<()> {
        (**self).load_state(model, dir)
    }
}
