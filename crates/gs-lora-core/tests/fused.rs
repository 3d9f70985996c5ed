//! The fused ops against Burn's own ops, forward and backward, on the test device (fused on
//! Flex; elsewhere the fused functions call Burn's ops and the comparison is exact).

mod common;

use burn::tensor::activation;
use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use gs_lora_core::fused;

const TOLERANCE: f64 = 2e-6;

fn assert_close(found: Vec<f64>, expected: Vec<f64>, what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}: lengths differ");
    for (i, (f, e)) in found.iter().zip(&expected).enumerate() {
        assert!(
            (f - e).abs() <= TOLERANCE * e.abs().max(1.0),
            "{what}[{i}]: fused {f}, Burn {e}"
        );
    }
}

/// `[rows, cols]` values spread over `[-scale, scale)`, with the extremes GELU must get right.
fn activations(rows: usize, cols: usize, scale: f32, seed: u64, device: &Device) -> Tensor<2> {
    let mut values: Vec<f32> = random_values(rows * cols, seed)
        .into_iter()
        .map(|v| v * scale)
        .collect();
    values[..6].copy_from_slice(&[0.0, -0.0, 12.0, -12.0, 300.0, -300.0]);
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

#[test]
fn fused_ops_are_available_exactly_on_flex() {
    assert!(!fused::available(&Device::default().autodiff()) || cfg!(feature = "flex"));
    #[cfg(feature = "flex")]
    {
        assert!(fused::available(&Device::flex()));
        assert!(fused::available(&Device::flex().autodiff()));
    }
}

#[test]
fn gelu_matches_burn_forward_on_contiguous_and_strided_inputs() {
    let device = device();
    // 300 × 257 spans several parallel chunks and leaves a ragged last one.
    let x = activations(300, 257, 6.0, 1, &device);
    assert_close(
        values(fused::gelu(x.clone())),
        values(activation::gelu(x.clone())),
        "gelu",
    );
    let strided = x.swap_dims(0, 1).slice([3..200, 10..250]);
    assert_close(
        values(fused::gelu(strided.clone())),
        values(activation::gelu(strided)),
        "gelu of a strided view",
    );
}

#[test]
fn gelu_gradient_matches_burn_autodiff() {
    let device = device().autodiff();
    let x = activations(64, 300, 6.0, 2, &device).require_grad();
    let weights = activations(64, 300, 1.0, 3, &device);
    let gradient = |y: Tensor<2>| {
        let grads = (y * weights.clone()).sum().backward();
        values(x.grad(&grads).expect("x has a gradient"))
    };
    assert_close(
        gradient(fused::gelu(x.clone())),
        gradient(activation::gelu(x.clone())),
        "d gelu / dx",
    );
}

#[test]
fn gelu_of_an_untracked_tensor_on_an_autodiff_device_has_no_graph() {
    let device = device().autodiff();
    let x = activations(8, 16, 3.0, 4, &device);
    let y = fused::gelu(x.clone());
    assert!(!y.is_require_grad());
    assert_close(values(y), values(activation::gelu(x)), "untracked gelu");
}
