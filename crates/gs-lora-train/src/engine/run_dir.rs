//! A run's directory: its settings, its state and the checkpoint of every finished task.
//!
//! ```text
//! RUN/config.json             the settings (resuming with other settings is refused)
//! RUN/schedule.json           the class order and the tasks
//! RUN/state.json              results and curves of the finished tasks
//! RUN/checkpoints/task-N/     the merged model after task N
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

    /// Refuses to resume a run whose saved settings differ from `config` in anything but the
    /// number of tasks (which may grow).
    pub(crate) fn check_same_settings(&self, config: &ForgetConfig) -> Result<()> {
        let saved = ForgetConfig::from_file(&self.config_path())?;
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
