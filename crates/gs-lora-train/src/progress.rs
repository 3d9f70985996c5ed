//! Progress reporting: an `indicatif` bar per phase (steps, rate, ETA) while standard error is a
//! terminal, and one plain summary line per phase either way, so that logs read the same.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reports the progress of one phase (an epoch of a task, say) on standard error.
#[derive(Debug)]
pub struct Progress {
    label: String,
    bar: ProgressBar,
    started: Instant,
}

impl Progress {
    /// A phase called `label` of `total` steps.
    pub fn new(label: impl Into<String>, total: usize) -> Self {
        let label = label.into();
        // `stderr()` hides the bar when standard error is not a terminal (a log file, CI).
        let bar =
            ProgressBar::with_draw_target(Some(total.max(1) as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:24}] {pos}/{len} {msg} {per_sec} ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("#>-"));
        }
        bar.set_prefix(label.clone());
        Self {
            label,
            bar,
            started: Instant::now(),
        }
    }

    /// Step `done` of the phase finished; `status` is e.g. the running loss.
    pub fn update(&self, done: usize, status: &str) {
        self.bar.set_message(status.to_string());
        self.bar.set_position(done as u64);
    }

    /// The phase is over: the bar goes, one line with `summary` stays.
    pub fn finish(&self, summary: &str) {
        self.bar.finish_and_clear();
        let elapsed = self.started.elapsed().as_secs_f64();
        eprintln!("{} {summary} ({elapsed:.1}s)", self.label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bar counts the phase's steps and shows the latest status; an empty phase still has
    /// one step (no division by zero in the rate or ETA).
    #[test]
    fn a_bar_tracks_its_steps_and_status() {
        let progress = Progress::new("task 0 epoch 1/2", 4);
        progress.update(3, "loss 0.5");
        assert_eq!(progress.bar.length(), Some(4));
        assert_eq!(progress.bar.position(), 3);
        assert_eq!(progress.bar.message(), "loss 0.5");
        progress.finish("done");
        assert!(progress.bar.is_finished());
        assert_eq!(Progress::new("empty", 0).bar.length(), Some(1));
    }
}
