//! The continual-forgetting loop: per task, fresh adapters, the GS-LoRA objective, AdamW on the
//! adapters with a cosine schedule, the group proximal step, merging, evaluation and a
//! checkpoint from which an interrupted run resumes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::AdamWConfig;
use burn::tensor::{Device, Tensor};
use gs_lora_core::lora::derive_seed;
use gs_lora_core::loss::{PrototypeAccumulator, Prototypes};
use gs_lora_core::{LoraInit, LoraModel, TaskMetrics, group_norms, merge_adapters, reset_adapters};
use gs_lora_models::VisionTransformer;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::batch::{Preprocess, make_batch, shuffled_batches};
use crate::config::{ForgetConfig, Method, Replay};
use crate::data::Dataset;
use crate::error::{Result, TrainError, io};
use crate::eval::class_accuracy;
use crate::io::{RunLock, remove_stale_tmp, write_json};
use crate::model_dir::{ModelDir, ModelInfo};
use crate::progress::Progress;
use crate::schedule::{Task, TaskSchedule};
use crate::step::{LossTerms, LossWeights, loss_terms, update_adapters};

/// What one task achieved, as written to `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// 0-based task index.
    pub task: usize,
    /// Classes erased by the task.
    pub forget_classes: Vec<usize>,
    /// Accuracy on the forget classes before the task (%).
    pub acc_f_before: f64,
    /// Accuracy on the remaining classes before the task (%).
    pub acc_r_before: f64,
    /// Accuracy on the forget classes after the task (%).
    pub acc_f: f64,
    /// Accuracy on the remaining classes after the task (%).
    pub acc_r: f64,
    /// Accuracy on classes erased by earlier tasks (%), `null` on the first task.
    pub acc_o: Option<f64>,
    /// Harmonic mean of the forgetting drop and `acc_r`.
    pub h_mean: f64,
    /// Norm of each block's adapter group at the end of the task, before merging.
    pub group_norms: Vec<f64>,
    /// Blocks whose adapters are exactly zero (left untouched by the task).
    pub zero_groups: Vec<usize>,
    /// Wall time of the task in seconds (training and evaluation).
    pub seconds: f64,
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
    /// Mean group lasso (before `α`).
    pub sparsity: f64,
    /// Mean prototype loss (GS-LoRA++; weights included).
    pub prototype: f64,
}

/// Everything a run has finished, saved after every task (`state.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Results of the finished tasks.
    pub results: Vec<TaskResult>,
    /// Training curves of the finished tasks.
    pub curves: Vec<EpochRecord>,
}

/// Where a run keeps its files.
#[derive(Debug, Clone)]
pub struct RunDir(PathBuf);

impl RunDir {
    /// The run directory `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The merged model after task `task`.
    pub fn checkpoint(&self, task: usize) -> PathBuf {
        self.0.join("checkpoints").join(format!("task-{task}"))
    }

    fn state_path(&self) -> PathBuf {
        self.0.join("state.json")
    }

    /// Refuses to resume a run whose saved settings differ from `config` in anything but the
    /// number of tasks (which may grow).
    fn check_same_settings(&self, config: &ForgetConfig) -> Result<()> {
        let path = self.0.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let saved: ForgetConfig =
            serde_json::from_str(&text).map_err(|err| TrainError::Format {
                path: path.clone(),
                message: err.to_string(),
            })?;
        let comparable = ForgetConfig {
            tasks: saved.tasks,
            ..config.clone()
        };
        if comparable != saved {
            return Err(TrainError::InvalidSetting(format!(
                "{} holds a run with other settings; use another --out or the same settings to resume",
                self.0.display()
            )));
        }
        Ok(())
    }

    /// The finished tasks of an earlier run in this directory, if any.
    ///
    /// # Errors
    /// When `state.json` exists but cannot be read.
    pub fn load_state(&self) -> Result<RunState> {
        let path = self.state_path();
        if !path.exists() {
            return Ok(RunState::default());
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        serde_json::from_str(&text).map_err(|err| TrainError::Format {
            path,
            message: err.to_string(),
        })
    }
}

/// The remaining-class and forget-class training images of `task` (`images_of(class)` lists a
/// class's images): the replay subset of the remaining classes, and all forget-class images
/// (or `k` per class, few-shot).
pub(crate) fn task_subsets(
    images_of: impl Fn(usize) -> Vec<usize>,
    task: &Task,
    config: &ForgetConfig,
) -> [Vec<usize>; 2] {
    let task_seed = derive_seed(config.seed, 1000 + task.index as u64);
    [(&task.retain, false, 1), (&task.forget, true, 2)].map(|(classes, full, stream)| {
        subset(
            &images_of,
            classes,
            config.replay,
            full,
            derive_seed(task_seed, stream),
        )
    })
}

/// The images of each class of `classes` kept for training this task; `images_of(class)` lists
/// a class's images (an image of several classes is kept once).
fn subset(
    images_of: impl Fn(usize) -> Vec<usize>,
    classes: &[usize],
    replay: Replay,
    full: bool,
    seed: u64,
) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chosen = Vec::new();
    for &class in classes {
        let mut indices = images_of(class);
        indices.shuffle(&mut rng);
        let keep = match replay {
            Replay::FewShot(k) => k.min(indices.len()),
            Replay::Fraction(_) if full => indices.len(),
            Replay::Fraction(f) => ((indices.len() as f64 * f).ceil() as usize).min(indices.len()),
        };
        chosen.extend_from_slice(&indices[..keep]);
    }
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

/// The value of a one-element tensor on the host (NaN if it cannot be read).
pub(crate) fn scalar(tensor: Tensor<1>) -> f64 {
    tensor
        .inner()
        .try_into_vec_as::<f64>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f64::NAN)
}

/// Accuracies on the forget, remaining and old classes.
fn evaluate(
    model: &VisionTransformer,
    dataset: &Dataset,
    task: &Task,
    config: &ForgetConfig,
    preprocess: &Preprocess,
    device: &Device,
) -> Result<(f64, f64, Option<f64>)> {
    let accuracy = class_accuracy(
        model,
        &dataset.val,
        dataset.num_classes(),
        preprocess,
        2 * config.batch_size,
        device,
    )?;
    let measured = |classes: &[usize], group: &str| {
        accuracy.accuracy(classes).ok_or_else(|| {
            TrainError::Data(format!(
                "task {}: the {group} classes have no validation image, so their accuracy cannot be measured",
                task.index
            ))
        })
    };
    let acc_o = match task.old.is_empty() {
        true => None,
        false => Some(measured(&task.old, "earlier-forgotten")?),
    };
    Ok((
        measured(&task.forget, "forget")?,
        measured(&task.retain, "remaining")?,
        acc_o,
    ))
}

/// Class prototypes of `classes` over `indices`, with the model as it is (GS-LoRA++).
fn prototypes(
    model: &VisionTransformer,
    dataset: &Dataset,
    indices: &[usize],
    classes: &[usize],
    config: &ForgetConfig,
    preprocess: &Preprocess,
    device: &Device,
) -> Result<Prototypes> {
    let model = model.valid();
    let plain = device.clone().without_autodiff();
    let mut accumulator =
        PrototypeAccumulator::new(dataset.num_classes(), model.config.hidden_size);
    for chunk in indices.chunks(2 * config.batch_size) {
        let batch = make_batch(&dataset.train, chunk, preprocess, None, &plain);
        accumulator.add(model.forward(batch.images)?.embedding, &batch.labels)?;
    }
    Ok(accumulator.finish(classes, device)?)
}

/// Runs (or resumes) the forgetting tasks of `config` on `model`, writing results and
/// checkpoints under `run`. `model` must live on an autodiff device.
///
/// # Errors
/// Invalid settings, a failing model, file errors, or a non-finite loss (the run stops and the
/// last finished task's checkpoint stays in place).
pub fn run_forgetting(
    mut model: VisionTransformer,
    dataset: &Dataset,
    config: &ForgetConfig,
    preprocess: &Preprocess,
    run: &RunDir,
    device: &Device,
) -> Result<RunState> {
    let lora = config.lora();
    let classes: Vec<usize> = (0..dataset.num_classes()).collect();
    // Every class must be trainable and measurable: a class without validation images would
    // read as 0% (perfectly forgotten) or hide a collapse.
    dataset.require_each_class("training", &dataset.train)?;
    dataset.require_each_class("validation", &dataset.val)?;
    run_schedule(
        &mut model,
        &classes,
        config,
        run,
        |checkpoint| ModelDir::new(checkpoint).load(&lora, config.seed, device),
        |model, task| {
            let started = Instant::now();
            run_task(model, dataset, task, config, preprocess, device, started)
        },
        |model, task, checkpoint| {
            let info = ModelInfo {
                class_names: dataset.class_names.clone(),
                preprocess: *preprocess,
                forgotten: task.old.iter().chain(&task.forget).copied().collect(),
            };
            ModelDir::new(checkpoint).save(model, &info)
        },
    )
}

/// The task loop shared by every kind of model: validates `config`, draws the schedule over
/// the model labels `classes`, resumes after the last finished task of `run` (`load` reads its checkpoint),
/// then per task runs `task`, saves the merged model with `save` and records the result.
pub(crate) fn run_schedule<M>(
    model: &mut M,
    classes: &[usize],
    config: &ForgetConfig,
    run: &RunDir,
    load: impl FnOnce(PathBuf) -> Result<M>,
    mut task: impl FnMut(&mut M, &Task) -> Result<(TaskResult, Vec<EpochRecord>)>,
    mut save: impl FnMut(&M, &Task, PathBuf) -> Result<()>,
) -> Result<RunState> {
    config.validate()?;
    let schedule = TaskSchedule::new(
        classes.len(),
        config.tasks,
        config.forget_per_task,
        config.seed,
    )?
    .relabelled(classes)?;
    let _lock = RunLock::acquire(run.path())?;
    remove_stale_tmp(run.path())?;
    let mut state = run.load_state()?;
    if !state.results.is_empty() {
        run.check_same_settings(config)?;
    }
    for (index, (result, task)) in state.results.iter().zip(&schedule.tasks).enumerate() {
        if result.task != index || result.forget_classes != task.forget {
            return Err(TrainError::Format {
                path: run.state_path(),
                message: format!(
                    "finished task {index} erased classes {:?} but this run's schedule has {:?} \
                     there; the file belongs to another run",
                    result.forget_classes, task.forget
                ),
            });
        }
    }
    write_json(&run.path().join("config.json"), config)?;
    write_json(&run.path().join("schedule.json"), &schedule)?;
    // A kill (or a full disk) after `state.json` and before the reports leaves them stale:
    // they are always rebuilt from the state.
    crate::report::write_reports(run.path(), &state)?;

    if let Some(last) = state.results.last() {
        let checkpoint = run.checkpoint(last.task);
        eprintln!(
            "resuming after task {} from {}",
            last.task,
            checkpoint.display()
        );
        *model = load(checkpoint)?;
    }

    for next in schedule.tasks.iter().skip(state.results.len()) {
        let (result, curves) = task(model, next)?;
        // The merged model first, then the state that points at it: a kill in between leaves
        // the previous state, and the task is redone.
        save(model, next, run.checkpoint(next.index))?;
        state.results.push(result);
        state.curves.extend(curves);
        write_json(&run.state_path(), &state)?;
        crate::report::write_reports(run.path(), &state)?;
    }
    Ok(state)
}

/// The epochs of one task: per step a remaining and a forget batch (the shorter list cycled),
/// the loss `loss` computes from their indices at the epoch's weights, and the adapter update
/// with the cosine learning rate and the group proximal step. Returns the epochs' mean losses.
///
/// # Errors
/// The loss's errors, or a non-finite loss (naming task, epoch and step).
pub(crate) fn train_task<M: LoraModel>(
    model: &mut M,
    config: &ForgetConfig,
    task: &Task,
    [retain_indices, forget_indices]: [&[usize]; 2],
    mut loss: impl FnMut(&M, [&[usize]; 2], LossWeights) -> Result<LossTerms>,
) -> Result<Vec<EpochRecord>> {
    let t = task.index;
    let task_seed = derive_seed(config.seed, 1000 + t as u64);
    let lasso = gs_lora_core::GroupLassoConfig::new()
        .with_alpha(config.alpha)
        .with_warmup_epochs(config.alpha_warmup_epochs)
        .with_warmup_alpha(config.big_alpha);
    let mut optimizer = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .init();
    let mut curves = Vec::with_capacity(config.epochs);
    for epoch in 0..config.epochs {
        let lr = config.lr_at(epoch);
        let alpha = lasso.alpha_at(epoch);
        let weights = LossWeights {
            beta: config.beta_for(t),
            bnd: config.bnd,
            alpha,
        };
        let epoch_seed = derive_seed(task_seed, 100 + epoch as u64);
        let retain_batches = shuffled_batches(
            retain_indices,
            config.batch_size,
            derive_seed(epoch_seed, 1),
        );
        let forget_batches = shuffled_batches(
            forget_indices,
            config.batch_size,
            derive_seed(epoch_seed, 2),
        );
        let steps = retain_batches.len().max(forget_batches.len());
        let progress = Progress::new(
            format!("task {t} epoch {}/{}", epoch + 1, config.epochs),
            steps,
        );
        let mut sums = [0.0f64; 5];
        for step in 0..steps {
            let terms = loss(
                model,
                [
                    &retain_batches[step % retain_batches.len()],
                    &forget_batches[step % forget_batches.len()],
                ],
                weights,
            )?;
            // One read back per step for the NaN check and the curves, not one per term.
            let parts = terms.values();
            let value = parts[0];
            if !value.is_finite() {
                progress.finish("stopped: non-finite loss");
                return Err(TrainError::NonFiniteLoss {
                    task: t,
                    epoch,
                    step,
                    value,
                });
            }
            sums.iter_mut().zip(parts).for_each(|(s, p)| *s += p);
            update_adapters(model, &mut optimizer, terms.total, lr, alpha)?;
            progress.update(
                step + 1,
                &format!("loss {:.4}", sums[0] / (step + 1) as f64),
            );
        }
        let mean = sums.map(|s| s / steps as f64);
        progress.finish(&format!(
            "loss {:.4} (retain {:.4}, forget {:.4}, lasso {:.4}, proto {:.4}) lr {lr:.2e}",
            mean[0], mean[1], mean[2], mean[3], mean[4]
        ));
        curves.push(EpochRecord {
            task: t,
            epoch,
            lr,
            loss: mean[0],
            retain: mean[1],
            forget: mean[2],
            sparsity: mean[3],
            prototype: mean[4],
        });
    }
    Ok(curves)
}

/// Each adapter group's norm and the groups left exactly zero, then merges the adapters.
///
/// # Errors
/// Malformed adapter groups.
pub(crate) fn merge_task_adapters<M: LoraModel>(model: &mut M) -> Result<(Vec<f64>, Vec<usize>)> {
    let norms = group_norms(model)?;
    let zero_groups = norms
        .iter()
        .enumerate()
        .filter(|(_, n)| **n == 0.0)
        .map(|(i, _)| i)
        .collect();
    merge_adapters(model)?;
    Ok((norms, zero_groups))
}

/// The result of `task` from the score (`metric`: accuracy or AP, %) on its forget and
/// remaining classes before, on its forget, remaining and old classes after, and the adapter
/// groups' norms and zeroed groups; printed as it is made.
pub(crate) fn task_result(
    task: &Task,
    [acc_f_before, acc_r_before]: [f64; 2],
    (acc_f, acc_r, acc_o): (f64, f64, Option<f64>),
    (group_norms, zero_groups): (Vec<f64>, Vec<usize>),
    started: Instant,
    metric: &str,
) -> TaskResult {
    let metrics = TaskMetrics::new(acc_f_before, acc_f, acc_r, acc_o);
    let result = TaskResult {
        task: task.index,
        forget_classes: task.forget.clone(),
        acc_f_before,
        acc_r_before,
        acc_f,
        acc_r,
        acc_o,
        h_mean: metrics.h_mean,
        group_norms,
        zero_groups,
        seconds: started.elapsed().as_secs_f64(),
    };
    eprintln!(
        "task {}: after: {metric}_f {acc_f:.2}%, {metric}_r {acc_r:.2}%, {metric}_o {}, H {:.2} ({:.1}s)",
        task.index,
        acc_o.map_or("-".into(), |a| format!("{a:.2}%")),
        result.h_mean,
        result.seconds
    );
    result
}

fn run_task(
    model: &mut VisionTransformer,
    dataset: &Dataset,
    task: &Task,
    config: &ForgetConfig,
    preprocess: &Preprocess,
    device: &Device,
    started: Instant,
) -> Result<(TaskResult, Vec<EpochRecord>)> {
    let t = task.index;
    let task_seed = derive_seed(config.seed, 1000 + t as u64);
    let (acc_f_before, acc_r_before, _) =
        evaluate(model, dataset, task, config, preprocess, device)?;
    eprintln!(
        "task {t}: forgetting {} classes; before: acc_f {acc_f_before:.2}%, acc_r {acc_r_before:.2}%",
        task.forget.len()
    );
    reset_adapters(model, LoraInit::for_task(t), task_seed)?;

    let [retain_indices, forget_indices] =
        task_subsets(|class| dataset.train.indices_of(&[class]), task, config);
    let protos = match config.method {
        Method::GsLoraPlusPlus => {
            let all: Vec<usize> = retain_indices
                .iter()
                .chain(&forget_indices)
                .copied()
                .collect();
            let classes: Vec<usize> = task.retain.iter().chain(&task.forget).copied().collect();
            Some(prototypes(
                model, dataset, &all, &classes, config, preprocess, device,
            )?)
        }
        Method::GsLora => None,
    };
    let prototype_loss = config.prototype_loss();
    let prototypes = protos.as_ref().map(|protos| (&prototype_loss, protos));
    let curves = train_task(
        model,
        config,
        task,
        [&retain_indices, &forget_indices],
        |model, [retain, forget], weights| {
            let batch = |indices| make_batch(&dataset.train, indices, preprocess, None, device);
            loss_terms(model, batch(retain), batch(forget), weights, prototypes)
        },
    )?;
    let groups = merge_task_adapters(model)?;
    let after = evaluate(model, dataset, task, config, preprocess, device)?;
    let result = task_result(
        task,
        [acc_f_before, acc_r_before],
        after,
        groups,
        started,
        "acc",
    );
    Ok((result, curves))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::embedded_model_config;
    use gs_lora_core::{LoraConfig, group_lasso};
    use gs_lora_models::vit::VitConfig;
    use gs_lora_models::weights::SeededInit;

    /// Class `c` owns images `10c .. 10c + 5 + c` (class 4 has none).
    fn images_of(class: usize) -> Vec<usize> {
        match class {
            4 => Vec::new(),
            c => (10 * c..10 * c + 5 + c).collect(),
        }
    }

    fn task() -> Task {
        Task {
            index: 0,
            forget: vec![3, 4],
            retain: vec![0, 1, 2],
            old: Vec::new(),
        }
    }

    /// Subset sizes per replay setting: a rounded-up fraction of each remaining class and
    /// every forget image, or `k` of each. Catches a floor instead of a ceiling, the fraction
    /// applied to the forget classes too, a few-shot count taken over the group instead of
    /// per class, and the old panic on a class without images.
    #[test]
    fn subsets_take_the_replay_share_of_each_class() {
        let config = |replay| ForgetConfig {
            replay,
            ..ForgetConfig::default()
        };
        let [retain, forget] = task_subsets(images_of, &task(), &config(Replay::Fraction(0.5)));
        let per_class =
            |indices: &[usize], class: usize| indices.iter().filter(|&&i| i / 10 == class).count();
        assert_eq!(
            [0, 1, 2].map(|c| per_class(&retain, c)),
            [3, 3, 4],
            "ceil(5/2), ceil(6/2), ceil(7/2)"
        );
        assert_eq!(forget, images_of(3), "every forget image");
        let [retain, forget] = task_subsets(images_of, &task(), &config(Replay::FewShot(2)));
        assert_eq!([0, 1, 2, 3].map(|c| per_class(&retain, c)), [2, 2, 2, 0]);
        assert_eq!(per_class(&forget, 3), 2);
        for index in retain.iter().chain(&forget) {
            assert!(
                images_of(index / 10).contains(index),
                "{index} is its class's image"
            );
        }
        // Same seed, same subsets; another task, other subsets.
        let again = task_subsets(images_of, &task(), &config(Replay::FewShot(2)));
        assert_eq!(again, [retain.clone(), forget]);
        let other = Task { index: 1, ..task() };
        let [other_retain, _] = task_subsets(images_of, &other, &config(Replay::FewShot(2)));
        assert_ne!(other_retain, retain);
    }

    /// One epoch is as many steps as the longer list has batches; the shorter list's batches
    /// are cycled in their shuffled order and every remaining image is seen once. Catches
    /// steps counted from the forget list, a forget list that is not cycled (index out of
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
            ..embedded_model_config(8, 3)
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
        let mut seen: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
        let curves = train_task(
            &mut model,
            &settings,
            &task(),
            [&retain, &forget],
            |model, [r, f], weights| {
                seen.push((r.to_vec(), f.to_vec()));
                let lasso = group_lasso(model)?;
                Ok(LossTerms::new(
                    lasso.clone(),
                    lasso.clone(),
                    lasso,
                    None,
                    weights,
                ))
            },
        )
        .expect("train");
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
    }
}
