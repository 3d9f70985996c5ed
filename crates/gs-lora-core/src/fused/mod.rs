//! Fused versions of the element-wise ops that dominate a Transformer's training step on CPU.
//!
//! Each function computes exactly what the Burn op named in its doc computes, on any device. On
//! the Flex backend (with or without autodiff; needs this crate's `flex` feature) it runs one
//! multi-threaded, vectorised pass forward and one backward instead of Burn's chain of
//! single-threaded primitive ops; everywhere else it calls Burn's op. See `docs/benchmarks.md`
//! for what each saves.

#[cfg(feature = "flex")]
mod approx;
#[cfg(feature = "flex")]
mod attention;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
mod gemm;
#[cfg(feature = "flex")]
mod kernels;
#[cfg(feature = "flex")]
mod simd;

#[cfg(feature = "flex")]
pub use flex::FusedOps;
#[cfg(feature = "flex")]
pub use simd::{SimdLevel, set_simd_cap};

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::module::linear;
use burn::tensor::{Device, Tensor};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the fused path on or off for the whole process (on by default). Off, every function
/// here calls Burn's op on every device: to compare the two, or to reproduce training runs
/// made before the fused ops existed (the results agree to rounding, but a training
/// trajectory moves with any change of floating-point order).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// The exact (erf) GELU, `x·Φ(x)`, as [`burn::tensor::activation::gelu`].
///
/// - `x`: any shape; the output has the same.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if available(&x.device()) {
        use burn::backend::Dispatch;
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_gelu(x.into_dispatch()));
    }
    burn::tensor::activation::gelu(x)
}

/// LayerNorm over the last axis, `(x − mean)/sqrt(var + epsilon) ⊙ gamma + beta` with the biased
/// variance, as [`burn::tensor::module::layer_norm`] (what [`burn::nn::LayerNorm`] computes).
///
/// - `x`: `[..., d]`; `gamma`, `beta`: `[d]`; the output has `x`'s shape.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if available(&x.device())
        && x.dtype() == burn::tensor::DType::F32
        && gamma.dtype() == burn::tensor::DType::F32
    {
        use burn::backend::Dispatch;
        let beta = beta.unwrap_or_else(|| gamma.zeros_like());
        if beta.dtype() == burn::tensor::DType::F32 {
            return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_layer_norm(
                x.into_dispatch(),
                gamma.into_dispatch(),
                beta.into_dispatch(),
                epsilon as f32,
            ));
        }
        return burn::tensor::module::layer_norm(x, gamma, Some(beta), epsilon);
    }
    burn::tensor::module::layer_norm(x, gamma, beta, epsilon)
}

/// Softmax over the last axis, as [`burn::tensor::activation::softmax`] with `dim = D − 1`.
///
/// - `x`: `[..., n]`; the output has the same shape, each row summing to 1.
pub fn softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if available(&x.device()) {
        use burn::backend::Dispatch;
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_softmax(x.into_dispatch()));
    }
    burn::tensor::activation::softmax(x, D - 1)
}

/// Scaled dot-product attention, `softmax(scale · q·kᵀ)·v`, as
/// [`burn::tensor::module::attention`] without mask or bias.
///
/// On Flex it is two batched products around [`softmax`], so that training differentiates one
/// softmax node instead of Burn's decomposed one.
///
/// - `q`: `[batch, heads, n_q, d]`, `k`: `[batch, heads, n_k, d]`, `v`: `[batch, heads, n_k, d_v]`
/// - returns `[batch, heads, n_q, d_v]`
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f64) -> Tensor<4> {
    if available(&q.device()) {
        return softmax((q * scale).matmul(k.swap_dims(2, 3))).matmul(v);
    }
    let options = burn::tensor::ops::AttentionModuleOptions {
        scale: Some(scale),
        ..Default::default()
    };
    burn::tensor::module::attention(q, k, v, None, None, options)
}

/// Multi-head self-attention from a packed projection, as timm's `Attention`: `qkv` holds
/// `[q | k | v]` per token, each head-major (`[heads, head_dim]`); every head computes
/// `softmax(scale · q·kᵀ)·v` and the heads are concatenated.
///
/// On Flex (`f32`) each head's `q`, `k`, `v` and output are strided views of `qkv` and of the
/// result, so the split into heads and their merge are never copied, a head's scores stay in
/// cache between its two products, and the backward node writes `dq`, `dk`, `dv` straight into
/// one `qkv`-shaped gradient (images run in parallel; a single image runs its heads on one
/// core). Elsewhere it splits the heads and calls [`attention`].
///
/// - `qkv`: `[batch, tokens, 3·dim]` with `dim` a multiple of `num_heads`
/// - returns `[batch, tokens, dim]`
///
/// # Panics
/// If `qkv`'s last axis is not a multiple of `3·num_heads`, as Burn's own ops do on bad shapes.
pub fn qkv_attention(qkv: Tensor<3>, num_heads: usize, scale: f64) -> Tensor<3> {
    let [batch, tokens, width] = qkv.dims();
    assert!(
        num_heads > 0 && width % (3 * num_heads) == 0,
        "qkv_attention: expected qkv [batch, tokens, 3·heads·head_dim] for {num_heads} heads; \
         found [{batch}, {tokens}, {width}]"
    );
    if batch * tokens == 0 {
        // Nothing to attend to (Burn's reshape would read a 0 as "keep this axis").
        return Tensor::zeros([batch, tokens, width / 3], &qkv.device());
    }
    #[cfg(feature = "flex")]
    if available(&qkv.device()) && qkv.dtype() == burn::tensor::DType::F32 {
        use burn::backend::Dispatch;
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_qkv_attention(
            qkv.into_dispatch(),
            num_heads,
            scale as f32,
        ));
    }
    let head_dim = width / (3 * num_heads);
    let qkv = qkv
        .reshape([batch, tokens, 3, num_heads, head_dim])
        .permute([2, 0, 3, 1, 4]);
    let part = |i: usize| {
        qkv.clone()
            .slice_dim(0, i..i + 1)
            .reshape([batch, num_heads, tokens, head_dim])
    };
    attention(part(0), part(1), part(2), scale)
        .swap_dims(1, 2)
        .reshape([batch, tokens, width / 3])
}

/// A Linear layer with a LoRA update, `x·W + b + s·(x·A)·B`, as
/// [`burn::tensor::module::linear`] of `x` with `weight` and `bias` plus
/// `linear(linear(x, lora_a), s·lora_b)`.
///
/// On Flex it multiplies `x` once by the effective weight `W + s·A·B` (`[d_in, d_out]`, formed
/// per call, is far smaller than the `[tokens, d_out]` product of the adapter branch, which then
/// needs adding), and its backward node forms `dx = g·(W + s·A·B)ᵀ` in one product and `A`'s and
/// `B`'s gradients from rank-sized products: `dA = xᵀ·(g·(s·B)ᵀ)`, `dB = s·(x·A)ᵀ·g`.
///
/// - `x`: `[..., d_in]`; `weight`: `[d_in, d_out]`; `bias`: `[d_out]`;
///   `lora_a`: `[d_in, rank]`; `lora_b`: `[rank, d_out]`
/// - returns `[..., d_out]`
///
/// # Panics
/// If the shapes disagree, as Burn's own ops do.
pub fn lora_linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    lora_a: Tensor<2>,
    lora_b: Tensor<2>,
    scale: f64,
) -> Tensor<D> {
    let dims = x.dims();
    let [d_input, d_output] = weight.dims();
    let [a_input, rank] = lora_a.dims();
    assert!(
        dims[D - 1] == d_input && a_input == d_input && lora_b.dims() == [rank, d_output],
        "lora_linear: expected x [..., {d_input}], lora_a [{d_input}, r], lora_b [r, {d_output}] \
         for a [{d_input}, {d_output}] weight; found x {dims:?}, lora_a {:?}, lora_b {:?}",
        lora_a.dims(),
        lora_b.dims()
    );
    #[cfg(feature = "flex")]
    if available(&x.device()) {
        use burn::backend::Dispatch;
        let tokens = dims[..D - 1].iter().product();
        let bias = bias.unwrap_or_else(|| Tensor::zeros([d_output], &x.device()));
        let output = <Dispatch as FusedOps>::fused_lora_linear(
            x.reshape([tokens, d_input]).into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
            lora_a.into_dispatch(),
            lora_b.into_dispatch(),
            scale as f32,
        );
        let mut output_dims = dims;
        output_dims[D - 1] = d_output;
        return Tensor::<2>::from_dispatch(output).reshape(output_dims);
    }
    // (x·A)·(s·B) costs O(rank · (d_in + d_out)) per token, and scaling the [rank, d_out]
    // factor spares a pass over the output (and its gradient).
    let down = linear(x.clone(), lora_a, None);
    linear(x, weight, bias) + linear(down, lora_b.mul_scalar(scale), None)
}

/// Whether the functions here run fused on `device`: Flex (directly or under autodiff) with this
/// crate's `flex` feature, unless [`set_enabled`] turned the fused path off.
pub fn available(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        ENABLED.load(Ordering::Relaxed)
            && matches!(
                device.clone().inner().as_dispatch(),
                burn::backend::DispatchDevice::Flex(_)
            )
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}
