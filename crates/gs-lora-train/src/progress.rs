//! Progress reporting: a live line per phase on a terminal, plain lines otherwise.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Reports the progress of one phase (an epoch of a task, say) on standard error.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: usize,
    started: Instant,
    live: bool,
}

impl Progress {
    /// A phase called `label` of `total` steps.
    pub fn new(label: impl Into<String>, total: usize) -> Self {
        Self {
            label: label.into(),
            total: total.max(1),
            started: Instant::now(),
            live: std::io::stderr().is_terminal(),
        }
    }

    /// Step `done` of the phase finished; `status` is e.g. the running loss.
    pub fn update(&self, done: usize, status: &str) {
        if !self.live {
            return;
        }
        let fraction = done as f64 / self.total as f64;
        let width = 24;
        let filled = (fraction * width as f64).round() as usize;
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = if done > 0 {
            elapsed / done as f64 * (self.total - done) as f64
        } else {
            0.0
        };
        eprint!(
            "\r{} [{}{}] {done}/{} {status} ETA {eta:.0}s   ",
            self.label,
            "#".repeat(filled),
            "-".repeat(width - filled.min(width)),
            self.total,
        );
        std::io::stderr().flush().ok();
    }

    /// The phase is over: one final line with `summary`.
    pub fn finish(&self, summary: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        if self.live {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{} {summary} ({elapsed:.1}s)", self.label);
    }
}
