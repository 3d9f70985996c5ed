//! Result files of a run: `results.json`, `curves.csv`, plots (SVG and PNG) and a results
//! table, from the records of its finished tasks.

mod comparison;
mod machine;
mod plots;
mod records;

use std::fmt::Write as _;
use std::path::Path;

pub use comparison::{
    ComparisonRow, MethodRuns, Spread, comparison_csv, comparison_rows, comparison_table,
    write_comparison,
};
pub use machine::Machine;
pub use records::{EpochRecord, Scores, TaskResult};

use crate::error::Result;
use crate::io::{write_atomic, write_json};

/// Writes `results.json`, `curves.csv`, `accuracy.{svg,png}` and `group_norms.{svg,png}` into
/// `dir`.
///
/// # Errors
/// When a file cannot be written.
pub fn write_reports(dir: &Path, results: &[TaskResult], curves: &[EpochRecord]) -> Result<()> {
    write_json(&dir.join("results.json"), &results)?;
    let mut csv = String::from("task,epoch,lr,loss,retain,forget,penalty,prototype\n");
    for r in curves {
        let _ = writeln!(
            csv,
            "{},{},{:e},{},{},{},{},{}",
            r.task, r.epoch, r.lr, r.loss, r.retain, r.forget, r.penalty, r.prototype
        );
    }
    write_atomic(&dir.join("curves.csv"), csv.as_bytes())?;
    plots::write_plots(dir, results)
}

/// A Markdown table of the per-task metrics, as the paper reports them; `metric` names the
/// score (`acc` for top-1 accuracy, `AP` for detection). Runs of the missing-class setting get
/// two more columns: the missing classes, and the remaining and missing ones together.
pub fn results_table(results: &[TaskResult], metric: &str) -> String {
    let missing = results.iter().any(|r| r.missing_after.is_some());
    let (extra_head, extra_rule) = match missing {
        true => (format!(" {metric}_m | {metric}_rm |"), "---|---|"),
        false => (String::new(), ""),
    };
    let mut table = format!(
        "| task | forget | {metric}_f before | {metric}_r before | {metric}_f | {metric}_r | \
         {metric}_o |{extra_head} H | zeroed blocks | seconds |\n\
         |---|---|---|---|---|---|---|{extra_rule}---|---|---|\n"
    );
    let cell = |value: Option<f64>| value.map_or("-".into(), |a| format!("{a:.2}"));
    for r in results {
        let extra = match missing {
            true => format!(
                " {} | {} |",
                cell(r.missing_after),
                cell(r.retain_and_missing_after)
            ),
            false => String::new(),
        };
        let _ = writeln!(
            table,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} |{extra} {:.2} | {} | {:.1} |",
            r.task,
            r.forget_classes.len(),
            r.forget_before,
            r.retain_before,
            r.forget_after,
            r.retain_after,
            cell(r.old_after),
            r.h_mean,
            r.zero_groups.len(),
            r.seconds
        );
    }
    table
}
