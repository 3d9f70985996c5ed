//! The peak resident memory of a stretch of work (Linux: `VmHWM` of `/proc/self/status`, reset
//! at the start through `/proc/self/clear_refs`, so each task of a process reports its own).

use std::fs;

/// Measures the peak resident memory from [`PeakMemory::start`] on.
#[derive(Debug)]
pub struct PeakMemory {
    /// Whether the system's peak could be reset; otherwise the peak is the process's.
    reset: bool,
}

impl PeakMemory {
    /// Starts a measurement, resetting the system's record of the peak where it can.
    pub fn start() -> Self {
        Self {
            reset: fs::write("/proc/self/clear_refs", "5").is_ok(),
        }
    }

    /// The peak resident memory since [`Self::start`] in MiB; `None` where the system does
    /// not report it or could not reset it (a process-wide peak would mislead).
    pub fn mib(&self) -> Option<f64> {
        if !self.reset {
            return None;
        }
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a 64 MiB allocation is touched, the peak is at least that much larger than at a
    /// reset taken after it is freed (Linux only). Catches a peak that is not reset, or kiB
    /// read as MiB.
    #[test]
    fn the_peak_is_reset_and_sees_a_touched_allocation() {
        let Some(_) = PeakMemory::start().mib() else {
            return; // not Linux, or no clear_refs
        };
        let measured = PeakMemory::start();
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let high = measured.mib().expect("test value");
        drop(block);
        let fresh = PeakMemory::start().mib().expect("test value");
        assert!(
            high >= fresh + 60.0,
            "peak {high} MiB, after reset {fresh} MiB"
        );
    }
}
