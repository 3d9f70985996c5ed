//! L2, EWC and MAS (PROTOCOL §3): every parameter but the head, trained on the forget samples
//! relabelled ([`ForgetLabels`](crate::ForgetLabels)) together with the remaining ones, while
//! the [`Anchors`] hold the parameters near where earlier tasks found them:
//!
//! `L = (n_f · CE(F′) + n_r · CE(R)) / (n_f + n_r) + λ · Σ_k Σ_p Ω_kp (θ_p − θ*_kp)²`,
//!
//! the official cross-entropy over the concatenated batch (`--replay`), each batch holding
//! forget and remaining samples in proportion ([`EpochPlan::Joint`]).
//!
//! A task's term is added as it starts: `θ*` the parameters the task finds, `Ω` measured over
//! the task's remaining-class training samples (the official code measures the first term on
//! a fresh draw of the same size and later ones on the whole remaining split, which
//! `baseline.importance_full_split` selects). The terms are written beside each checkpoint,
//! so a resumed run pays the same penalty.

use std::path::Path;

use burn::module::ParamId;
use gs_lora_core::lora::derive_seed;

use super::anchors::{Anchors, importance};
use super::full_model::FullModel;
use super::relabel::{RelabelRule, Relabeller};
use crate::config::{ForgetConfig, MethodKind};
use crate::engine::{
    AdapterGroups, Criterion, EpochPlan, Family, LossTerms, LossWeights, Method, Objective, Pair,
    ParamSet, Task, TaskSamples, joint_batch_sizes,
};
use crate::error::Result;

/// L2, EWC or MAS with the weights of a run's config.
pub struct Anchored {
    base: FullModel,
    config: ForgetConfig,
    anchors: Anchors,
    relabel: Relabeller,
    /// The remaining and forget shares of a batch in the running task.
    shares: Pair<f64>,
}

impl Anchored {
    /// The method `config.method` (L2, EWC or MAS) with the weights of `config`.
    pub fn new(config: &ForgetConfig) -> Self {
        Self {
            base: FullModel::new(config),
            config: config.clone(),
            anchors: Anchors::default(),
            relabel: Relabeller::new(RelabelRule::Forget(config.baseline.forget_labels)),
            shares: Pair {
                retain: 0.5,
                forget: 0.5,
            },
        }
    }

    /// `λ` of the method.
    fn lambda(&self) -> f64 {
        let baseline = &self.config.baseline;
        match self.config.method {
            MethodKind::Ewc => baseline.ewc,
            MethodKind::Mas => baseline.mas,
            _ => baseline.l2,
        }
    }

    /// The loss of one step on a remaining and a forget batch of `objective`'s family.
    ///
    /// # Errors
    /// A failing forward pass or loss, or a family that cannot relabel.
    pub fn loss_of<O: Objective>(
        &self,
        objective: &O,
        model: &O::Model,
        batches: Pair<O::Batch>,
    ) -> Result<LossTerms> {
        let retain = objective.criterion(model, batches.retain)?.loss()?;
        let mut draw = |label| self.relabel.draw(label);
        let forget = objective
            .criterion(model, batches.forget)?
            .relabelled_loss(&mut draw)?;
        let penalty = self.anchors.penalty(model)?;
        let weights = LossWeights {
            retain: self.shares.retain,
            beta: self.shares.forget,
            penalty: self.lambda(),
        };
        Ok(LossTerms::new(retain, forget, penalty, None, weights))
    }
}

impl<F: Family> Method<F> for Anchored {
    fn begin_task(
        &mut self,
        family: &F,
        model: &mut F::Model,
        task: &Task,
        samples: &TaskSamples,
        seed: u64,
    ) -> Result<()> {
        Method::<F>::begin_task(&mut self.base, family, model, task, samples, seed)?;
        self.relabel.begin_task(task, derive_seed(seed, 8))?;
        let batch = self.config.batch_size;
        let sizes = joint_batch_sizes(batch, samples.retain.len(), samples.forget.len());
        let total = (sizes.retain + sizes.forget) as f64;
        self.shares = Pair {
            retain: sizes.retain as f64 / total,
            forget: sizes.forget as f64 / total,
        };
        let whole: Vec<usize>;
        let indices = match task.index > 0 && self.config.baseline.importance_full_split {
            true => {
                whole = task
                    .retain
                    .iter()
                    .flat_map(|&c| family.samples_of(c))
                    .collect();
                &whole
            }
            false => &samples.retain,
        };
        let ids = Method::<F>::trainable(&self.base, model);
        let omega = importance(
            family,
            model,
            self.config.method,
            &ids,
            (task, indices),
            (batch, derive_seed(seed, 9)),
        )?;
        self.anchors.add(&ParamSet::of(model, &ids), &omega)
    }

    fn trainable(&self, model: &F::Model) -> Vec<ParamId> {
        Method::<F>::trainable(&self.base, model)
    }

    fn loss(
        &self,
        family: &F,
        model: &F::Model,
        batches: Pair<F::Batch>,
        _: usize,
    ) -> Result<LossTerms> {
        self.loss_of(family.objective(), model, batches)
    }

    fn end_task(&mut self, model: &mut F::Model) -> Result<AdapterGroups> {
        Method::<F>::end_task(&mut self.base, model)
    }

    fn epoch_plan(&self, _: usize) -> EpochPlan {
        EpochPlan::Joint
    }

    fn save_state(&self, dir: &Path) -> Result<()> {
        self.anchors.write(dir)
    }

    fn load_state(&mut self, model: &F::Model, dir: &Path) -> Result<()> {
        self.anchors = Anchors::read(model, dir)?;
        Ok(())
    }
}
