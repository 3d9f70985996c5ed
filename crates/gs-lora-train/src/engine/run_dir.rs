//! A run's directory: its settings, its state and the checkpoint of every finished task.
//!
//! ```text
//! RUN/config.json             the settings (resuming with other settings is refused)
//! RUN/schedule.json           the class order and the tasks
//! RUN/state.json              results and curves of the finished tasks
//! RUN/checkpoints/task-N/     the merged model after task N
//! RUN/method-state/task-N/    what the method carries past task N (anchors, a teacher)
//! RUN/results.json, curves.csv, *.svg, *.png   reports, rebuilt from the state
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ForgetConfig;
use crate::error::{Result, TrainError, io};
use crate::report::{EpochRecord, TaskResult};

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

    /// What the method carries past task `task` (its importance anchors, its teacher).
    pub fn method_state(&self, task: usize) -> PathBuf {
        self.0.join("method-state").join(format!("task-{task}"))
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.0.join("state.json")
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.0.join("config.json")
    }

    /// Refuses to resume a run whose saved settings differ from `config` in anything its
    /// results depend on ([`ForgetConfig::run_settings`]) but the number of tasks (which may
    /// grow), naming the settings that differ.
    pub(crate) fn check_same_settings(&self, config: &ForgetConfig) -> Result<()> {
        let saved = ForgetConfig::from_file(&self.config_path())?.run_settings();
        let comparable = ForgetConfig {
            tasks: saved.tasks,
            ..config.run_settings()
        };
        if comparable != saved {
            let fields = |c: &ForgetConfig| serde_json::to_value(c).unwrap_or_default();
            let (saved, asked) = (fields(&saved), fields(&comparable));
            let differ: Vec<&String> = asked
                .as_object()
                .map(|o| {
                    o.keys()
                        .filter(|k| saved.get(*k) != asked.get(*k))
                        .collect()
                })
                .unwrap_or_default();
            return Err(TrainError::InvalidSetting(format!(
                "{} holds a run with other settings ({}); use another --out or the same settings \
                 to resume",
                self.0.display(),
                differ
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ForgetLoss, MethodKind, Replay};
    use crate::io::write_json;
    use gs_lora_core::loss::PrototypeLossConfig;

    /// A run resumes under settings that differ only in what its method never reads (a
    /// GS-LoRA run and the baselines' weights, any run and a comparison's per-method rates) or
    /// in the number of tasks, and is refused, naming the setting, when it differs in what it
    /// reads (EWC's λ, the epochs). Catches a refusal that stops a run resuming after a version
    /// changed a baseline default, and a check that lets a changed weight through.
    #[test]
    fn a_run_resumes_under_the_settings_it_depends_on() {
        let scratch = tempfile::tempdir().expect("scratch");
        let dir = scratch.path();
        let run = RunDir::new(dir);
        let check = |saved: &ForgetConfig, asked: &ForgetConfig| {
            write_json(&run.config_path(), saved).expect("write");
            run.check_same_settings(asked)
                .map_err(|err| err.to_string())
        };
        let mut other_weights = ForgetConfig::default();
        other_weights.baseline.ewc = 3.0;
        other_weights.baseline.lr.clear();
        let gs_lora = ForgetConfig::default();
        assert_eq!(check(&other_weights, &gs_lora), Ok(()));
        let more_tasks = ForgetConfig {
            tasks: 9,
            ..gs_lora.clone()
        };
        assert_eq!(check(&gs_lora, &more_tasks), Ok(()));

        let ewc = |config: &ForgetConfig| ForgetConfig {
            method: MethodKind::Ewc,
            ..config.clone()
        };
        let mut no_rates = ewc(&gs_lora);
        no_rates.baseline.lr.clear();
        assert_eq!(
            check(&no_rates, &ewc(&gs_lora)),
            Ok(()),
            "a comparison's rates"
        );
        let err = check(&ewc(&other_weights), &ewc(&gs_lora)).expect_err("λ differs");
        assert!(err.contains("(baseline)"), "{err}");
        let longer = ForgetConfig {
            epochs: 11,
            ..gs_lora.clone()
        };
        let err = check(&gs_lora, &longer).expect_err("epochs differ");
        assert!(err.contains("(epochs)"), "{err}");

        // The replay floor matters to the stratified draws only: a few-shot run of a version
        // without the floor resumes under today's default, a stratified one does not.
        let few_shot = |min_replay| ForgetConfig {
            replay: Replay::FewShot(4),
            forget_fraction: None,
            min_replay,
            ..gs_lora.clone()
        };
        assert_eq!(check(&few_shot(0), &few_shot(4)), Ok(()));
        let no_floor = ForgetConfig {
            min_replay: 0,
            ..gs_lora.clone()
        };
        let err = check(&no_floor, &gs_lora).expect_err("the floor differs");
        assert!(err.contains("(min_replay)"), "{err}");

        // A run of the version before the method's forgetting form and GS-LoRA++'s few-shot
        // `w_r` (the cross-entropy named, `w_r` 0): with more replay it resumes under today's
        // defaults, whatever its method (the same form and weight); a GS-LoRA run with a
        // few-shot replay does too (it reads no prototype loss), a GS-LoRA++ one does not.
        let earlier = |method, replay| ForgetConfig {
            method,
            replay,
            forget_fraction: None,
            forget_loss: Some(ForgetLoss::CrossEntropy),
            prototype: Some(PrototypeLossConfig::new()),
            ..gs_lora.clone()
        };
        let today = |method, replay| match replay {
            Replay::FewShot(k) => ForgetConfig {
                method,
                ..gs_lora.clone()
            }
            .few_shot(k),
            _ => ForgetConfig {
                method,
                replay,
                forget_fraction: None,
                ..gs_lora.clone()
            },
        };
        let (plus, few) = (MethodKind::GsLoraPlusPlus, Replay::FewShot(4));
        let more = Replay::Stratified(0.1);
        assert_eq!(check(&earlier(plus, more), &today(plus, more)), Ok(()));
        let gs = MethodKind::GsLora;
        assert_eq!(check(&earlier(gs, few), &today(gs, few)), Ok(()));
        let err = check(&earlier(plus, few), &today(plus, few)).expect_err("GS-LoRA++'s differs");
        assert!(err.contains("(forget_loss, prototype)"), "{err}");
    }
}
