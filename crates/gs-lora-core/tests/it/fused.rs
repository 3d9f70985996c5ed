//! The fused ops against Burn's own ops, forward and backward, on the test device (fused on
//! Flex; elsewhere the fused functions call Burn's ops and the comparison is exact).

use crate::common::*;
use burn::tensor::activation;
use burn::tensor::{Device, Tensor, TensorData};
use gs_lora_core::fused;

const TOLERANCE: f64 = 2e-6;

fn assert_close(found: Vec<f64>, expected: Vec<f64>, what: &str) {
    assert_close_within(found, expected, TOLERANCE, what);
}

fn assert_close_within(found: Vec<f64>, expected: Vec<f64>, tolerance: f64, what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}: lengths differ");
    for (i, (f, e)) in found.iter().zip(&expected).enumerate() {
        assert!(
            (f - e).abs() <= tolerance * e.abs().max(1.0),
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

/// `[batch, heads, n, d]` values in `[-scale, scale)`.
fn heads(dims: [usize; 4], scale: f32, seed: u64, device: &Device) -> Tensor<4> {
    let values = random_values(dims.iter().product(), seed)
        .into_iter()
        .map(|v| v * scale)
        .collect::<Vec<_>>();
    Tensor::from_data(TensorData::new(values, dims), device)
}

#[test]
fn softmax_matches_burn_on_rows_of_any_length_and_large_logits() {
    let device = device();
    // Row lengths below, at and above the eight reduction lanes, and one spanning many tasks.
    for (rows, cols, seed) in [(5, 3, 5), (40, 8, 6), (37, 197, 7), (200, 1000, 8)] {
        let x = activations(rows, cols, 30.0, seed, &device);
        let y = fused::softmax(x.clone());
        assert_close(
            values(y.clone()),
            values(activation::softmax(x, 1)),
            &format!("softmax {rows}×{cols}"),
        );
        for (r, row) in values(y.sum_dim(1)).iter().enumerate() {
            assert!((row - 1.0).abs() < 1e-5, "row {r} sums to {row}");
        }
    }
}

#[test]
fn softmax_of_a_fully_masked_row_is_uniform_not_nan() {
    let device = device();
    let x = Tensor::<2>::from_data(TensorData::new(vec![f32::NEG_INFINITY; 4], [1, 4]), &device);
    let found = values(fused::softmax(x));
    if fused::available(&device) {
        assert_eq!(found, vec![0.25; 4]);
    } else {
        // Elsewhere `fused::softmax` is Burn's op, which gives NaN here: the fused kernel's
        // behaviour is its own and must not be assumed on other backends.
        assert!(
            found.iter().all(|v| v.is_nan()),
            "Burn's softmax: {found:?}"
        );
    }
}

#[test]
fn softmax_gradient_matches_burn_autodiff_along_the_last_axis_of_4d_scores() {
    let device = device().autodiff();
    let x = heads([2, 3, 7, 11], 4.0, 9, &device).require_grad();
    let weights = heads([2, 3, 7, 11], 1.0, 10, &device);
    let gradient = |y: Tensor<4>| {
        let grads = (y * weights.clone()).sum().backward();
        values(x.grad(&grads).expect("x has a gradient"))
    };
    assert_close(
        gradient(fused::softmax(x.clone())),
        gradient(activation::softmax(x.clone(), 3)),
        "d softmax / dx",
    );
}

#[test]
fn attention_matches_burn_forward_and_backward() {
    let device = device().autodiff();
    let q = heads([2, 3, 9, 4], 1.5, 11, &device).require_grad();
    let k = heads([2, 3, 13, 4], 1.5, 12, &device).require_grad();
    let v = heads([2, 3, 13, 5], 1.0, 13, &device).require_grad();
    let weights = heads([2, 3, 9, 5], 1.0, 14, &device);
    let scale = 0.5;
    let run = |out: Tensor<4>| {
        let grads = (out.clone() * weights.clone()).sum().backward();
        let grad = |t: &Tensor<4>| values(t.grad(&grads).expect("input has a gradient"));
        [values(out), grad(&q), grad(&k), grad(&v)]
    };
    let options = burn::tensor::ops::AttentionModuleOptions {
        scale: Some(scale),
        ..Default::default()
    };
    let expected = run(burn::tensor::module::attention(
        q.clone(),
        k.clone(),
        v.clone(),
        None,
        None,
        options,
    ));
    let found = run(fused::attention(q.clone(), k.clone(), v.clone(), scale));
    for (name, (f, e)) in ["output", "dq", "dk", "dv"]
        .iter()
        .zip(found.into_iter().zip(expected))
    {
        assert_close(f, e, name);
    }
}

#[test]
fn layer_norm_matches_burn_forward_and_all_three_gradients() {
    let device = device().autodiff();
    // Rows of 64 and 384 (the embedded ViT's and ViT-S's widths) and a ragged 37.
    for (rows, cols, seed) in [(50, 37, 17), (300, 64, 18), (20, 384, 19)] {
        let x = activations(rows, cols, 3.0, seed, &device).require_grad();
        let gamma = heads([1, 1, 1, cols], 1.0, seed + 100, &device)
            .reshape([cols])
            .add_scalar(1.0)
            .require_grad();
        let beta = heads([1, 1, 1, cols], 0.5, seed + 200, &device)
            .reshape([cols])
            .require_grad();
        let weights = activations(rows, cols, 1.0, seed + 300, &device);
        let run = |out: Tensor<2>| {
            let grads = (out.clone() * weights.clone()).sum().backward();
            [
                values(out),
                values(x.grad(&grads).expect("dx")),
                values(gamma.grad(&grads).expect("dgamma")),
                values(beta.grad(&grads).expect("dbeta")),
            ]
        };
        let expected = run(burn::tensor::module::layer_norm(
            x.clone(),
            gamma.clone(),
            Some(beta.clone()),
            1e-6,
        ));
        let found = run(fused::layer_norm(
            x.clone(),
            gamma.clone(),
            Some(beta.clone()),
            1e-6,
        ));
        // dgamma and dbeta sum `rows` terms, so their rounding grows with it.
        let tolerances = [TOLERANCE, TOLERANCE, 1e-4, 1e-4];
        let names = ["output", "dx", "dgamma", "dbeta"];
        for ((name, tolerance), (f, e)) in names
            .iter()
            .zip(tolerances)
            .zip(found.into_iter().zip(expected))
        {
            assert_close_within(f, e, tolerance, &format!("layer norm {rows}×{cols} {name}"));
        }
    }
}

/// A `[rows, cols]` matrix of values in `[-scale, scale)`.
fn matrix(rows: usize, cols: usize, scale: f32, seed: u64, device: &Device) -> Tensor<2> {
    heads([1, 1, rows, cols], scale, seed, device).reshape([rows, cols])
}

/// `linear(x, W, b) + linear(linear(x, A), s·B)`, the LoRA layer composed from Burn's ops.
fn lora_reference(
    x: Tensor<3>,
    [weight, lora_a, lora_b]: [Tensor<2>; 3],
    bias: Option<Tensor<1>>,
    scale: f64,
) -> Tensor<3> {
    use burn::tensor::module::linear;
    let down = linear(x.clone(), lora_a, None);
    linear(x, weight, bias) + linear(down, lora_b.mul_scalar(scale), None)
}

#[test]
fn lora_linear_matches_burn_forward_and_all_five_gradients() {
    let device = device().autodiff();
    let (d_input, d_output, rank, scale) = (37, 45, 3, 0.7);
    let x = heads([1, 2, 11, d_input], 1.0, 21, &device)
        .reshape([2, 11, d_input])
        .require_grad();
    let weight = matrix(d_input, d_output, 0.3, 22, &device).require_grad();
    let bias = matrix(1, d_output, 0.5, 23, &device)
        .reshape([d_output])
        .require_grad();
    let lora_a = matrix(d_input, rank, 0.4, 24, &device).require_grad();
    let lora_b = matrix(rank, d_output, 0.4, 25, &device).require_grad();
    let weights = heads([1, 2, 11, d_output], 1.0, 26, &device).reshape([2, 11, d_output]);
    let run = |out: Tensor<3>| {
        let grads = (out.clone() * weights.clone()).sum().backward();
        let grad = |t: Tensor<2>| values(t.grad(&grads).expect("a gradient"));
        [
            values(out),
            values(x.grad(&grads).expect("dx")),
            grad(weight.clone()),
            values(bias.grad(&grads).expect("dbias")),
            grad(lora_a.clone()),
            grad(lora_b.clone()),
        ]
    };
    let factors = [weight.clone(), lora_a.clone(), lora_b.clone()];
    let expected = run(lora_reference(
        x.clone(),
        factors.clone(),
        Some(bias.clone()),
        scale,
    ));
    let [weight_value, a_value, b_value] = factors;
    let found = run(fused::lora_linear(
        x.clone(),
        weight_value,
        Some(bias.clone()),
        a_value,
        b_value,
        scale,
    ));
    for (name, (f, e)) in ["output", "dx", "dweight", "dbias", "dA", "dB"]
        .iter()
        .zip(found.into_iter().zip(expected))
    {
        assert_close_within(f, e, 1e-5, name);
    }
}

#[test]
fn lora_linear_without_bias_or_autodiff_matches_burn() {
    let device = device();
    let x = heads([1, 3, 4, 16], 1.0, 31, &device).reshape([3, 4, 16]);
    let factors = [
        matrix(16, 10, 0.3, 32, &device),
        matrix(16, 2, 0.5, 33, &device),
        matrix(2, 10, 0.5, 34, &device),
    ];
    let [weight, lora_a, lora_b] = factors.clone();
    assert_close_within(
        values(fused::lora_linear(
            x.clone(),
            weight,
            None,
            lora_a,
            lora_b,
            4.0,
        )),
        values(lora_reference(x, factors, None, 4.0)),
        1e-5,
        "lora_linear without bias",
    );
}

#[test]
#[should_panic(expected = "lora_linear: expected x [..., 16]")]
fn lora_linear_names_the_shapes_that_disagree() {
    let device = device();
    let x = Tensor::<2>::zeros([4, 15], &device);
    let _ = fused::lora_linear(
        x,
        Tensor::zeros([16, 10], &device),
        None,
        Tensor::zeros([16, 2], &device),
        Tensor::zeros([2, 10], &device),
        1.0,
    );
}

/// Splits a packed `[batch, tokens, 3·dim]` projection into heads and runs Burn's attention.
fn qkv_attention_reference(qkv: Tensor<3>, heads: usize, scale: f64) -> Tensor<3> {
    let [batch, tokens, width] = qkv.dims();
    let head_dim = width / (3 * heads);
    let part = |i: usize| {
        qkv.clone()
            .slice_dim(2, i * width / 3..(i + 1) * width / 3)
            .reshape([batch, tokens, heads, head_dim])
            .swap_dims(1, 2)
    };
    let options = burn::tensor::ops::AttentionModuleOptions {
        scale: Some(scale),
        ..Default::default()
    };
    burn::tensor::module::attention(part(0), part(1), part(2), None, None, options)
        .swap_dims(1, 2)
        .reshape([batch, tokens, width / 3])
}

#[test]
fn qkv_attention_matches_burn_forward_and_backward() {
    let device = device().autodiff();
    // One image and three; head widths below and above the eight SIMD lanes.
    for (batch, tokens, heads, head_dim, seed) in [(1, 5, 1, 3, 41), (3, 13, 2, 11, 42)] {
        let width = 3 * heads * head_dim;
        let qkv = heads_values([batch, tokens, width], 2.0, seed, &device).require_grad();
        let weights = heads_values([batch, tokens, width / 3], 1.0, seed + 1, &device);
        let run = |out: Tensor<3>| {
            let grads = (out.clone() * weights.clone()).sum().backward();
            [values(out), values(qkv.grad(&grads).expect("dqkv"))]
        };
        let scale = 0.4;
        let expected = run(qkv_attention_reference(qkv.clone(), heads, scale));
        let found = run(fused::qkv_attention(qkv.clone(), heads, scale));
        for (name, (f, e)) in ["output", "dqkv"]
            .iter()
            .zip(found.into_iter().zip(expected))
        {
            assert_close_within(f, e, 1e-5, &format!("{name}, batch {batch}"));
        }
    }
}

#[test]
fn qkv_attention_of_a_strided_view_without_autodiff_matches_burn() {
    let device = device();
    let packed = heads_values([12, 2, 9], 2.0, 43, &device).swap_dims(0, 1);
    assert_close_within(
        values(fused::qkv_attention(packed.clone(), 3, 0.6)),
        values(qkv_attention_reference(packed, 3, 0.6)),
        1e-5,
        "qkv_attention of a strided view",
    );
}

#[test]
fn qkv_attention_of_no_tokens_is_empty() {
    let out = fused::qkv_attention(Tensor::zeros([2, 0, 12], &device()), 2, 1.0);
    assert_eq!(out.dims(), [2, 0, 4]);
}

#[test]
#[should_panic(
    expected = "qkv_attention: expected qkv [batch, tokens, 3·heads·head_dim] for 4 heads"
)]
fn qkv_attention_names_a_width_that_does_not_split_into_heads() {
    let _ = fused::qkv_attention(Tensor::zeros([1, 3, 18], &device()), 4, 1.0);
}

/// A `dims`-shaped tensor of values in `[-scale, scale)`.
fn heads_values(dims: [usize; 3], scale: f32, seed: u64, device: &Device) -> Tensor<3> {
    heads([1, dims[0], dims[1], dims[2]], scale, seed, device).reshape(dims)
}

/// Every instruction-set level this CPU has runs the element-wise kernels (GELU, softmax,
/// LayerNorm, the bias add of `lora_linear`) to Burn's results, forward and backward, and a CPU
/// with AVX-512 gets that level by default. Catches a kernel body wrong at one vector width only
/// (a ragged tail, an assumed lane count), and AVX-512 compiled out of the build.
#[cfg(feature = "flex")]
#[test]
fn every_simd_level_the_cpu_has_matches_burn() {
    use burn::tensor::module::layer_norm;
    use fused::SimdLevel;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let v4 = ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"];
    if cfg!(target_arch = "x86_64") && v4.iter().all(|flag| cpuinfo.contains(flag)) {
        assert_eq!(SimdLevel::detected(), SimdLevel::Avx512);
    }
    let levels = SimdLevel::available();
    assert_eq!(levels.first(), Some(&SimdLevel::Scalar));
    let device = Device::flex().autodiff();
    // 37 columns: a ragged tail at every vector width; 300 rows: several parallel chunks.
    let x = activations(300, 37, 6.0, 40, &device).require_grad();
    let weights = activations(300, 37, 1.0, 41, &device);
    let gamma = matrix(1, 37, 1.0, 42, &device)
        .reshape([37])
        .add_scalar(1.0);
    let beta = matrix(1, 37, 0.5, 43, &device).reshape([37]);
    let factors = [
        matrix(37, 37, 0.3, 44, &device),
        matrix(37, 4, 0.3, 45, &device),
        matrix(4, 37, 0.3, 46, &device),
    ];
    let bias = matrix(1, 37, 1.0, 47, &device).reshape([37]);
    let run = |outputs: [Tensor<2>; 4]| -> Vec<Vec<f64>> {
        outputs
            .into_iter()
            .flat_map(|y| {
                let grads = (y.clone() * weights.clone()).sum().backward();
                [values(y), values(x.grad(&grads).expect("dx"))]
            })
            .collect()
    };
    let expected = run([
        activation::gelu(x.clone()),
        activation::softmax(x.clone(), 1),
        layer_norm(x.clone(), gamma.clone(), Some(beta.clone()), 1e-6),
        lora_reference(
            x.clone().unsqueeze(),
            factors.clone(),
            Some(bias.clone()),
            0.5,
        )
        .squeeze_dim(0),
    ]);
    let names = ["gelu", "softmax", "layer norm", "lora_linear"];
    for level in levels {
        fused::set_simd_cap(Some(level));
        let [weight, lora_a, lora_b] = factors.clone();
        let found = run([
            fused::gelu(x.clone()),
            fused::softmax(x.clone()),
            fused::layer_norm(x.clone(), gamma.clone(), Some(beta.clone()), 1e-6),
            fused::lora_linear(x.clone(), weight, Some(bias.clone()), lora_a, lora_b, 0.5),
        ]);
        fused::set_simd_cap(None);
        for (i, (f, e)) in found.into_iter().zip(&expected).enumerate() {
            let what = format!("{}{} at {level:?}", ["", "d "][i % 2], names[i / 2]);
            assert_close_within(f, e.clone(), 1e-5, &what);
        }
    }
}
