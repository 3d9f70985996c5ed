//! The element-wise loops behind the fused ops, on contiguous `f32` slices.
//!
//! Each loop is split into chunks that rayon spreads over the cores (Burn's Flex runs its
//! element-wise ops on one thread), and each chunk runs inside [`pulp::Arch::dispatch`], which
//! compiles the loop for AVX-512, AVX2 + FMA and scalar code; [`arch`] picks the level at run
//! time, so the straight-line bodies vectorise on any x86-64 CPU.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::approx::{erf, exp_nonpositive};
use super::simd::arch;

/// Elements per parallel task: large enough to amortise scheduling, small enough that a
/// `[8, 197, 1536]` activation still splits into dozens of tasks.
const CHUNK: usize = 1 << 14;

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2π)`.
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `out = gelu(x) = x·Φ(x) = 0.5·x·(1 + erf(x/√2))`, the exact (erf) GELU.
pub(crate) fn gelu(x: &[f32], out: &mut [f32]) {
    debug_assert_eq!(x.len(), out.len());
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(out, x)| arch().dispatch(Gelu { x, out }));
}

/// `out = grad · gelu'(x)` with `gelu'(x) = Φ(x) + x·φ(x)`, `φ(x) = exp(−x²/2)/√(2π)`.
pub(crate) fn gelu_backward(x: &[f32], grad: &[f32], out: &mut [f32]) {
    debug_assert_eq!(x.len(), out.len());
    debug_assert_eq!(grad.len(), out.len());
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
        .for_each(|(out, (x, grad))| arch().dispatch(GeluBackward { x, grad, out }));
}

/// `out[r] += bias` for every row of `bias.len()` elements, in place.
pub(crate) fn add_rows(out: &mut [f32], bias: &[f32]) {
    let chunk = rows_per_task(bias.len()) * bias.len();
    out.par_chunks_mut(chunk)
        .for_each(|out| arch().dispatch(AddRows { out, bias }));
}

/// Row-wise softmax in place: each row `x` of `row_len` elements becomes
/// `exp(x − max x) / Σ exp(x − max x)`. A −∞ input weighs `e^−87 ≈ 10⁻³⁸` relative to the row's
/// largest term rather than 0, and a row of only −∞ comes out uniform rather than NaN.
pub(crate) fn softmax_rows(values: &mut [f32], row_len: usize) {
    let chunk = rows_per_task(row_len) * row_len;
    values
        .par_chunks_mut(chunk)
        .for_each(|rows| softmax_rows_serial(rows, row_len));
}

/// [`softmax_rows`] on the calling thread, for callers that parallelise around it.
pub(crate) fn softmax_rows_serial(values: &mut [f32], row_len: usize) {
    arch().dispatch(SoftmaxRows { values, row_len });
}

/// The softmax's input gradient from its output `y`, in place of the output gradient `g`:
/// `g[r] ← scale · y[r] ⊙ (g[r] − ⟨g[r], y[r]⟩)` (`scale` folds in a factor the caller needs).
pub(crate) fn softmax_rows_backward(y: &[f32], grad: &mut [f32], row_len: usize, scale: f32) {
    let chunk = rows_per_task(row_len) * row_len;
    grad.par_chunks_mut(chunk)
        .zip(y.par_chunks(chunk))
        .for_each(|(grad, y)| softmax_rows_backward_serial(y, grad, row_len, scale));
}

/// [`softmax_rows_backward`] on the calling thread.
pub(crate) fn softmax_rows_backward_serial(
    y: &[f32],
    grad: &mut [f32],
    row_len: usize,
    scale: f32,
) {
    debug_assert_eq!(y.len(), grad.len());
    arch().dispatch(SoftmaxRowsBackward {
        y,
        grad,
        row_len,
        scale,
    });
}

// One struct per loop: `WithSimd::with_simd` is inlined into pulp's target-feature function,
// which a closure's body is not reliably (it then calls libm's `fmaf` per element).

struct Gelu<'a> {
    x: &'a [f32],
    out: &'a mut [f32],
}

impl WithSimd for Gelu<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for (o, &x) in self.out.iter_mut().zip(self.x) {
            *o = 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2));
        }
    }
}

struct GeluBackward<'a> {
    x: &'a [f32],
    grad: &'a [f32],
    out: &'a mut [f32],
}

impl WithSimd for GeluBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for ((o, &x), &g) in self.out.iter_mut().zip(self.x).zip(self.grad) {
            let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
            let pdf = INV_SQRT_2PI * exp_nonpositive(-0.5 * x * x);
            *o = g * x.mul_add(pdf, cdf);
        }
    }
}

struct AddRows<'a> {
    out: &'a mut [f32],
    bias: &'a [f32],
}

impl WithSimd for AddRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for row in self.out.chunks_exact_mut(self.bias.len()) {
            row.iter_mut().zip(self.bias).for_each(|(o, &b)| *o += b);
        }
    }
}

struct SoftmaxRows<'a> {
    values: &'a mut [f32],
    row_len: usize,
}

impl WithSimd for SoftmaxRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for row in self.values.chunks_exact_mut(self.row_len) {
            let max = lane_max(row);
            row.iter_mut().for_each(|v| *v = exp_nonpositive(*v - max));
            let inv_sum = 1.0 / lane_sum(row);
            row.iter_mut().for_each(|v| *v *= inv_sum);
        }
    }
}

struct SoftmaxRowsBackward<'a> {
    y: &'a [f32],
    grad: &'a mut [f32],
    row_len: usize,
    scale: f32,
}

impl WithSimd for SoftmaxRowsBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let rows = self.grad.chunks_exact_mut(self.row_len);
        for (g, y) in rows.zip(self.y.chunks_exact(self.row_len)) {
            let dot = lane_dot(y, g);
            for (g, &y) in g.iter_mut().zip(y) {
                *g = self.scale * y * (*g - dot);
            }
        }
    }
}

/// Whole rows per parallel task, about [`CHUNK`] elements.
fn rows_per_task(row_len: usize) -> usize {
    (CHUNK / row_len.max(1)).max(1)
}

/// Lanes of the reductions below: eight independent accumulators, which the compiler keeps in
/// one AVX register (a single running float accumulator would not vectorise, since float
/// addition is not associative).
const LANES: usize = 8;

#[inline(always)]
fn lane_reduce(
    values: &[f32],
    init: f32,
    step: impl Fn(f32, f32) -> f32,
    combine: impl Fn(f32, f32) -> f32,
) -> f32 {
    let mut acc = [init; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = step(*a, v);
        }
    }
    let lanes = acc.into_iter().fold(init, &combine);
    tail.iter().fold(lanes, |a, &v| step(a, v))
}

#[inline(always)]
fn lane_max(values: &[f32]) -> f32 {
    let max = |a: f32, v: f32| if v > a { v } else { a };
    let found = lane_reduce(values, f32::NEG_INFINITY, max, max);
    // A row of −∞ (fully masked) shifts by 0, giving exp(−∞) terms of equal weight.
    if found == f32::NEG_INFINITY {
        0.0
    } else {
        found
    }
}

#[inline(always)]
fn lane_sum(values: &[f32]) -> f32 {
    lane_reduce(values, 0.0, |a, v| a + v, |a, b| a + b)
}

#[inline(always)]
fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = chunks_a.remainder().iter().zip(chunks_b.remainder());
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for ((s, &x), &y) in acc.iter_mut().zip(ca).zip(cb) {
            *s = x.mul_add(y, *s);
        }
    }
    tail.fold(acc.iter().sum(), |s, (&x, &y)| x.mul_add(y, s))
}

/// Row-wise LayerNorm: `out[r] = (x[r] − mean) · rstd ⊙ gamma + beta` with the biased variance
/// and `rstd = 1 / sqrt(var + epsilon)`, rows of `gamma.len()` elements.
pub(crate) fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f32, out: &mut [f32]) {
    let row_len = gamma.len();
    let chunk = rows_per_task(row_len) * row_len;
    out.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(out, x)| {
            arch().dispatch(LayerNormRows {
                x,
                gamma,
                beta,
                epsilon,
                out,
            })
        });
}

/// LayerNorm's gradients from its input `x` and the output gradient `grad`: `dx` (written to
/// `dx`) and the returned `(dgamma, dbeta)`, summed over the rows. With `ĝ = grad ⊙ gamma`
/// and `x̂ = (x − mean)·rstd`: `dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂))`,
/// `dgamma = Σ grad ⊙ x̂`, `dbeta = Σ grad`.
pub(crate) fn layer_norm_backward(
    x: &[f32],
    gamma: &[f32],
    grad: &[f32],
    epsilon: f32,
    dx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let row_len = gamma.len();
    let chunk = rows_per_task(row_len) * row_len;
    let zeros = || (vec![0.0f32; row_len], vec![0.0f32; row_len]);
    dx.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk).zip(grad.par_chunks(chunk)))
        .map(|(dx, (x, grad))| {
            let (mut dgamma, mut dbeta) = zeros();
            arch().dispatch(LayerNormRowsBackward {
                x,
                gamma,
                grad,
                epsilon,
                dx,
                dgamma: &mut dgamma,
                dbeta: &mut dbeta,
            });
            (dgamma, dbeta)
        })
        .reduce(zeros, |(mut g1, mut b1), (g2, b2)| {
            g1.iter_mut().zip(&g2).for_each(|(a, b)| *a += b);
            b1.iter_mut().zip(&b2).for_each(|(a, b)| *a += b);
            (g1, b1)
        })
}

/// `(mean, rstd)` of one row.
#[inline(always)]
fn row_moments(x: &[f32], epsilon: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = lane_sum(x) / n;
    let var = lane_reduce(x, 0.0, |a, v| (v - mean).mul_add(v - mean, a), |a, b| a + b) / n;
    (mean, 1.0 / (var + epsilon).sqrt())
}

struct LayerNormRows<'a> {
    x: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    epsilon: f32,
    out: &'a mut [f32],
}

impl WithSimd for LayerNormRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let row_len = self.gamma.len();
        for (out, x) in self
            .out
            .chunks_exact_mut(row_len)
            .zip(self.x.chunks_exact(row_len))
        {
            let (mean, rstd) = row_moments(x, self.epsilon);
            let params = self.gamma.iter().zip(self.beta);
            for ((o, &v), (&g, &b)) in out.iter_mut().zip(x).zip(params) {
                *o = ((v - mean) * rstd).mul_add(g, b);
            }
        }
    }
}

struct LayerNormRowsBackward<'a> {
    x: &'a [f32],
    gamma: &'a [f32],
    grad: &'a [f32],
    epsilon: f32,
    dx: &'a mut [f32],
    dgamma: &'a mut [f32],
    dbeta: &'a mut [f32],
}

impl WithSimd for LayerNormRowsBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let row_len = self.gamma.len();
        let n = row_len as f32;
        let rows = self
            .x
            .chunks_exact(row_len)
            .zip(self.grad.chunks_exact(row_len));
        for (dx, (x, grad)) in self.dx.chunks_exact_mut(row_len).zip(rows) {
            let (mean, rstd) = row_moments(x, self.epsilon);
            // dx holds ĝ = grad ⊙ gamma first.
            for ((d, &g), &w) in dx.iter_mut().zip(grad).zip(self.gamma) {
                *d = g * w;
            }
            let mean_g = lane_sum(dx) / n;
            let mut dot = 0.0f32;
            for (&d, &v) in dx.iter().zip(x) {
                dot = d.mul_add((v - mean) * rstd, dot);
            }
            let mean_gx = dot / n;
            for (d, &v) in dx.iter_mut().zip(x) {
                let x_hat = (v - mean) * rstd;
                *d = rstd * (*d - mean_g - x_hat * mean_gx);
            }
            let sums = self.dgamma.iter_mut().zip(self.dbeta.iter_mut());
            for (((dg, db), &g), &v) in sums.zip(grad).zip(x) {
                *dg = g.mul_add((v - mean) * rstd, *dg);
                *db += g;
            }
        }
    }
}
