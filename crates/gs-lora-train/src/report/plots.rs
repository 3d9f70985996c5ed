//! The pictures, drawn with plotters as SVG and PNG: a run's accuracies per task and its
//! adapters' group norm per block and task (the blocks GS-LoRA edited, and those the proximal
//! step switched off); a comparison's H per task and method, and acc_r against acc_f.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::TaskResult;
use super::comparison::ComparisonRow;
use crate::error::{Result, TrainError};
use crate::io::write_atomic;

const SIZE: (u32, u32) = (640, 360);
const FONT: &str = "sans-serif";

/// A plotted line: name, colour and the value it takes from each task.
type Series = (&'static str, RGBColor, fn(&TaskResult) -> Option<f64>);

const ACCURACIES: [Series; 5] = [
    ("acc_f before", RGBColor(0x99, 0x99, 0x99), |r| {
        Some(r.forget_before)
    }),
    ("acc_f", RGBColor(0xd6, 0x27, 0x28), |r| {
        Some(r.forget_after)
    }),
    ("acc_r", RGBColor(0x2c, 0xa0, 0x2c), |r| {
        Some(r.retain_after)
    }),
    ("acc_o", RGBColor(0x1f, 0x77, 0xb4), |r| r.old_after),
    ("acc_m", RGBColor(0x94, 0x67, 0xbd), |r| r.missing_after),
];

/// Grey for a block whose adapters are exactly zero.
const OFF: RGBColor = RGBColor(0xe0, 0xe0, 0xe0);

/// Writes `accuracy.{svg,png}` and `group_norms.{svg,png}` into `dir`.
///
/// # Errors
/// A plot that cannot be drawn, or a file that cannot be written.
pub(super) fn write_plots(dir: &Path, results: &[TaskResult]) -> Result<()> {
    write_plot(dir, Picture::Accuracy(results))?;
    write_plot(dir, Picture::GroupNorms(results))
}

/// A picture and what it shows.
#[derive(Debug, Clone, Copy)]
pub(super) enum Picture<'a> {
    /// A run's accuracies per task.
    Accuracy(&'a [TaskResult]),
    /// A run's group norms per block and task.
    GroupNorms(&'a [TaskResult]),
    /// A comparison's H per task, a line per method.
    HMean(&'a [ComparisonRow]),
    /// A comparison's acc_r against acc_f, a point per method and task.
    RetainForget(&'a [ComparisonRow]),
}

impl Picture<'_> {
    fn name(self) -> &'static str {
        match self {
            Picture::Accuracy(_) => "accuracy",
            Picture::GroupNorms(_) => "group_norms",
            Picture::HMean(_) => "h_per_task",
            Picture::RetainForget(_) => "retain_vs_forget",
        }
    }

    fn draw<DB: DrawingBackend>(self, area: &DrawingArea<DB, Shift>) -> Drawn {
        area.fill(&WHITE).map_err(text)?;
        match self {
            Picture::Accuracy(results) => draw_accuracy(area, results),
            Picture::GroupNorms(results) => draw_group_norms(area, results),
            Picture::HMean(rows) => draw_h_mean(area, rows),
            Picture::RetainForget(rows) => draw_retain_forget(area, rows),
        }?;
        area.present().map_err(text)
    }
}

/// The errors of drawing on one backend, as text (the two backends' types differ).
type Drawn = std::result::Result<(), String>;

fn text<E: std::error::Error + Send + Sync>(err: DrawingAreaErrorKind<E>) -> String {
    err.to_string()
}

/// Draws `picture` twice, as `NAME.svg` and `NAME.png`, each written atomically.
pub(super) fn write_plot(dir: &Path, picture: Picture) -> Result<()> {
    let name = picture.name();
    register_font();
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |message| TrainError::Plot { path, message }
    };
    let svg_path = dir.join(format!("{name}.svg"));
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        picture.draw(&area).map_err(failed(&svg_path))?;
    }
    write_atomic(&svg_path, svg.as_bytes())?;

    let png_path = dir.join(format!("{name}.png"));
    let (width, height) = SIZE;
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let area = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        picture.draw(&area).map_err(failed(&png_path))?;
    }
    let image = image::RgbImage::from_raw(width, height, pixels)
        .ok_or_else(|| failed(&png_path)("the pixel buffer does not fit the size".into()))?;
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|err| failed(&png_path)(err.to_string()))?;
    write_atomic(&png_path, &png)
}

/// The text of the pictures is DejaVu Sans, embedded: a PNG needs the glyphs, and a machine
/// may have no fonts installed.
fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The embedded font is a valid TrueType file; were it refused, plotters would report
        // the missing font when drawing text, and the plot's error names the file.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Accuracies (acc_f, acc_r, acc_o, and acc_m in the missing-class setting) after each task,
/// with acc_f before, as lines with a point per task; a series without values is left out.
fn draw_accuracy<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    results: &[TaskResult],
) -> Drawn {
    let lines = ACCURACIES
        .iter()
        .map(|(name, colour, value)| {
            let points = results
                .iter()
                .enumerate()
                .filter_map(|(i, r)| value(r).map(|v| (i, v)))
                .collect();
            (name.to_string(), *colour, points)
        })
        .collect();
    draw_per_task(area, "Accuracy per task", "%", results.len(), lines)
}

/// A named line of values per task, `(task, value)` points.
type TaskLine = (String, RGBColor, Vec<(usize, f64)>);

/// Lines of values in 0–100 over `tasks` tasks, each with a point per task it has and a legend
/// entry (a line without points is left out); `unit` follows the y labels.
fn draw_per_task<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    unit: &str,
    tasks: usize,
    lines: Vec<TaskLine>,
) -> Drawn {
    let tasks = tasks.max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 16))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(44)
        // A discrete range includes its end: tasks 0..=tasks-1.
        .build_cartesian_2d((0..tasks - 1).into_segmented(), 0.0..100.0)
        .map_err(text)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(tasks)
        .x_label_formatter(&|segment| match segment {
            SegmentValue::CenterOf(task) if *task < tasks => format!("task {task}"),
            _ => String::new(),
        })
        .y_labels(6)
        .y_label_formatter(&|value| format!("{value:.0}{unit}"))
        .light_line_style(WHITE)
        .label_style((FONT, 12))
        .draw()
        .map_err(text)?;
    for (name, colour, points) in lines.into_iter().filter(|(_, _, p)| !p.is_empty()) {
        let points = points
            .into_iter()
            .map(|(task, value)| (SegmentValue::CenterOf(task), value));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)).point_size(3))
            .map_err(text)?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
    }
    legend(&mut chart)
}

/// Colours of the methods of a comparison, in order (cycled).
const METHOD_COLOURS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The methods of `rows` in order of appearance, each with its colour and rows.
fn by_method(rows: &[ComparisonRow]) -> Vec<(&str, RGBColor, Vec<&ComparisonRow>)> {
    let mut methods: Vec<(&str, RGBColor, Vec<&ComparisonRow>)> = Vec::new();
    for row in rows {
        match methods.iter_mut().find(|(m, _, _)| *m == row.method) {
            Some((_, _, rows)) => rows.push(row),
            None => {
                let colour = METHOD_COLOURS[methods.len() % METHOD_COLOURS.len()];
                methods.push((&row.method, colour, vec![row]));
            }
        }
    }
    methods
}

/// Draws the legend of `chart`'s labelled series.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Drawn {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()
        .map_err(text)
}

/// Mean H per task, a line per method.
fn draw_h_mean<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, rows: &[ComparisonRow]) -> Drawn {
    let tasks = rows.iter().map(|r| r.task + 1).max().unwrap_or(1);
    let lines = by_method(rows)
        .into_iter()
        .map(|(method, colour, rows)| {
            let points = rows.iter().map(|r| (r.task, r.h_mean.mean)).collect();
            (method.to_string(), colour, points)
        })
        .collect();
    draw_per_task(area, "H per task (mean over seeds)", "", tasks, lines)
}

/// Mean acc_r against mean acc_f, a point per method and task labelled with the task: the
/// upper left is forgetting that keeps the rest.
fn draw_retain_forget<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[ComparisonRow],
) -> Drawn {
    let mut chart = ChartBuilder::on(area)
        .caption("acc_r against acc_f per task (mean over seeds)", (FONT, 16))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(44)
        .build_cartesian_2d(0.0..100.0, 0.0..100.0)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc("acc_f (%)")
        .y_desc("acc_r (%)")
        .light_line_style(WHITE)
        .label_style((FONT, 12))
        .draw()
        .map_err(text)?;
    for (method, colour, rows) in by_method(rows) {
        let points: Vec<(f64, f64, usize)> = rows
            .iter()
            .map(|r| (r.acc_f.mean, r.acc_r.mean, r.task))
            .collect();
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(x, y, _)| Circle::new((x, y), 4, colour.filled())),
            )
            .map_err(text)?
            .label(method)
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
        chart
            .draw_series(points.iter().map(|&(x, y, task)| {
                Text::new(
                    format!("{task}"),
                    (x, y),
                    (FONT, 11).into_font().color(&colour),
                )
            }))
            .map_err(text)?;
    }
    legend(&mut chart)
}

/// Group norm per block (rows, block 0 on top) and task (columns) as a heat map: each cell
/// shaded by its norm, which is written in it; an exactly-zero block (switched off by the
/// proximal step) is grey and says `0 (off)`.
fn draw_group_norms<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    results: &[TaskResult],
) -> Drawn {
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
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Adapter group norm per block and task (max {max:.3}; grey: exactly zero)"),
            (FONT, 14),
        )
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(60)
        // A discrete range includes its end: tasks 0..=tasks-1, rows 0..=blocks-1.
        .build_cartesian_2d(
            (0..tasks - 1).into_segmented(),
            (0..blocks - 1).into_segmented(),
        )
        .map_err(text)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(tasks)
        .y_labels(blocks)
        .x_label_formatter(&|segment| match segment {
            SegmentValue::CenterOf(task) if *task < tasks => format!("task {task}"),
            _ => String::new(),
        })
        // Rows count down from the top: block 0 is the first row.
        .y_label_formatter(&|segment| match segment {
            SegmentValue::CenterOf(row) if *row < blocks => format!("block {}", blocks - 1 - row),
            _ => String::new(),
        })
        .label_style((FONT, 12))
        .draw()
        .map_err(text)?;
    let cells = results.iter().enumerate().flat_map(|(task, r)| {
        r.group_norms
            .iter()
            .enumerate()
            .map(move |(block, &norm)| (task, blocks - 1 - block, norm))
    });
    for (task, row, norm) in cells {
        let (fill, label) = match norm == 0.0 {
            true => (OFF, "0 (off)".to_string()),
            false => {
                let shade = (255.0 * (1.0 - norm / max)).round() as u8;
                (RGBColor(255, shade, shade), format!("{norm:.3}"))
            }
        };
        let corner = |t: usize, r: usize| (SegmentValue::Exact(t), SegmentValue::Exact(r));
        chart
            .draw_series([
                Rectangle::new(
                    [corner(task, row), corner(task + 1, row + 1)],
                    fill.filled(),
                ),
                Rectangle::new(
                    [corner(task, row), corner(task + 1, row + 1)],
                    RGBColor(0xcc, 0xcc, 0xcc),
                ),
            ])
            .map_err(text)?;
        chart
            .draw_series([Text::new(
                label,
                (SegmentValue::CenterOf(task), SegmentValue::CenterOf(row)),
                (FONT, 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            )])
            .map_err(text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(task: usize, group_norms: Vec<f64>) -> TaskResult {
        TaskResult {
            task,
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
            zero_groups: vec![],
            group_norms,
            seconds: 1.0,
            mia: None,
            trainable_params: 0,
            peak_rss_mib: None,
            machine: None,
        }
    }

    /// Both pictures are written as SVG and PNG; the group-norm picture names the blocks the
    /// proximal step switched off, writes every other block's norm and shades the largest
    /// full red; the PNG has its text drawn (the embedded font). Catches a zero block drawn
    /// like a small one (white either way), a series without values drawn, and a PNG without
    /// glyphs.
    #[test]
    fn both_pictures_are_written_and_mark_zero_blocks() {
        let scratch = tempfile::tempdir().expect("scratch");
        let dir = scratch.path();
        let results = [
            result(0, vec![0.0, 1e-4, 2.5]),
            result(1, vec![0.5, 0.0, 1.0]),
        ];
        write_plots(dir, &results).expect("plots");

        let svg = std::fs::read_to_string(dir.join("group_norms.svg")).expect("svg");
        // plotters writes each text on a line of its own.
        assert_eq!(svg.matches("\n0 (off)\n").count(), 2, "{svg}");
        for label in ["0.000", "2.500", "0.500", "block 0", "block 2", "task 1"] {
            let label = format!("\n{label}\n");
            assert!(svg.contains(&label), "`{label}` in {svg}");
        }
        let accuracy = std::fs::read_to_string(dir.join("accuracy.svg")).expect("svg");
        assert!(accuracy.contains("\nacc_f before\n") && accuracy.contains("\nacc_r\n"));
        assert!(
            !accuracy.contains("\nacc_o\n"),
            "no task has acc_o: {accuracy}"
        );

        let png = image::open(dir.join("group_norms.png"))
            .expect("png")
            .to_rgb8();
        assert_eq!(png.dimensions(), SIZE);
        let count = |colour: [u8; 3]| png.pixels().filter(|p| p.0 == colour).count();
        assert!(count([0xe0, 0xe0, 0xe0]) > 1000, "the zero blocks are grey");
        assert!(count([255, 0, 0]) > 1000, "the largest norm is full red");
        let accuracy = image::open(dir.join("accuracy.png"))
            .expect("png")
            .to_rgb8();
        let caption_ink = accuracy
            .enumerate_pixels()
            .filter(|(_, y, p)| *y < 30 && p.0.iter().all(|&c| c < 128))
            .count();
        assert!(
            caption_ink > 50,
            "the caption is drawn: {caption_ink} dark pixels"
        );
        // One task, and none yet (a run's reports before its first task): drawn all the same.
        write_plots(dir, &results[..1]).expect("one task");
        write_plots(dir, &[]).expect("no task");
    }
}
