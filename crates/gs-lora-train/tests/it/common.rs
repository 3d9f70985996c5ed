//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// A fresh scratch directory `gs-lora-test-PID-NAME` under the temporary directory (removed
/// first if a previous run left it).
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gs-lora-test-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

/// Asserts `|found − expected| ≤ tolerance`.
pub fn close(found: f64, expected: f64, tolerance: f64) {
    assert!(
        (found - expected).abs() <= tolerance,
        "found {found}, expected {expected}"
    );
}
