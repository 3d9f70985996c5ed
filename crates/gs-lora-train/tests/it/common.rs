//! Helpers shared by the integration tests.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use gs_lora_models::vit::VitConfig;
use gs_lora_train::classification::data::{Dataset, SyntheticShapes, SyntheticShapesConfig};
use gs_lora_train::classification::embedded_config;

/// A path that does not exist yet, `gs-lora-test-NAME-…/NAME` under the temporary directory;
/// its fresh parent is removed with everything in it when the value is dropped (bind it to a
/// variable that lives as long as the test uses the path).
pub struct Scratch {
    _root: TempDir,
    path: PathBuf,
}

impl Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl From<&Scratch> for PathBuf {
    fn from(scratch: &Scratch) -> Self {
        scratch.path.clone()
    }
}

/// A fresh [`Scratch`] path named `name`.
pub fn scratch(name: &str) -> Scratch {
    let root = tempfile::Builder::new()
        .prefix(&format!("gs-lora-test-{name}-"))
        .tempdir()
        .expect("scratch directory");
    let path = root.path().join(name);
    Scratch { _root: root, path }
}

/// Asserts `|found − expected| ≤ tolerance`.
pub fn close(found: f64, expected: f64, tolerance: f64) {
    assert!(
        (found - expected).abs() <= tolerance,
        "found {found}, expected {expected}"
    );
}

/// The seed of a whole forgetting run in a test: `GS_LORA_TEST_SEED` (default 0, CI's). With
/// `GS_LORA_TEST_UNFUSED=1` the run also switches the fused ops off (Burn's ops: another
/// floating-point order, the proxy for another CPU).
pub fn whole_run_seed() -> u64 {
    if std::env::var("GS_LORA_TEST_UNFUSED").is_ok_and(|v| v == "1") {
        gs_lora_core::fused::set_enabled(false);
    }
    std::env::var("GS_LORA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The synthetic shapes at 16 px, 6 training, 2 validation and 1 test image per class, drawn
/// with `seed`: the data of the small whole-run tests.
pub fn tiny_shapes(seed: u64) -> Dataset {
    SyntheticShapes::generate(&SyntheticShapesConfig {
        image_size: 16,
        train_per_class: 6,
        val_per_class: 2,
        test_per_class: 1,
        seed,
    })
}

/// A two-block ViT of width 16 for 16 px images and `num_classes` classes: the model of the
/// small whole-run tests.
pub fn tiny_vit(num_classes: usize) -> VitConfig {
    VitConfig {
        image_size: 16,
        patch_size: 8,
        hidden_size: 16,
        depth: 2,
        num_heads: 2,
        mlp_hidden: 32,
        ..embedded_config(16, num_classes)
    }
}
