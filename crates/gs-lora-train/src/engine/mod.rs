//! The model-agnostic forgetting engine: a run directory, the task schedule, and per task a
//! [`Method`] trained on a [`Family`]'s data, the merged model checkpointed so that an
//! interrupted run resumes after its last finished task.
//!
//! The engine knows neither ViTs nor detectors (`classification` and `detection` implement
//! [`Family`]) nor a particular method (`method` implements [`Method`]).

mod clip;
mod family;
mod fit;
mod loss;
mod method;
mod param_set;
mod params;
mod peak_memory;
mod run_dir;
mod sampling;
mod schedule;
mod task;

pub use clip::clip_grad_norm;
pub use family::{Criterion, Family, Objective};
pub use loss::{LossTerms, LossValues, LossWeights};
pub use method::{AdapterGroups, EpochPlan, Group, Method};
pub use param_set::{ParamSet, PathParam, path_params};
pub use params::{ParamPath, param_count, param_ids_where};
pub use run_dir::{RunDir, RunState};
pub use sampling::{
    Pair, TaskSamples, schedule_samples, shuffled_batches, task_samples, task_seed,
};
pub use schedule::{Task, TaskSchedule};

pub use task::{
    ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON, adamw, gradients, joint_batch_sizes, optimizer_step,
};

pub(crate) use fit::{FitSchedule, fit};
#[cfg(test)]
pub(crate) use loss::matrix;
pub(crate) use loss::scalar;

use gs_lora_core::DataParallel;

use crate::config::ForgetConfig;
use crate::error::{Result, TrainError, io_error};
use crate::io::{RunLock, remove_stale_tmp, write_json};
use crate::report::write_reports;

/// Says on stderr how training batches are split, when they are.
pub(crate) fn announce_split(devices: &DataParallel) {
    let count = devices.devices().len();
    if count > 1 {
        eprintln!("each training batch is split across {count} devices, the model on the first");
    }
}

/// Runs (or resumes) the forgetting tasks of `config` on `model` with `method`: validates
/// `config`, draws the schedule over the family's classes, resumes after the last finished task
/// of `run` (reading its checkpoint, unless no task is left), then per task trains, saves the
/// merged model and records the result.
///
/// # Errors
/// Invalid settings, a run directory in use or of another run, the family's and the method's
/// errors, file errors, or a non-finite loss (the run stops and the last finished task's
/// checkpoint stays in place).
pub fn run<F: Family, M: Method<F>>(
    family: &F,
    method: &mut M,
    model: &mut F::Model,
    config: &ForgetConfig,
    run: &RunDir,
) -> Result<RunState> {
    config.validate()?;
    if let Some(note) = config.few_shot_note() {
        eprintln!("{note}");
    }
    let classes = family.classes();
    let order = config.class_order.order(classes.len(), config.seed)?;
    let schedule = TaskSchedule::from_order(order, config.tasks, config.forget_per_task)?
        .with_missing(config.missing_classes)?
        .relabelled(&classes)?;
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
    write_json(&run.config_path(), config)?;
    write_json(&run.path().join("schedule.json"), &schedule)?;
    // A kill (or a full disk) after `state.json` and before the reports leaves them stale:
    // they are always rebuilt from the state.
    write_reports(run.path(), &state.results, &state.curves)?;

    if let Some(last) = state.results.last() {
        let checkpoint = run.checkpoint(last.task);
        // A finished run reads no checkpoint: its reports are rebuilt from the state alone, so
        // a comparison resumes over runs whose checkpoints were removed to free the disk.
        if state.results.len() < schedule.tasks.len() {
            eprintln!(
                "resuming after task {} from {}",
                last.task,
                checkpoint.display()
            );
            *model = family.load(&checkpoint)?;
            method.load_state(model, &run.method_state(last.task))?;
        } else {
            eprintln!(
                "resuming after task {}: every task has finished, nothing is read or trained",
                last.task
            );
        }
    }

    let samples = schedule_samples(
        |class| family.samples_of(class),
        &schedule.tasks,
        classes.len(),
        config,
    )?;
    for (next, samples) in schedule
        .tasks
        .iter()
        .zip(&samples)
        .skip(state.results.len())
    {
        let (result, curves) = task::run_task(family, method, model, next, samples, config)?;
        // The merged model and the method's state first, then the run's state that points at
        // them: a kill in between leaves the previous state, and the task is redone.
        family.save(model, next, &run.checkpoint(next.index))?;
        let method_state = run.method_state(next.index);
        std::fs::create_dir_all(&method_state).map_err(io_error("creating", &method_state))?;
        method.save_state(&method_state)?;
        state.results.push(result);
        state.curves.extend(curves);
        write_json(&run.state_path(), &state)?;
        write_reports(run.path(), &state.results, &state.curves)?;
    }
    Ok(state)
}
