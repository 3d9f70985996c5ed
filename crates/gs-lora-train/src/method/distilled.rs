//! LwF, DER, DER++ and FDR (PROTOCOL §3; LIRF's loss is in [`lirf`](super::lirf)): every parameter but the head, trained on the forget
//! samples relabelled ([`ForgetLabels`](crate::ForgetLabels)) while a frozen teacher — the
//! model as the first task found it, kept for every task as the official code does — holds the
//! remaining samples' outputs in place. An epoch is one pass over the forget batches, the
//! remaining ones cycled ([`EpochPlan::Forget`]). With `F′` the relabelled forget batch, `R`
//! the remaining batch, `s`/`t` student and teacher, `z` logits and `e` embeddings:
//!
//! - LwF: `CE(F′) + w_kd · KD_T(z_s(R), z_t(R)) + λ_r · CE(R)` with
//!   `KD_T = mean_i Σ_c −softmax(z_t/T)_c · log softmax(z_s/T)_c`, the distillation LwF
//!   defines (the official one is always 0: it takes the log of a log-probability, PROTOCOL
//!   §6.6);
//! - DER: `CE(F′) + λ · Σ ‖e_s(R) − e_t(R)‖²` over the batch;
//! - DER++: DER `+ λ⁺ · CE(R)` (the official code reads the next remaining batch for this
//!   term; here it is the step's remaining batch);
//! - FDR: `CE(F′) + λ · mean_i ‖z_s(R_i) − z_t(R_i)‖₂` (with `10⁻¹²` under the root, so that
//!   the gradient is 0, not NaN, where student and teacher agree, as PyTorch's norm).
//!
//! The teacher runs with the model's dropout (the official teachers run in eval mode; the
//! same wherever the model has none, as the embedded and DINOv2 models). It is written beside
//! each checkpoint, so a resumed run distils the same teacher.

use std::path::Path;

use burn::module::{Module, ParamId};
use burn::tensor::Tensor;
use burn::tensor::activation::{log_softmax, softmax};
use gs_lora_core::lora::derive_seed;

use super::full_model::FullModel;
use super::lirf::lirf_loss;
use super::relabel::{RelabelRule, Relabeller};
use crate::config::{ForgetConfig, MethodKind};
use crate::engine::{
    AdapterGroups, Criterion, EpochPlan, Family, LossTerms, LossWeights, Method, Objective, Pair,
    ParamSet, Task, TaskSamples, path_params,
};
use crate::error::{Result, TrainError};

/// The teacher's file in a method-state folder.
const TEACHER_FILE: &str = "teacher.safetensors";

/// `mean_i Σ_c −softmax(t_i/T)_c · log softmax(s_i/T)_c` of student logits `s` and teacher
/// logits `t`, both `[N, C]`: LwF's distillation, `[1]`.
pub fn softened_cross_entropy(
    student: Tensor<2>,
    teacher: Tensor<2>,
    temperature: f64,
) -> Tensor<1> {
    let target = softmax(teacher.div_scalar(temperature), 1);
    let log_p = log_softmax(student.div_scalar(temperature), 1);
    (target * log_p).sum_dim(1).mean().neg()
}

/// `Σ (s − t)²` over every entry of `[N, D]` student and teacher features: DER's term, `[1]`.
pub fn squared_distance(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    let gap = student - teacher;
    (gap.clone() * gap).sum()
}

/// `mean_i ‖s_i − t_i‖₂` over the rows of `[N, C]` student and teacher logits: FDR's term,
/// `[1]` (`10⁻¹²` under each root keeps its gradient finite where the rows agree).
pub fn mean_distance(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    let gap = student - teacher;
    (gap.clone() * gap)
        .sum_dim(1)
        .add_scalar(1e-12)
        .sqrt()
        .mean()
}

/// A frozen copy of `model`: its values detached, nothing trainable.
pub(super) fn frozen_copy<M: Module>(model: &M) -> Result<M> {
    Ok(all_params(model).restore(model.clone())?.no_grad())
}

/// The teacher, which the first task's start makes.
///
/// # Errors
/// A loss asked for before any task started.
pub(super) fn started<M>(teacher: Option<&M>) -> Result<&M> {
    teacher.ok_or_else(|| TrainError::InvalidSetting("no task has started: no teacher yet".into()))
}

/// Every parameter of `model`, detached.
fn all_params<M: Module>(model: &M) -> ParamSet {
    let ids: Vec<ParamId> = path_params(model).into_iter().map(|p| p.id).collect();
    ParamSet::of(model, &ids)
}

/// Writes `teacher` (if any) into the method-state folder `dir`.
pub(super) fn write_teacher<M: Module>(teacher: Option<&M>, dir: &Path) -> Result<()> {
    match teacher {
        Some(teacher) => all_params(teacher).write(&dir.join(TEACHER_FILE)),
        None => Ok(()),
    }
}

/// The teacher [`write_teacher`] left in `dir`, as a frozen model shaped as `model`.
pub(super) fn read_teacher<M: Module>(model: &M, dir: &Path) -> Result<M> {
    let device = path_params(model)
        .first()
        .map(|p| p.value.device())
        .ok_or_else(|| TrainError::Data("the model has no parameter to distil".into()))?;
    let teacher = ParamSet::read(&dir.join(TEACHER_FILE), &device)?;
    Ok(teacher.restore(model.clone())?.no_grad())
}

/// LwF, DER, DER++, FDR or LIRF with the weights of a run's config, distilling a teacher of
/// model type `M`.
pub struct Distilled<M> {
    base: FullModel,
    config: ForgetConfig,
    relabel: Relabeller,
    teacher: Option<M>,
    /// The running task's forget classes (LIRF distils the others).
    forget: Vec<usize>,
}

impl<M: Module> Distilled<M> {
    /// The method `config.method` (LwF, DER, DER++, FDR or LIRF) with the weights of `config`.
    pub fn new(config: &ForgetConfig) -> Self {
        Self {
            base: FullModel::new(config),
            config: config.clone(),
            relabel: Relabeller::new(RelabelRule::Forget(config.baseline.forget_labels)),
            teacher: None,
            forget: Vec::new(),
        }
    }

    /// The loss of one step of `model` against `teacher` on a remaining and a forget batch of
    /// `objective`'s family.
    ///
    /// # Errors
    /// A failing forward pass or loss, or a family that cannot relabel.
    pub fn loss_of<O: Objective<Model = M>>(
        &self,
        objective: &O,
        (model, teacher): (&M, &M),
        batches: Pair<O::Batch>,
    ) -> Result<LossTerms> {
        let mut draw = |label| self.relabel.draw(label);
        if self.config.method == MethodKind::Lirf {
            return lirf_loss(
                objective,
                (model, teacher),
                batches,
                &self.forget,
                &mut draw,
            );
        }
        let forget = objective
            .criterion(model, batches.forget)?
            .relabelled_loss(&mut draw)?;
        let student = objective.criterion(model, batches.retain.clone())?;
        let teacher = objective.criterion(teacher, batches.retain)?;
        let retain = student.loss()?;
        let b = &self.config.baseline;
        let weights = |retain, penalty| LossWeights {
            retain,
            beta: 1.0,
            penalty,
        };
        let (penalty, weights) = match self.config.method {
            MethodKind::Lwf => (
                softened_cross_entropy(student.logits(), teacher.logits().detach(), b.temperature),
                weights(b.lwf_retain, b.lwf_distill),
            ),
            MethodKind::Fdr => (
                mean_distance(student.logits(), teacher.logits().detach()),
                weights(0.0, b.fdr),
            ),
            MethodKind::DerPlusPlus => (
                squared_distance(student.features(), teacher.features().detach()),
                weights(b.der_plus_plus_retain, b.der_plus_plus),
            ),
            _ => (
                squared_distance(student.features(), teacher.features().detach()),
                weights(0.0, b.der),
            ),
        };
        Ok(LossTerms::new(retain, forget, penalty, None, weights))
    }
}

impl<F: Family> Method<F> for Distilled<F::Model> {
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
        self.forget = task.forget.clone();
        if self.teacher.is_none() {
            self.teacher = Some(frozen_copy(model)?);
        }
        Ok(())
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
        let teacher = started(self.teacher.as_ref())?;
        self.loss_of(family.objective(), (model, teacher), batches)
    }

    fn end_task(&mut self, model: &mut F::Model) -> Result<AdapterGroups> {
        Method::<F>::end_task(&mut self.base, model)
    }

    fn epoch_plan(&self, _: usize) -> EpochPlan {
        EpochPlan::Forget
    }

    fn save_state(&self, dir: &Path) -> Result<()> {
        write_teacher(self.teacher.as_ref(), dir)
    }

    fn load_state(&mut self, model: &F::Model, dir: &Path) -> Result<()> {
        self.teacher = Some(read_teacher(model, dir)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::engine::{matrix, scalar};

    /// Student logits `(0, ln 3)` and teacher `(ln 3, 0)` at `T = 1`: the teacher's
    /// distribution is (3/4, 1/4), the student's (1/4, 3/4), so `KD = −(¾ ln ¼ + ¼ ln ¾)`; at
    /// `T = 2` the logits halve first. Catches the temperature ignored or applied to one side,
    /// student and teacher swapped (the same here only at T where both are uniform), or the
    /// official log of a log-probability (NaN, then 0).
    #[test]
    fn lwf_distils_softened_teacher_probabilities() {
        let ln3 = 3f64.ln() as f32;
        let kd = |t| {
            scalar(softened_cross_entropy(
                matrix(1, &[0.0, ln3]),
                matrix(1, &[ln3, 0.0]),
                t,
            ))
        };
        let expected = -(0.75 * 0.25f64.ln() + 0.25 * 0.75f64.ln());
        assert!(
            (kd(1.0) - expected).abs() < 1e-5,
            "{} vs {expected}",
            kd(1.0)
        );
        // T = 2: softmax of (0, ln3/2) is (1/(1+√3), √3/(1+√3)), the teacher's the reverse.
        let (a, b) = (1.0 / (1.0 + 3f64.sqrt()), 3f64.sqrt() / (1.0 + 3f64.sqrt()));
        let expected = -(b * a.ln() + a * b.ln());
        assert!(
            (kd(2.0) - expected).abs() < 1e-5,
            "{} vs {expected}",
            kd(2.0)
        );
    }

    /// DER sums squared differences over batch and features; FDR averages the rows' Euclidean
    /// distances, with a finite gradient where they vanish. Rows (3, 4) and (0, 0) against
    /// zeros: DER 25, FDR (5 + 0) / 2. Catches DER averaged instead of summed, FDR squared or
    /// summed over rows.
    #[test]
    fn der_sums_squares_and_fdr_averages_row_distances() {
        let student = matrix(2, &[3.0, 4.0, 0.0, 0.0]);
        let zeros = matrix(2, &[0.0; 4]);
        assert!((scalar(squared_distance(student.clone(), zeros.clone())) - 25.0).abs() < 1e-5);
        assert!((scalar(mean_distance(student, zeros.clone())) - 2.5).abs() < 1e-5);

        let device = Device::default().autodiff();
        let same = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), &device)
            .require_grad();
        let loss = mean_distance(same.clone(), same.clone().detach());
        let mut grads = loss.backward();
        let grad = same
            .grad_remove(&mut grads)
            .expect("gradient")
            .try_into_vec_as::<f32>()
            .expect("f32");
        assert!(grad.iter().all(|g| g.is_finite()), "{grad:?}");
    }
}
