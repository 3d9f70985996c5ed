//! Helpers shared by the model tests: fixture paths, tensor values and the parity check.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;

/// The committed fixture `name` (made by `tools/make_vit_fixtures.py`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The values of a float tensor on the host.
pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.try_into_vec_as::<f32>().expect("f32 values")
}

/// The bound of [`assert_parity`]: `max |found − expected| ≤ PARITY · max |expected|`.
pub const PARITY: f32 = 1e-5;

/// `max |found − expected| / max |expected|` (the scale floored at 1e-6), and that scale.
pub fn parity_error(what: &str, found: &[f32], expected: &[f32]) -> (f32, f32) {
    assert_eq!(found.len(), expected.len(), "{what}: lengths differ");
    let scale = expected
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(1e-6);
    let diff = found.iter().zip(expected).fold(0.0f32, |m, (f, e)| {
        // A NaN on either side must fail, not vanish in `max`.
        if f.is_nan() || e.is_nan() {
            f32::INFINITY
        } else {
            m.max((f - e).abs())
        }
    });
    (diff / scale, scale)
}

/// Asserts `max |found − expected| ≤ PARITY · max |expected|` and prints the error reached
/// (`cargo test -- --nocapture` shows it).
pub fn assert_parity(what: &str, found: &[f32], expected: &[f32]) {
    assert_parity_within(what, found, expected, PARITY);
}

/// [`assert_parity`] with the bound `relative` (for an output whose error is explained where
/// the bound is chosen).
pub fn assert_parity_within(what: &str, found: &[f32], expected: &[f32], relative: f32) {
    let (error, scale) = parity_error(what, found, expected);
    eprintln!(
        "parity {what}: max |diff| / max |ref| = {error:.2e} (bound {relative:.0e}, max |ref| {scale:.3e})"
    );
    assert!(
        error <= relative,
        "{what}: max |diff| {} exceeds {relative:e} × max |ref| {scale}",
        error * scale
    );
}
