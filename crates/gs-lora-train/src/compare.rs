//! Several forgetting methods on the same schedule, over several seeds: one run directory per
//! (method, seed) under the comparison directory, each resumable, then one table
//! ([`report::write_comparison`](crate::report::write_comparison)).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{ForgetConfig, MethodKind};
use crate::engine::{RunDir, RunState};
use crate::error::{Result, TrainError};
use crate::io::write_json;
use crate::report::{ComparisonRow, MethodRuns, comparison_rows, write_comparison};

/// The methods compared when none are named: GS-LoRA, the baselines that isolate its parts, and
/// the unlearning methods practitioners compare against.
pub const DEFAULT_METHODS: [MethodKind; 6] = [
    MethodKind::GsLora,
    MethodKind::Lora,
    MethodKind::FineTune,
    MethodKind::NegGradPlus,
    MethodKind::RandomLabels,
    MethodKind::SalUn,
];

/// What a comparison records in `compare.json`: its methods, its seeds, and the settings
/// every run shares (the fields of a run's `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSettings {
    /// The methods, in table order.
    pub methods: Vec<MethodKind>,
    /// The seeds each method runs with.
    pub seeds: Vec<u64>,
    /// The method the others' gaps are measured to (one of `methods`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<MethodKind>,
    /// The peak learning rate of the methods that train the whole model (the adapter methods
    /// take `forget.lr`): the official baselines' 1e-4 (PROTOCOL §3, Table 3) by default, since
    /// GS-LoRA's adapter rate (1e-2) wrecks a whole model.
    #[serde(default = "official_full_model_lr")]
    pub full_model_lr: f64,
    /// The settings every run shares (their `method` and `seed` are replaced per run).
    #[serde(flatten)]
    pub forget: ForgetConfig,
}

/// The official baselines' peak learning rate (PROTOCOL §3, Table 3: "lr 1e-4 unless noted").
pub fn official_full_model_lr() -> f64 {
    1e-4
}

/// The official detection baselines' learning rate (PROTOCOL §4: 6e-4 for the transformer; the
/// official code's lower rates for the backbone and the sampling offsets are not separate here).
pub fn official_detection_full_model_lr() -> f64 {
    6e-4
}

impl CompareSettings {
    /// The settings file of the comparison in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("compare.json")
    }

    /// The settings of `method` and `seed`'s run: a method that trains the whole model takes
    /// its own rate from `baseline.lr` (Table 3's 1e-3 for DER, DER++, FDR) or else
    /// [`Self::full_model_lr`].
    pub fn run_config(&self, method: MethodKind, seed: u64) -> ForgetConfig {
        let lr = match method.trains_adapters() {
            true => self.forget.lr,
            false => *self
                .forget
                .baseline
                .lr
                .get(&method)
                .unwrap_or(&self.full_model_lr),
        };
        ForgetConfig {
            method,
            seed,
            lr,
            min_lr: self.forget.min_lr.min(lr),
            ..self.forget.clone()
        }
    }

    /// The comparison's settings saved in `path`, or `None` when the file holds no methods
    /// (a run's `config.json`, whose settings then apply without a method list).
    ///
    /// # Errors
    /// A file that cannot be read, or whose methods or seeds cannot be parsed.
    pub fn from_file(path: &Path) -> Result<Option<Self>> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io(path))?;
        let format = |err: serde_json::Error| TrainError::Format {
            path: path.to_path_buf(),
            message: err.to_string(),
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(format)?;
        if value.get("methods").is_none() {
            return Ok(None);
        }
        let field = |name: &str| value.get(name).cloned().unwrap_or_default();
        let methods = serde_json::from_value(field("methods")).map_err(format)?;
        let seeds = serde_json::from_value(field("seeds")).map_err(format)?;
        let reference = serde_json::from_value(field("reference")).map_err(format)?;
        let full_model_lr = match value.get("full_model_lr") {
            Some(lr) => serde_json::from_value(lr.clone()).map_err(format)?,
            None => official_full_model_lr(),
        };
        Ok(Some(Self {
            methods,
            seeds,
            reference,
            full_model_lr,
            forget: ForgetConfig::from_file(path)?,
        }))
    }

    /// Checks that there is something to compare and that the shared settings are valid.
    ///
    /// # Errors
    /// No method or no seed, a method named twice, or an invalid setting.
    pub fn validate(&self) -> Result<()> {
        let problem = match (self.methods.is_empty(), self.seeds.is_empty()) {
            (true, _) => Some(("methods", "names no method".to_string())),
            (_, true) => Some(("seeds", "names no seed".to_string())),
            _ => None,
        }
        .or_else(|| {
            let twice = |items: Vec<String>| {
                items
                    .iter()
                    .enumerate()
                    .find(|(i, a)| items[..*i].contains(a))
                    .map(|(_, a)| a.clone())
            };
            twice(self.methods.iter().map(ToString::to_string).collect())
                .map(|m| ("methods", format!("names {m} twice")))
                .or_else(|| {
                    twice(self.seeds.iter().map(ToString::to_string).collect())
                        .map(|s| ("seeds", format!("names {s} twice")))
                })
        });
        let problem = problem.or_else(|| {
            self.reference
                .filter(|r| !self.methods.contains(r))
                .map(|r| {
                    (
                        "reference",
                        format!("is {r}, which is not among the methods"),
                    )
                })
        });
        let problem = problem.or_else(|| {
            (!(self.full_model_lr.is_finite() && self.full_model_lr > 0.0)).then(|| {
                (
                    "full_model_lr",
                    format!("must be a finite rate > 0, found {}", self.full_model_lr),
                )
            })
        });
        if let Some((name, problem)) = problem {
            return Err(TrainError::Setting { name, problem });
        }
        self.forget.validate()
    }
}

/// One (method, seed) run of a comparison, to be started on its own: the run directory
/// `compare` would use and the file of its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The run's method.
    pub method: MethodKind,
    /// The run's seed.
    pub seed: u64,
    /// Its settings, `DIR/jobs/METHOD-seed-S.json` (a run's `config.json`).
    pub config: PathBuf,
    /// Its run directory, `DIR/METHOD/seed-S`.
    pub run: PathBuf,
}

/// The run directory of `method` and `seed` in the comparison directory `dir`.
fn run_dir(dir: &Path, method: MethodKind, seed: u64) -> PathBuf {
    dir.join(method.name()).join(format!("seed-{seed}"))
}

/// Splits the comparison of `settings` in `dir` into independent runs, for a scheduler to fan
/// out: writes `compare.json` and each run's settings into `dir/jobs/`, and returns the runs.
/// Each is `forget --config JOB.config --out JOB.run`; once all have finished, [`compare`] on
/// the same `dir` finds them done and writes the table.
///
/// # Errors
/// Invalid settings, or a file that cannot be written.
pub fn write_jobs(dir: &Path, settings: &CompareSettings) -> Result<Vec<Job>> {
    settings.validate()?;
    let jobs_dir = dir.join("jobs");
    std::fs::create_dir_all(&jobs_dir).map_err(crate::error::io(&jobs_dir))?;
    write_json(&CompareSettings::path(dir), settings)?;
    let mut jobs = Vec::with_capacity(settings.methods.len() * settings.seeds.len());
    for &method in &settings.methods {
        for &seed in &settings.seeds {
            let config = jobs_dir.join(format!("{}-seed-{seed}.json", method.name()));
            write_json(&config, &settings.run_config(method, seed))?;
            jobs.push(Job {
                method,
                seed,
                config,
                run: run_dir(dir, method, seed),
            });
        }
    }
    Ok(jobs)
}

/// Runs (or resumes) every method of `settings` with every seed, `run(config, dir)` doing
/// one forgetting run in `dir/METHOD/seed-S`; then writes `compare.json`, the table and the
/// plots into `dir` and returns the rows. `metric` names the score (`acc`, `AP`).
///
/// # Errors
/// Invalid settings, or the first failing run's error (the finished runs stay, and a new
/// call resumes after them).
pub fn compare(
    dir: &Path,
    settings: &CompareSettings,
    metric: &str,
    mut run: impl FnMut(&ForgetConfig, &RunDir) -> Result<RunState>,
) -> Result<Vec<ComparisonRow>> {
    settings.validate()?;
    std::fs::create_dir_all(dir).map_err(crate::error::io(dir))?;
    write_json(&CompareSettings::path(dir), settings)?;
    let mut compared = Vec::with_capacity(settings.methods.len());
    for &method in &settings.methods {
        let mut runs = Vec::with_capacity(settings.seeds.len());
        for &seed in &settings.seeds {
            let run_dir = RunDir::new(run_dir(dir, method, seed));
            eprintln!("\n== {method}, seed {seed}: {}", run_dir.path().display());
            let state = run(&settings.run_config(method, seed), &run_dir)?;
            runs.push((seed, state.results));
        }
        compared.push(MethodRuns {
            method: method.name().to_string(),
            runs,
        });
    }
    let reference = settings.reference.map(MethodKind::name);
    let rows = comparison_rows(&compared, reference)?;
    write_comparison(dir, &rows, metric)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings file round-trips with its methods and seeds; a run's `config.json` (no
    /// methods) reads as `None`; empty or repeated lists are refused by name.
    #[test]
    fn settings_round_trip_and_refuse_empty_or_repeated_lists() {
        let scratch = tempfile::tempdir().expect("scratch");
        let dir = scratch.path();
        let settings = CompareSettings {
            methods: vec![MethodKind::GsLora, MethodKind::NegGradPlus],
            seeds: vec![0, 2],
            reference: Some(MethodKind::GsLora),
            full_model_lr: 3e-4,
            forget: ForgetConfig {
                epochs: 3,
                ..ForgetConfig::default()
            },
        };
        let path = CompareSettings::path(dir);
        write_json(&path, &settings).expect("test value");
        assert_eq!(
            CompareSettings::from_file(&path).expect("test value"),
            Some(settings.clone())
        );
        let run = dir.join("config.json");
        write_json(&run, &settings.forget).expect("test value");
        assert_eq!(CompareSettings::from_file(&run).expect("test value"), None);
        let neg = settings.run_config(MethodKind::NegGradPlus, 2);
        assert_eq!((neg.seed, neg.lr), (2, 3e-4), "a full-model method's rate");
        let gs = settings.run_config(MethodKind::GsLora, 0);
        assert_eq!(gs.lr, settings.forget.lr, "the adapter rate");
        for (broken, needle) in [
            (
                CompareSettings {
                    reference: Some(MethodKind::SalUn),
                    ..settings.clone()
                },
                "not among the methods",
            ),
            (
                CompareSettings {
                    full_model_lr: 0.0,
                    ..settings.clone()
                },
                "rate > 0",
            ),
            (
                CompareSettings {
                    methods: vec![],
                    ..settings.clone()
                },
                "no method",
            ),
            (
                CompareSettings {
                    seeds: vec![1, 1],
                    ..settings.clone()
                },
                "1 twice",
            ),
            (
                CompareSettings {
                    methods: vec![MethodKind::Lora, MethodKind::Lora],
                    ..settings.clone()
                },
                "lora twice",
            ),
        ] {
            let err = broken.validate().expect_err("refused").to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
