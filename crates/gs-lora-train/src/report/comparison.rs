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

/// A method's distance to the reference method on one task: per seed the absolute difference
/// of each metric from the reference's run of the same seed, then its spread over the seeds
/// (SalUn's gap to Retrain; `average` is its "Avg. Gap" over the metrics measured).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// `|acc_f − acc_f of the reference|`.
    pub acc_f: Spread,
    /// `|acc_r − acc_r of the reference|`.
    pub acc_r: Spread,
    /// `|MIA − MIA of the reference|`, where both measured it.
    pub mia: Option<Spread>,
    /// The mean of the metric gaps, per seed.
    pub average: Spread,
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
    /// The confidence attack's accuracy on its members and non-members (50: chance).
    pub mia_attack_accuracy: Option<Spread>,
    /// Wall time of the task (s).
    pub seconds: Spread,
    /// Scalars trained.
    pub trainable_params: Spread,
    /// Peak resident memory of the task (MiB), where measured.
    pub peak_rss_mib: Option<Spread>,
    /// The distance to the reference method (none for the reference itself, or without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
}

/// The rows of `methods`, method by method and task by task, with their gap to the method
/// named `reference` where one is named.
///
/// # Errors
/// A method without runs, runs of one method with different task counts, or a reference that
/// is not among the methods or lacks a seed or task of another method.
pub fn comparison_rows(
    methods: &[MethodRuns],
    reference: Option<&str>,
) -> Result<Vec<ComparisonRow>> {
    let reference = match reference {
        Some(name) => Some(methods.iter().find(|m| m.method == name).ok_or_else(|| {
            TrainError::Data(format!("the reference method {name} is not compared"))
        })?),
        None => None,
    };
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
                mia_attack_accuracy: some(|r| r.mia.map(|m| m.attack_accuracy)),
                seconds: all(|r| r.seconds),
                trainable_params: all(|r| r.trainable_params as f64),
                peak_rss_mib: some(|r| r.peak_rss_mib),
                gap: match reference {
                    Some(reference) if reference.method != method.method => {
                        Some(gap(method, reference, task)?)
                    }
                    _ => None,
                },
            });
        }
    }
    Ok(rows)
}

/// The gap of `method` to `reference` on `task`, seed by seed.
fn gap(method: &MethodRuns, reference: &MethodRuns, task: usize) -> Result<Gap> {
    let mut gaps: [Vec<f64>; 4] = Default::default();
    for (seed, run) in &method.runs {
        let paired = reference
            .runs
            .iter()
            .find(|(s, _)| s == seed)
            .and_then(|(_, r)| r.get(task))
            .ok_or_else(|| {
                TrainError::Data(format!(
                    "the reference {} has no task {task} of seed {seed}",
                    reference.method
                ))
            })?;
        let r = &run[task];
        let acc_f = (r.forget_after - paired.forget_after).abs();
        let acc_r = (r.retain_after - paired.retain_after).abs();
        let mia = match (r.mia, paired.mia) {
            (Some(a), Some(b)) => Some((a.confidence - b.confidence).abs()),
            _ => None,
        };
        let measured: Vec<f64> = [Some(acc_f), Some(acc_r), mia]
            .into_iter()
            .flatten()
            .collect();
        gaps[0].push(acc_f);
        gaps[1].push(acc_r);
        gaps[2].extend(mia);
        gaps[3].push(measured.iter().sum::<f64>() / measured.len() as f64);
    }
    let spread = |values: &[f64]| {
        Spread::of(values).ok_or_else(|| TrainError::Data("a gap without runs".into()))
    };
    Ok(Gap {
        acc_f: spread(&gaps[0])?,
        acc_r: spread(&gaps[1])?,
        mia: (gaps[2].len() == gaps[0].len())
            .then(|| Spread::of(&gaps[2]))
            .flatten(),
        average: spread(&gaps[3])?,
    })
}

/// The rows as a Markdown table; `metric` names the score (`acc`, `AP`).
pub fn comparison_table(rows: &[ComparisonRow], metric: &str) -> String {
    let mut table = format!(
        "| method | task | seeds | {metric}_f before | {metric}_r before | {metric}_f | \
         {metric}_r | {metric}_o | H | MIA | attack acc | gap | seconds | trained | peak MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let optional = |s: Option<Spread>, digits| s.map_or("-".into(), |s| s.cell(digits));
    for r in rows {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
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
            optional(r.mia_attack_accuracy, 1),
            optional(r.gap.map(|g| g.average), 2),
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
        "mia_attack_accuracy",
        "seconds",
        "trainable_params",
        "peak_rss_mib",
        "gap_acc_f",
        "gap_acc_r",
        "gap_mia",
        "gap",
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
            r.mia_attack_accuracy,
            Some(r.seconds),
            Some(r.trainable_params),
            r.peak_rss_mib,
            r.gap.map(|g| g.acc_f),
            r.gap.map(|g| g.acc_r),
            r.gap.and_then(|g| g.mia),
            r.gap.map(|g| g.average),
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
            machine: None,
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
        let rows = comparison_rows(&[gs.clone(), ft.clone()], None).expect("test value");
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
                .ends_with(",100,0,,,,,,,,,,"),
            "{csv}"
        );
        let mut short = gs;
        short.runs[1].1.pop();
        assert!(comparison_rows(&[short], None).is_err());
        assert!(
            comparison_rows(
                &[MethodRuns {
                    method: "x".into(),
                    runs: vec![]
                }],
                None
            )
            .is_err()
        );
    }

    /// Gaps to a reference are absolute per-seed differences, paired by seed: fine-tune's
    /// seed 0 against gs-lora's seed 0 on task 0 is |10 − 2| = 8 on acc_f and |50 − 70| = 20
    /// on acc_r, average 14 (no attack measured); the reference has no gap; a reference
    /// without a seed the other ran is refused. Catches a signed gap, the reference's mean
    /// used instead of its paired seed, and a gap on the reference itself.
    #[test]
    fn gaps_pair_each_seed_with_the_reference() {
        let gs = MethodRuns {
            method: "gs-lora".into(),
            runs: vec![
                (0, vec![result(0, 2.0, 70.0)]),
                (1, vec![result(0, 4.0, 74.0)]),
            ],
        };
        let ft = MethodRuns {
            method: "fine-tune".into(),
            runs: vec![(0, vec![result(0, 10.0, 50.0)])],
        };
        let rows = comparison_rows(&[gs.clone(), ft.clone()], Some("gs-lora")).expect("rows");
        assert_eq!(rows[0].gap, None);
        let gap = rows[1].gap.expect("gap");
        assert_eq!((gap.acc_f.mean, gap.acc_r.mean, gap.mia), (8.0, 20.0, None));
        assert_eq!(gap.average.mean, 14.0);
        assert!(comparison_table(&rows, "acc").contains("| 14.00 ± 0.00 |"));
        assert!(comparison_rows(&[gs, ft], Some("fine-tune")).is_err());
    }
}
