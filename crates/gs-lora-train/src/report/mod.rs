//! Result files of a run: `results.json`, `curves.csv`, SVG plots and a results table, from
//! the records of its finished tasks.

mod records;

use std::fmt::Write as _;
use std::path::Path;

pub use records::{EpochRecord, Scores, TaskResult};

use crate::error::Result;
use crate::io::{write_atomic, write_json};

/// Writes `results.json`, `curves.csv`, `accuracy.svg` and `group_norms.svg` into `dir`.
///
/// # Errors
/// When a file cannot be written.
pub fn write_reports(dir: &Path, results: &[TaskResult], curves: &[EpochRecord]) -> Result<()> {
    write_json(&dir.join("results.json"), &results)?;
    let mut csv = String::from("task,epoch,lr,loss,retain,forget,sparsity,prototype\n");
    for r in curves {
        let _ = writeln!(
            csv,
            "{},{},{:e},{},{},{},{},{}",
            r.task, r.epoch, r.lr, r.loss, r.retain, r.forget, r.sparsity, r.prototype
        );
    }
    write_atomic(&dir.join("curves.csv"), csv.as_bytes())?;
    write_atomic(&dir.join("accuracy.svg"), accuracy_svg(results).as_bytes())?;
    write_atomic(
        &dir.join("group_norms.svg"),
        group_norms_svg(results).as_bytes(),
    )
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

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 360.0;
const MARGIN: f64 = 48.0;

fn svg_frame(title: &str, body: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{title}</text>\n{body}</svg>\n",
        WIDTH / 2.0
    )
}

/// A plotted line: name, colour and the value it takes from each task.
type Series = (&'static str, &'static str, fn(&TaskResult) -> Option<f64>);

/// Accuracies (acc_f, acc_r, acc_o, and acc_m in the missing-class setting) after each task,
/// with acc_f before, as lines; a series without values is left out.
fn accuracy_svg(results: &[TaskResult]) -> String {
    let n = results.len().max(1);
    let x = |i: usize| MARGIN + (WIDTH - 2.0 * MARGIN) * (i as f64 + 0.5) / n as f64;
    let y = |acc: f64| HEIGHT - MARGIN - (HEIGHT - 2.0 * MARGIN) * acc / 100.0;
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<line x1=\"{MARGIN}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        y(0.0),
        WIDTH - MARGIN,
        y(0.0)
    );
    for level in [0, 25, 50, 75, 100] {
        let _ = writeln!(
            body,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{level}%</text>",
            MARGIN - 6.0,
            y(level as f64) + 4.0
        );
    }
    let series: [Series; 5] = [
        ("acc_f before", "#999999", |r| Some(r.forget_before)),
        ("acc_f", "#d62728", |r| Some(r.forget_after)),
        ("acc_r", "#2ca02c", |r| Some(r.retain_after)),
        ("acc_o", "#1f77b4", |r| r.old_after),
        ("acc_m", "#9467bd", |r| r.missing_after),
    ];
    let series = series
        .iter()
        .filter(|(_, _, value)| results.iter().any(|r| value(r).is_some()));
    for (k, (name, colour, value)) in series.enumerate() {
        let points: Vec<String> = results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| value(r).map(|v| format!("{:.1},{:.1}", x(i), y(v))))
            .collect();
        let _ = writeln!(
            body,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
            points.join(" ")
        );
        let _ = writeln!(
            body,
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>",
            WIDTH - MARGIN - 80.0,
            40.0 + 14.0 * k as f64
        );
    }
    for i in 0..results.len() {
        let _ = writeln!(
            body,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">task {i}</text>",
            x(i),
            HEIGHT - MARGIN + 16.0
        );
    }
    svg_frame("Accuracy per task (validation split)", &body)
}

/// Group norm per block (rows) and task (columns) as a heat map: the blocks GS-LoRA edited.
fn group_norms_svg(results: &[TaskResult]) -> String {
    let blocks = results
        .iter()
        .map(|r| r.group_norms.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let tasks = results.len().max(1);
    let max = results
        .iter()
        .flat_map(|r| r.group_norms.iter().copied())
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let cell_w = (WIDTH - 2.0 * MARGIN) / tasks as f64;
    let cell_h = (HEIGHT - 2.0 * MARGIN) / blocks as f64;
    let mut body = String::new();
    for (t, r) in results.iter().enumerate() {
        for (b, norm) in r.group_norms.iter().enumerate() {
            // An exactly-zero block (switched off by the proximal step) is grey and says so;
            // the others are shaded by their norm, which is written in the cell.
            let (fill, label) = match *norm == 0.0 {
                true => ("#e0e0e0".to_string(), "0 (off)".to_string()),
                false => {
                    let shade = (255.0 * (1.0 - norm / max)).round() as u8;
                    (format!("rgb(255,{shade},{shade})"), format!("{norm:.3}"))
                }
            };
            let (x, y) = (MARGIN + cell_w * t as f64, MARGIN + cell_h * b as f64);
            let _ = writeln!(
                body,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cell_w:.1}\" height=\"{cell_h:.1}\" fill=\"{fill}\" stroke=\"#ccc\"><title>task {t}, block {b}: {norm:.4}</title></rect>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
                x + cell_w / 2.0,
                y + cell_h / 2.0 + 4.0,
            );
        }
        let _ = writeln!(
            body,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">task {t}</text>",
            MARGIN + cell_w * (t as f64 + 0.5),
            HEIGHT - MARGIN + 16.0
        );
    }
    for b in 0..blocks {
        let _ = writeln!(
            body,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">block {b}</text>",
            MARGIN - 6.0,
            MARGIN + cell_h * (b as f64 + 0.5) + 4.0
        );
    }
    svg_frame(
        &format!("Adapter group norm per block and task (max {max:.3}; grey: exactly zero)"),
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The group-norm picture names the blocks the proximal step switched off and writes every
    /// other block's norm. Catches a zero block drawn like a small one (white either way).
    #[test]
    fn the_group_norm_picture_marks_zero_blocks() {
        let result = TaskResult {
            task: 0,
            forget_classes: vec![1],
            forget_before: 90.0,
            retain_before: 80.0,
            forget_after: 0.0,
            retain_after: 79.0,
            old_after: None,
            missing_after: None,
            retain_and_missing_before: None,
            retain_and_missing_after: None,
            h_mean: 84.3,
            group_norms: vec![0.0, 1e-4, 2.5],
            zero_groups: vec![0],
            seconds: 1.0,
        };
        let svg = group_norms_svg(&[result]);
        assert_eq!(svg.matches("0 (off)").count(), 1, "{svg}");
        assert!(svg.contains(">0.000<") && svg.contains(">2.500<"), "{svg}");
        assert!(svg.contains("fill=\"#e0e0e0\" stroke=\"#ccc\"><title>task 0, block 0: 0.0000"));
    }
}
