//! One task: scores before, the method's epochs (a remaining and a forget batch per step, AdamW
//! on the method's parameters with the cosine learning rate), the method's end of task, scores
//! after.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use gs_lora_core::lora::derive_seed;
use gs_lora_core::{TaskMetrics, seed_dropout};

use super::clip::clip_grad_norm;
use super::family::Family;
use super::loss::LossValues;
use super::method::{AdapterGroups, EpochPlan, Group, Method};
use super::params::param_count;
use super::peak_memory::PeakMemory;
use super::sampling::{Pair, TaskSamples, shuffled_batches, task_seed};
use super::schedule::Task;
use crate::config::ForgetConfig;
use crate::error::{Result, TrainError};
use crate::progress::Progress;
use crate::report::{EpochRecord, Machine, Scores, TaskResult};

/// Runs `task` with `method` on `model`: its result and its epochs' mean losses.
///
/// # Errors
/// The family's and the method's errors, or a non-finite loss.
pub(crate) fn run_task<F: Family, M: Method<F>>(
    family: &F,
    method: &mut M,
    model: &mut F::Model,
    task: &Task,
    samples: &TaskSamples,
    config: &ForgetConfig,
) -> Result<(TaskResult, Vec<EpochRecord>)> {
    let started = Instant::now();
    let memory = PeakMemory::start();
    let metric = F::METRIC;
    let before = family.evaluate(model, task)?;
    eprintln!(
        "task {}: forgetting {} classes; before: {metric}_f {:.2}%, {metric}_r {:.2}%",
        task.index,
        task.forget.len(),
        before.forget,
        before.retain
    );
    let seed = task_seed(config.seed, task.index);
    method.begin_task(family, model, task, samples, seed)?;
    let trainable_params = param_count(model, &method.trainable(model));
    let curves = train_task(family, method, model, task, samples, config)?;
    let groups = method.end_task(model)?;
    let after = family.evaluate(model, task)?;
    let mia = family.membership_attack(model, task, derive_seed(seed, 7))?;
    let result = TaskResult {
        mia,
        trainable_params,
        peak_rss_mib: memory.mib(),
        machine: Some(Machine::detect(&model.devices())),
        ..task_result(task, before, after, groups, started)
    };
    let missing = match (after.missing, after.retain_and_missing) {
        (Some(m), Some(rm)) => format!(", {metric}_m {m:.2}%, {metric}_rm {rm:.2}%"),
        _ => String::new(),
    };
    let mia = match result.mia {
        Some(mia) => format!(
            ", MIA {:.1}% (attack accuracy {:.1}%)",
            mia.confidence, mia.attack_accuracy
        ),
        None => String::new(),
    };
    eprintln!(
        "task {}: after: {metric}_f {:.2}%, {metric}_r {:.2}%, {metric}_o {}{missing}, H {:.2}{mia} ({:.1}s)",
        task.index,
        after.forget,
        after.retain,
        after.old.map_or("-".into(), |a| format!("{a:.2}%")),
        result.h_mean,
        result.seconds
    );
    Ok((result, curves))
}

/// The epochs of one task. An epoch is one pass over the batches the method's [`EpochPlan`]
/// names (by default the remaining-class batches, each paired with the next forget batch,
/// cycled as the official code), cycled up to `⌈min_steps / epochs⌉` steps when that is more;
/// then the method's loss, its
/// gradients (clipped by their global norm when `clip_grad_norm` says), AdamW on the method's
/// parameters at the epoch's learning rate, and the method's post-step. Each
/// epoch seeds the dropout masks from the run's seed, so a resumed run draws the same. Returns
/// the epochs' mean losses.
///
/// # Errors
/// The method's errors, or a non-finite loss (naming task, epoch and step).
pub(crate) fn train_task<F: Family, M: Method<F>>(
    family: &F,
    method: &mut M,
    model: &mut F::Model,
    task: &Task,
    samples: &TaskSamples,
    config: &ForgetConfig,
) -> Result<Vec<EpochRecord>> {
    let t = task.index;
    let seed = task_seed(config.seed, t);
    let mut optimizer = method.optimizer(config);
    let mut curves = Vec::with_capacity(config.epochs);
    for epoch in 0..config.epochs {
        let lr = method.lr(config, epoch);
        let epoch_seed = derive_seed(seed, 100 + epoch as u64);
        seed_dropout(&model.devices(), derive_seed(epoch_seed, 3));
        let plan = method.epoch_plan(epoch);
        let floor = config.min_steps.div_ceil(config.epochs);
        let schedule = epoch_steps(plan, samples, (config.batch_size, floor), epoch_seed);
        let steps = schedule.len();
        let progress = Progress::new(
            format!("task {t} epoch {}/{}", epoch + 1, config.epochs),
            steps,
        );
        let mut sum = LossValues::default();
        for (step, indices) in schedule.into_iter().enumerate() {
            let step_seed = derive_seed(epoch_seed, 10 + step as u64);
            let retain =
                |indices: &[usize]| family.batch(indices, &task.retain, derive_seed(step_seed, 1));
            let forget =
                |indices: &[usize]| family.batch(indices, &task.forget, derive_seed(step_seed, 2));
            let terms = match indices {
                StepIndices::Pair(pair) => {
                    let pair = Pair {
                        retain: retain(&pair.retain)?,
                        forget: forget(&pair.forget)?,
                    };
                    method.loss(family, model, pair, epoch)?
                }
                StepIndices::Forget(indices) => {
                    method.group_loss(family, model, Group::Forget, forget(&indices)?, epoch)?
                }
                StepIndices::Retain(indices) => {
                    method.group_loss(family, model, Group::Retain, retain(&indices)?, epoch)?
                }
            };
            // One read back per step for the NaN check and the curves, not one per term.
            let values = terms.values();
            if !values.total.is_finite() {
                progress.finish("stopped: non-finite loss");
                return Err(TrainError::NonFiniteLoss {
                    task: t,
                    epoch,
                    step,
                    value: values.total,
                });
            }
            sum = sum + values;
            let mut grads = gradients(model, terms.total, &method.trainable(model));
            if let Some(max_norm) = config.clip_grad_norm {
                clip_grad_norm(model, &mut grads, max_norm)?;
            }
            method.observe_gradients(model, &mut grads)?;
            *model = optimizer.step(lr, model.clone(), grads);
            method.after_step(model, lr, epoch)?;
            progress.update(
                step + 1,
                &format!("loss {:.4}", sum.total / (step + 1) as f64),
            );
        }
        method.end_epoch(model, epoch)?;
        let mean = sum.mean(steps);
        progress.finish(&format!(
            "loss {:.4} (retain {:.4}, forget {:.4}, penalty {:.4}, proto {:.4}) lr {lr:.2e}",
            mean.total, mean.retain, mean.forget, mean.penalty, mean.prototype
        ));
        curves.push(EpochRecord {
            task: t,
            epoch,
            lr,
            loss: mean.total,
            retain: mean.retain,
            forget: mean.forget,
            penalty: mean.penalty,
            prototype: mean.prototype,
        });
    }
    Ok(curves)
}

/// The remaining and forget parts of a [`EpochPlan::Joint`] batch of `batch_size` over `retain`
/// and `forget` samples: in proportion to the two, at least one of each.
pub fn joint_batch_sizes(batch_size: usize, retain: usize, forget: usize) -> Pair<usize> {
    let share = batch_size as f64 * forget as f64 / (forget + retain).max(1) as f64;
    let forget = (share.round() as usize).clamp(1, batch_size.saturating_sub(1).max(1));
    Pair {
        retain: batch_size.saturating_sub(forget).max(1),
        forget,
    }
}

/// The sample indices of one step.
#[derive(Debug, Clone, PartialEq)]
enum StepIndices {
    /// A remaining and a forget batch.
    Pair(Pair<Vec<usize>>),
    /// A forget batch alone.
    Forget(Vec<usize>),
    /// A remaining batch alone.
    Retain(Vec<usize>),
}

/// One epoch's steps under `plan`: shuffled batches of `batch_size` (split for
/// [`EpochPlan::Joint`]), a paired plan cycled up to `floor` steps.
fn epoch_steps(
    plan: EpochPlan,
    samples: &TaskSamples,
    (batch_size, floor): (usize, usize),
    epoch_seed: u64,
) -> Vec<StepIndices> {
    let (retain, forget) = (samples.retain.len(), samples.forget.len());
    let sizes = match plan {
        EpochPlan::Joint => joint_batch_sizes(batch_size, retain, forget),
        _ => Pair {
            retain: batch_size,
            forget: batch_size,
        },
    };
    let batches = Pair {
        retain: shuffled_batches(&samples.retain, sizes.retain, derive_seed(epoch_seed, 1)),
        forget: shuffled_batches(&samples.forget, sizes.forget, derive_seed(epoch_seed, 2)),
    };
    let steps = match plan {
        EpochPlan::Retain => batches.retain.len(),
        EpochPlan::Forget => batches.forget.len(),
        EpochPlan::Joint => (retain + forget).div_ceil(batch_size),
        EpochPlan::Separate { forget } => {
            let forget_pass = batches.forget.into_iter().filter(|_| forget);
            return forget_pass
                .map(StepIndices::Forget)
                .chain(batches.retain.into_iter().map(StepIndices::Retain))
                .collect();
        }
    };
    (0..steps.max(floor))
        .map(|step| {
            StepIndices::Pair(Pair {
                retain: batches.retain[step % batches.retain.len()].clone(),
                forget: batches.forget[step % batches.forget.len()].clone(),
            })
        })
        .collect()
}

/// AdamW's decay of its first moment.
pub const ADAM_BETA_1: f64 = 0.9;
/// AdamW's decay of its second moment (also the decay of GS-LoRA's group preconditioner).
pub const ADAM_BETA_2: f64 = 0.999;
/// AdamW's `ε`, added to `√v̂` (also in GS-LoRA's group preconditioner).
pub const ADAM_EPSILON: f64 = 1e-8;

/// AdamW as the official code builds it (timm's `create_optimizer`, PROTOCOL §0.4): β (0.9,
/// 0.999), `ε` 1e-8 (Burn's default 1e-5 is large next to `√v` of small adapter gradients and
/// damps their steps), decoupled weight decay `weight_decay`. timm exempts tensors of fewer than
/// two dimensions from the decay; every tensor GS-LoRA trains is a matrix.
pub fn adamw(weight_decay: f64) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_1(ADAM_BETA_1 as f32)
        .with_beta_2(ADAM_BETA_2 as f32)
        .with_epsilon(ADAM_EPSILON as f32)
        .with_weight_decay(weight_decay as f32)
        .init()
}

/// Backpropagates `loss`: the gradients of the parameters `trainable` of `model`.
pub fn gradients<M: gs_lora_core::LoraModel>(
    model: &M,
    loss: Tensor<1>,
    trainable: &[burn::module::ParamId],
) -> GradientsParams {
    let mut grads = loss.backward();
    GradientsParams::from_params(&mut grads, model, trainable)
}

/// Backpropagates `loss` and lets `optimizer` step the parameters `trainable` of `model` at
/// learning rate `lr`.
pub fn optimizer_step<M: gs_lora_core::LoraModel>(
    model: &mut M,
    optimizer: &mut ModuleOptimizer,
    loss: Tensor<1>,
    trainable: &[burn::module::ParamId],
    lr: f64,
) {
    let grads = gradients(model, loss, trainable);
    *model = optimizer.step(lr, model.clone(), grads);
}

/// The result of `task` from its scores before and after and its adapter groups.
fn task_result(
    task: &Task,
    before: Scores,
    after: Scores,
    groups: AdapterGroups,
    started: Instant,
) -> TaskResult {
    let metrics = TaskMetrics::new(before.forget, after.forget, after.retain, after.old);
    TaskResult {
        task: task.index,
        forget_classes: task.forget.clone(),
        forget_before: before.forget,
        retain_before: before.retain,
        forget_after: after.forget,
        retain_after: after.retain,
        old_after: after.old,
        missing_after: after.missing,
        retain_and_missing_before: before.retain_and_missing,
        retain_and_missing_after: after.retain_and_missing,
        h_mean: metrics.h_mean,
        group_norms: groups.norms,
        zero_groups: groups.zero,
        seconds: started.elapsed().as_secs_f64(),
        mia: None,
        trainable_params: 0,
        peak_rss_mib: None,
        machine: None,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::Path;

    use burn::module::ParamId;
    use burn::tensor::Device;
    use gs_lora_core::loss::Prototypes;
    use gs_lora_core::{LoraConfig, adapter_param_ids, group_lasso};
    use gs_lora_models::VisionTransformer;
    use gs_lora_models::vit::VitConfig;
    use gs_lora_models::weights::SeededInit;

    use super::*;
    use crate::classification::embedded_config;
    use crate::engine::{Criterion, LossTerms, LossWeights, Objective};
    use crate::membership::MiaEfficacy;

    /// A family whose batches are their sample indices; only batching is used.
    struct Indices;

    /// No forward pass: the recorder's loss does not read one.
    struct NoCriterion;

    impl Criterion for NoCriterion {
        fn loss(&self) -> Result<Tensor<1>> {
            unreachable!("not read by the recorder")
        }

        fn bounded_loss(&self, _: Option<f64>, _: bool, _: crate::ForgetLoss) -> Result<Tensor<1>> {
            unreachable!("not read by the recorder")
        }

        fn relabelled_loss(&self, _: &mut dyn FnMut(usize) -> usize) -> Result<Tensor<1>> {
            unreachable!("not relabelled")
        }

        fn logits(&self) -> Tensor<2> {
            unreachable!("not read by the recorder")
        }

        fn features(&self) -> Tensor<2> {
            unreachable!("not read by the recorder")
        }

        fn middle(&self) -> Result<Tensor<3>> {
            unreachable!("not read by the recorder")
        }
    }

    impl Objective for Indices {
        type Model = VisionTransformer;
        type Batch = Vec<usize>;
        type Criterion = NoCriterion;

        fn criterion(&self, _: &VisionTransformer, _: Vec<usize>) -> Result<NoCriterion> {
            Ok(NoCriterion)
        }

        fn prototype_pairs(
            &self,
            _: &VisionTransformer,
            _: Pair<&NoCriterion>,
            _: Option<&Prototypes>,
        ) -> Result<Option<Pair<(Tensor<2>, Tensor<2>)>>> {
            Ok(None)
        }
    }

    impl Family for Indices {
        type Model = VisionTransformer;
        type Batch = Vec<usize>;
        type Objective = Self;
        const METRIC: &'static str = "acc";

        fn objective(&self) -> &Self {
            self
        }

        fn classes(&self) -> Vec<usize> {
            unreachable!("train_task does not draw a schedule")
        }

        fn samples_of(&self, _: usize) -> Vec<usize> {
            unreachable!("train_task gets its samples")
        }

        fn batch(&self, indices: &[usize], _: &[usize], _: u64) -> Result<Vec<usize>> {
            Ok(indices.to_vec())
        }

        fn evaluate(&self, _: &VisionTransformer, _: &Task) -> Result<Scores> {
            unreachable!("train_task does not evaluate")
        }

        fn prototypes(
            &self,
            _: &VisionTransformer,
            _: &[usize],
            _: &[usize],
        ) -> Result<Option<Prototypes>> {
            Ok(None)
        }

        fn full_model_params(&self, _: &VisionTransformer) -> Vec<ParamId> {
            unreachable!("the recorder trains adapters")
        }

        fn lower_half_params(&self, _: &VisionTransformer) -> Result<Vec<ParamId>> {
            unreachable!("the recorder trains adapters")
        }

        fn membership_attack(
            &self,
            _: &VisionTransformer,
            _: &Task,
            _: u64,
        ) -> Result<Option<MiaEfficacy>> {
            unreachable!("train_task does not evaluate")
        }

        fn load(&self, _: &Path) -> Result<VisionTransformer> {
            unreachable!("train_task does not load")
        }

        fn save(&self, _: &VisionTransformer, _: &Task, _: &Path) -> Result<()> {
            unreachable!("train_task does not save")
        }
    }

    /// Records each step's batch pair; its loss is the group lasso in every term.
    #[derive(Default)]
    struct Recorder {
        seen: RefCell<Vec<(Vec<usize>, Vec<usize>)>>,
    }

    impl Method<Indices> for Recorder {
        fn begin_task(
            &mut self,
            _: &Indices,
            _: &mut VisionTransformer,
            _: &Task,
            _: &TaskSamples,
            _: u64,
        ) -> Result<()> {
            Ok(())
        }

        fn trainable(&self, model: &VisionTransformer) -> Vec<ParamId> {
            adapter_param_ids(model)
        }

        fn loss(
            &self,
            _: &Indices,
            model: &VisionTransformer,
            batches: Pair<Vec<usize>>,
            _: usize,
        ) -> Result<LossTerms> {
            self.seen
                .borrow_mut()
                .push((batches.retain, batches.forget));
            let lasso = group_lasso(model)?;
            let weights = LossWeights {
                retain: 1.0,
                beta: 0.2,
                penalty: 1e-4,
            };
            Ok(LossTerms::new(
                lasso.clone(),
                lasso.clone(),
                lasso,
                None,
                weights,
            ))
        }

        fn end_task(&mut self, _: &mut VisionTransformer) -> Result<AdapterGroups> {
            Ok(AdapterGroups::default())
        }
    }

    /// 30 remaining and 10 forget samples in batches of 8: the remaining pass takes 4 steps,
    /// the forget pass 2, the joint pass ⌈40 / 8⌉ = 5 with 6 remaining and 2 forget samples a
    /// batch (a quarter forget, as the samples). Catches a plan ignored, the joint split
    /// inverted, or joint steps counted over one group.
    #[test]
    fn each_epoch_plan_pairs_its_batches() {
        let samples = Pair {
            retain: (0..30).collect(),
            forget: (100..110).collect(),
        };
        let plan = |plan| {
            let steps = epoch_steps(plan, &samples, (8, 0), 1);
            let StepIndices::Pair(first) = &steps[0] else {
                panic!("paired steps");
            };
            (first.retain.len(), first.forget.len(), steps.len())
        };
        assert_eq!(plan(EpochPlan::Retain), (8, 8, 4));
        assert_eq!(plan(EpochPlan::Forget), (8, 8, 2));
        assert_eq!(plan(EpochPlan::Joint), (6, 2, 5));
        // SCRUB's passes: every forget batch alone, then every remaining batch alone; the
        // remaining pass only when the forget one is off.
        let separate = epoch_steps(EpochPlan::Separate { forget: true }, &samples, (8, 0), 1);
        let kinds: Vec<char> = separate
            .iter()
            .map(|s| match s {
                StepIndices::Forget(_) => 'f',
                StepIndices::Retain(_) => 'r',
                StepIndices::Pair(_) => 'p',
            })
            .collect();
        assert_eq!(kinds, ['f', 'f', 'r', 'r', 'r', 'r']);
        let min_only = epoch_steps(EpochPlan::Separate { forget: false }, &samples, (8, 0), 1);
        assert_eq!(min_only, separate[2..].to_vec());
        assert_eq!(
            joint_batch_sizes(2, 1000, 1),
            Pair {
                retain: 1,
                forget: 1
            },
            "at least one of each"
        );
    }

    fn task() -> Task {
        Task {
            index: 0,
            forget: vec![3, 4],
            retain: vec![0, 1, 2],
            old: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// One epoch is one pass over the remaining batches; the forget batches are cycled in
    /// their shuffled order when fewer, and left partly unseen when more. Catches steps counted
    /// from the longer or the forget list, a forget list that is not cycled (index out of
    /// range or stopped early), or the two lists swapped.
    #[test]
    fn forget_batches_are_cycled_over_the_remaining_ones() {
        let device = Device::default().autodiff();
        let config = VitConfig {
            image_size: 8,
            hidden_size: 8,
            depth: 1,
            num_heads: 2,
            mlp_hidden: 16,
            ..embedded_config(8, 3)
        };
        let lora = LoraConfig::new().with_rank(2);
        let mut model =
            VisionTransformer::load(&config, &mut SeededInit::new(0), &lora, 0, &device)
                .expect("model");
        let settings = ForgetConfig {
            epochs: 2,
            batch_size: 2,
            ..ForgetConfig::default()
        };
        let retain: Vec<usize> = (0..8).collect();
        let forget: Vec<usize> = (100..104).collect();
        // The batch pairs each step saw, and the epochs' curves.
        let mut record = |retain: Vec<usize>, forget: Vec<usize>, settings: &ForgetConfig| {
            let mut recorder = Recorder::default();
            let samples = Pair { retain, forget };
            let curves = train_task(
                &Indices,
                &mut recorder,
                &mut model,
                &task(),
                &samples,
                settings,
            )
            .expect("train");
            (recorder.seen.into_inner(), curves)
        };
        let (seen, curves) = record(retain.clone(), forget.clone(), &settings);
        assert_eq!(curves.len(), 2);
        assert_eq!(seen.len(), 2 * 4, "4 remaining batches per epoch");
        for epoch in seen.chunks(4) {
            let mut remaining: Vec<usize> = epoch.iter().flat_map(|(r, _)| r.clone()).collect();
            remaining.sort_unstable();
            assert_eq!(remaining, retain, "each remaining image once per epoch");
            let forget_batches: Vec<&Vec<usize>> = epoch.iter().map(|(_, f)| f).collect();
            assert_eq!(forget_batches[0], forget_batches[2], "cycled");
            assert_eq!(forget_batches[1], forget_batches[3], "cycled");
            assert_ne!(forget_batches[0], forget_batches[1]);
            assert!(
                forget_batches
                    .iter()
                    .all(|b| b.iter().all(|i| forget.contains(i)))
            );
        }
        // More forget than remaining batches: still one pass over the remaining ones.
        let (seen, _) = record((0..4).collect(), (100..112).collect(), &settings);
        assert_eq!(
            seen.len(),
            2 * 2,
            "2 remaining batches per epoch, not 6 forget ones"
        );
        let forget_seen: std::collections::HashSet<usize> =
            seen[..2].iter().flat_map(|(_, f)| f.clone()).collect();
        assert_eq!(
            forget_seen.len(),
            4,
            "two of six forget batches in an epoch"
        );

        // A step floor: 11 steps over 2 epochs is 6 per epoch, the 4 remaining batches cycled
        // in their shuffled order; a floor below one pass changes nothing. Catches the floor
        // ignored, applied per task instead of per epoch (11 in the first epoch), or reached by
        // repeating one batch.
        let floor = ForgetConfig {
            min_steps: 11,
            ..settings.clone()
        };
        let (seen, curves) = record(retain.clone(), forget.clone(), &floor);
        assert_eq!(curves.len(), 2);
        assert_eq!(seen.len(), 2 * 6, "⌈11 / 2⌉ steps per epoch");
        for epoch in seen.chunks(6) {
            let mut remaining: Vec<usize> =
                epoch[..4].iter().flat_map(|(r, _)| r.clone()).collect();
            remaining.sort_unstable();
            assert_eq!(remaining, retain, "one whole pass first");
            assert_eq!(epoch[4].0, epoch[0].0, "then the pass again, cycled");
            assert_eq!(epoch[5].0, epoch[1].0, "then the pass again, cycled");
        }
        let low = ForgetConfig {
            min_steps: 4,
            ..settings.clone()
        };
        let (seen, _) = record(retain.clone(), forget.clone(), &low);
        assert_eq!(seen.len(), 2 * 4, "a floor below one pass changes nothing");
    }
}
