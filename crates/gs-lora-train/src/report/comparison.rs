//! Several methods' runs side by side (`gs-lora compare`): per method and task, the mean ±
//! standard deviation over seeds of each metric, written as `comparison.md`, `.csv` and
//! `.json`, with two pictures: H per task and method, and acc_r against acc_f.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::TaskResult;
use super::plots::{Picture, write_plot};
use crate::error::{Result, TrainError};
use crate::io::{write_atomic, write_json};

/// The mean and the sample standard deviation (`n − 1`; 0 for one value) of one metric over
/// seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Mean over the seeds.
    pub mean: f64,
    /// Sample standard deviation over the seeds.
    pub std: f64,
}

impl Spread {
    /// The spread of `values`, `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = match values.len() {
            1 => 0.0,
            _ => (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt(),
        };
        Some(Self { mean, std })
    }

    /// `mean ± std` with `digits` decimals.
    fn cell(self, digits: usize) -> String {
        format!("{:.digits$} ± {:.digits$}", self.mean, self.std)
    }
}

/// One method's finished runs, one per seed.
#[derive(Debug, Clone)]
pub struct MethodRuns {
    /// The method's name.
    pub method: String,
    /// Per seed, the results of its run.
    pub runs: Vec<(u64, Vec<TaskResult>)>,
}

/// One method on one task, over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonRow {
    /// The method's name.
    pub method: String,
    /// 0-based task index.
    pub task: usize,
    /// The seeds averaged over.
    pub seeds: Vec<u64>,
    /// Score on the forget classes before the task.
    pub acc_f_before: Spread,
    /// Score on the remaining classes before the task.
    pub acc_r_before: Spread,
    /// Score on the forget classes after the task.
    pub acc_f: Spread,
    /// Score on the remaining classes after the task.
    pub acc_r: Spread,
    /// Score on classes erased by earlier tasks (none on the first task).
    pub acc_o: Option<Spread>,
    /// Harmonic mean of the forgetting drop and `acc_r`.
    pub h_mean: Spread,
    /// Membership-attack efficacy on the forget set, confidence attack (classification).
    pub mia: Option<Spread>,
    /// Wall time of the task (s).
    pub seconds: Spread,
    /// Scalars trained.
    pub trainable_params: Spread,
    /// Peak resident memory of the task (MiB), where measured.
    pub peak_rss_mib: Option<Spread>,
}

/// The rows of `methods`, method by method and task by task.
///
/// # Errors
/// A method without runs, or runs of one method with different task counts.
pub fn comparison_rows(methods: &[MethodRuns]) -> Result<Vec<ComparisonRow>> {
    let mut rows = Vec::new();
    for method in methods {
        let Some((_, first)) = method.runs.first() else {
            return Err(TrainError::Data(format!(
                "method {} has no finished run to compare",
                method.method
            )));
        };
        if let Some((seed, run)) = method.runs.iter().find(|(_, r)| r.len() != first.len()) {
            return Err(TrainError::Data(format!(
                "method {}: the run of seed {seed} finished {} tasks, another {}",
                method.method,
                run.len(),
                first.len()
            )));
        }
        for task in 0..first.len() {
            let results: Vec<&TaskResult> = method.runs.iter().map(|(_, r)| &r[task]).collect();
            let all = |value: fn(&TaskResult) -> f64| -> Spread {
                let values: Vec<f64> = results.iter().map(|r| value(r)).collect();
                Spread::of(&values).unwrap_or(Spread {
                    mean: 0.0,
                    std: 0.0,
                })
            };
            let some = |value: fn(&TaskResult) -> Option<f64>| -> Option<Spread> {
                let values: Option<Vec<f64>> = results.iter().map(|r| value(r)).collect();
                values.and_then(|v| Spread::of(&v))
            };
            rows.push(ComparisonRow {
                method: method.method.clone(),
                task,
                seeds: method.runs.iter().map(|(seed, _)| *seed).collect(),
                acc_f_before: all(|r| r.forget_before),
                acc_r_before: all(|r| r.retain_before),
                acc_f: all(|r| r.forget_after),
                acc_r: all(|r| r.retain_after),
                acc_o: some(|r| r.old_after),
                h_mean: all(|r| r.h_mean),
                mia: some(|r| r.mia.map(|m| m.confidence)),
                seconds: all(|r| r.seconds),
                trainable_params: all(|r| r.trainable_params as f64),
                peak_rss_mib: some(|r| r.peak_rss_mib),
            });
        }
    }
    Ok(rows)
}

/// The rows as a Markdown table; `metric` names the score (`acc`, `AP`).
pub fn comparison_table(rows: &[ComparisonRow], metric: &str) -> String {
    let mut table = format!(
        "| method | task | seeds | {metric}_f before | {metric}_r before | {metric}_f | \
         {metric}_r | {metric}_o | H | MIA | seconds | trained | peak MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let optional = |s: Option<Spread>, digits| s.map_or("-".into(), |s| s.cell(digits));
    for r in rows {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
            r.method,
            r.task,
            r.seeds.len(),
            r.acc_f_before.cell(2),
            r.acc_r_before.cell(2),
            r.acc_f.cell(2),
            r.acc_r.cell(2),
            optional(r.acc_o, 2),
            r.h_mean.cell(2),
            optional(r.mia, 1),
            r.seconds.cell(1),
            r.trainable_params.mean,
            optional(r.peak_rss_mib, 0),
        );
    }
    table
}

/// The rows as CSV: a mean and a std column per metric (empty where not measured).
pub fn comparison_csv(rows: &[ComparisonRow]) -> String {
    let metrics = [
        "acc_f_before",
        "acc_r_before",
        "acc_f",
        "acc_r",
        "acc_o",
        "h_mean",
        "mia",
        "seconds",
        "trainable_params",
        "peak_rss_mib",
    ];
    let mut csv = String::from("method,task,seeds");
    for m in metrics {
        let _ = write!(csv, ",{m}_mean,{m}_std");
    }
    csv.push('\n');
    for r in rows {
        let _ = write!(csv, "{},{},{}", r.method, r.task, r.seeds.len());
        let spreads = [
            Some(r.acc_f_before),
            Some(r.acc_r_before),
            Some(r.acc_f),
            Some(r.acc_r),
            r.acc_o,
            Some(r.h_mean),
            r.mia,
            Some(r.seconds),
            Some(r.trainable_params),
            r.peak_rss_mib,
        ];
        for s in spreads {
            match s {
                Some(s) => write!(csv, ",{},{}", s.mean, s.std),
                None => write!(csv, ",,"),
            }
            .ok();
        }
        csv.push('\n');
    }
    csv
}

/// Writes `comparison.{md,csv,json}`, `h_per_task.{svg,png}` and
/// `retain_vs_forget.{svg,png}` into `dir`.
///
/// # Errors
/// When a file cannot be written or a plot drawn.
pub fn write_comparison(dir: &Path, rows: &[ComparisonRow], metric: &str) -> Result<()> {
    write_atomic(
        &dir.join("comparison.md"),
        comparison_table(rows, metric).as_bytes(),
    )?;
    write_atomic(&dir.join("comparison.csv"), comparison_csv(rows).as_bytes())?;
    write_json(&dir.join("comparison.json"), &rows)?;
    write_plot(dir, Picture::HMean(rows))?;
    write_plot(dir, Picture::RetainForget(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(task: usize, forget_after: f64, retain_after: f64) -> TaskResult {
        TaskResult {
            task,
            forget_classes: vec![task],
            forget_before: 90.0,
            retain_before: 80.0,
            forget_after,
            retain_after,
            old_after: None,
            missing_after: None,
            retain_and_missing_before: None,
            retain_and_missing_after: None,
            h_mean: 50.0,
            group_norms: vec![],
            zero_groups: vec![],
            seconds: 2.0,
            mia: None,
            trainable_params: 100,
            peak_rss_mib: Some(10.0),
        }
    }

    /// Means and sample deviations by hand (values 2 and 4: mean 3, std √2), per method and
    /// task in order; a metric missing in one seed is missing for the row. Catches the
    /// population deviation, tasks or methods mixed, and runs of unequal length accepted.
    #[test]
    fn rows_are_means_and_sample_deviations_per_method_and_task() {
        let gs = MethodRuns {
            method: "gs-lora".into(),
            runs: vec![
                (0, vec![result(0, 2.0, 70.0), result(1, 0.0, 60.0)]),
                (1, vec![result(0, 4.0, 74.0), result(1, 0.0, 64.0)]),
            ],
        };
        let mut one = result(0, 10.0, 50.0);
        one.peak_rss_mib = None;
        let ft = MethodRuns {
            method: "fine-tune".into(),
            runs: vec![(0, vec![one, result(1, 5.0, 40.0)])],
        };
        let rows = comparison_rows(&[gs.clone(), ft]).expect("test value");
        assert_eq!(rows.len(), 4);
        assert_eq!((rows[0].method.as_str(), rows[0].task), ("gs-lora", 0));
        assert_eq!(rows[0].acc_f.mean, 3.0);
        assert!((rows[0].acc_f.std - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(rows[0].acc_r.mean, 72.0);
        assert_eq!(rows[1].acc_r.mean, 62.0);
        assert_eq!(rows[0].seeds, vec![0, 1]);
        assert_eq!(
            (rows[2].method.as_str(), rows[2].acc_f.std),
            ("fine-tune", 0.0)
        );
        assert_eq!(rows[2].peak_rss_mib, None);
        assert_eq!(
            rows[3].peak_rss_mib,
            Some(Spread {
                mean: 10.0,
                std: 0.0
            })
        );
        let table = comparison_table(&rows, "acc");
        assert!(table.contains("| gs-lora | 0 | 2 | 90.00 ± 0.00 | 80.00 ± 0.00 | 3.00 ± 1.41 |"));
        let csv = comparison_csv(&rows);
        assert_eq!(csv.lines().count(), 5);
        assert!(
            csv.lines()
                .nth(3)
                .expect("test value")
                .ends_with(",100,0,,"),
            "{csv}"
        );
        let mut short = gs;
        short.runs[1].1.pop();
        assert!(comparison_rows(&[short]).is_err());
        assert!(
            comparison_rows(&[MethodRuns {
                method: "x".into(),
                runs: vec![]
            }])
            .is_err()
        );
    }
}
