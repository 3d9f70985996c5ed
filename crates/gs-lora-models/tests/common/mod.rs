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

/// Asserts `max |found − expected| ≤ 1e-4 · max |expected|`.
pub fn assert_parity(what: &str, found: &[f32], expected: &[f32]) {
    assert_eq!(found.len(), expected.len(), "{what}: lengths differ");
    let scale = expected
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(1e-6);
    let diff = found
        .iter()
        .zip(expected)
        .fold(0.0f32, |m, (f, e)| m.max((f - e).abs()));
    assert!(
        diff <= 1e-4 * scale,
        "{what}: max |diff| {diff} exceeds 1e-4 × max |ref| {scale}"
    );
}
