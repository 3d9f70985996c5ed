//! Shared helpers of the core tests: the device under test, host-side reference arithmetic,
//! and a two-block toy model with LoRA on its FFNs.
#![allow(dead_code)]

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use gs_lora_core::{LoraConfig, LoraGroup, LoraLinear, LoraModel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The device the tests run on: `BURN_DEVICE` when set (e.g. `wgpu` with `--features wgpu`),
/// otherwise the default backend (flex).
pub fn device() -> Device {
    Device::default()
}

/// Deterministic values in `[-1, 1)`.
pub fn random_values(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// A `[rows, cols]` tensor of deterministic values in `[-1, 1)`.
pub fn random_tensor(rows: usize, cols: usize, seed: u64, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(random_values(rows * cols, seed), [rows, cols]),
        device,
    )
}

/// The values of a float tensor on the host, as `f64`.
pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f64> {
    tensor.try_into_vec_as::<f64>().expect("f64 values")
}

/// The single value of a one-element tensor.
pub fn scalar(tensor: Tensor<1>) -> f64 {
    let values = values(tensor);
    assert_eq!(values.len(), 1, "expected one value, found {values:?}");
    values[0]
}

/// Row-major `[n, k] × [k, m]` on the host, in `f64`.
pub fn host_matmul(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            out[i * m + j] = (0..k).map(|p| a[i * k + p] * b[p * m + j]).sum();
        }
    }
    out
}

/// Asserts `|a − b| ≤ tol · max(1, max|b|)` elementwise.
pub fn assert_close(found: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(found.len(), expected.len(), "lengths differ");
    let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (f, e)) in found.iter().zip(expected).enumerate() {
        assert!(
            (f - e).abs() <= tol * scale,
            "element {i}: found {f}, expected {e} (tol {tol} × {scale})"
        );
    }
}

/// A Linear layer with deterministic non-zero weight and bias.
pub fn linear(d_input: usize, d_output: usize, seed: u64, device: &Device) -> Linear {
    let mut layer = LinearConfig::new(d_input, d_output).init(device);
    layer.weight = Param::from_tensor(random_tensor(d_input, d_output, seed, device));
    layer.bias = Some(Param::from_tensor(
        random_tensor(1, d_output, seed + 1, device).reshape([d_output]),
    ));
    layer
}

/// A FFN block `fc2(gelu(fc1(x)))` with LoRA on both Linears.
#[derive(Module, Debug)]
pub struct ToyBlock {
    pub fc1: LoraLinear,
    pub fc2: LoraLinear,
}

/// Two FFN blocks and a frozen head: the smallest model with two adapter groups.
#[derive(Module, Debug)]
pub struct ToyModel {
    pub blocks: Vec<ToyBlock>,
    pub head: Linear,
}

impl ToyModel {
    /// Width 6, hidden 8, 3 classes; LoRA rank 2, alpha 4 (scale 2), so updates are visible.
    pub fn new(device: &Device, seed: u64) -> Self {
        let config = LoraConfig::new().with_rank(2).with_lora_alpha(4.0);
        let blocks = (0..2u64)
            .map(|b| ToyBlock {
                fc1: config
                    .init(linear(6, 8, seed + 10 * b, device), seed + 10 * b + 2)
                    .expect("valid config"),
                fc2: config
                    .init(linear(8, 6, seed + 10 * b + 4, device), seed + 10 * b + 6)
                    .expect("valid config"),
            })
            .collect();
        Self {
            blocks,
            head: linear(6, 3, seed + 100, device).no_grad(),
        }
    }

    /// Logits `[B, 3]` for inputs `[B, 6]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.blocks.iter().fold(x, |x, block| {
            let hidden = burn::tensor::activation::gelu(block.fc1.forward(x.clone()));
            x + block.fc2.forward(hidden)
        });
        self.head.forward(x)
    }

    /// Sets every `B` factor to deterministic non-zero values, so adapters change the output.
    pub fn perturb_adapters(&mut self, seed: u64) {
        for (i, block) in self.blocks.iter_mut().enumerate() {
            for (j, layer) in [&mut block.fc1, &mut block.fc2].into_iter().enumerate() {
                let [rank, d_output] = layer.lora_b.shape().dims();
                let device = layer.lora_b.val().device();
                let value = random_tensor(rank, d_output, seed + 7 * i as u64 + j as u64, &device);
                layer.lora_b = Param::from_tensor(value);
            }
        }
    }
}

impl LoraModel for ToyModel {
    fn lora_groups(&self) -> Vec<LoraGroup<&LoraLinear>> {
        self.blocks
            .iter()
            .enumerate()
            .map(|(i, b)| LoraGroup::new(format!("blocks.{i}"), vec![&b.fc1, &b.fc2]))
            .collect()
    }

    fn lora_groups_mut(&mut self) -> Vec<LoraGroup<&mut LoraLinear>> {
        self.blocks
            .iter_mut()
            .enumerate()
            .map(|(i, b)| LoraGroup::new(format!("blocks.{i}"), vec![&mut b.fc1, &mut b.fc2]))
            .collect()
    }
}
