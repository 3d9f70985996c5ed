//! The element-wise loops behind the fused ops, on contiguous `f32` slices.
//!
//! Each loop is split into chunks that rayon spreads over the cores (Burn's Flex runs its
//! element-wise ops on one thread), and each chunk runs inside [`pulp::Arch::dispatch`], which
//! compiles the closure for the best instruction set the CPU has (AVX2 + FMA here) and picks
//! it at run time, so the straight-line bodies vectorise.

use rayon::prelude::*;

use super::approx::{erf, exp_nonpositive};

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
        .for_each(|(out, x)| {
            pulp::Arch::new().dispatch(|| {
                for (o, &x) in out.iter_mut().zip(x) {
                    *o = 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2));
                }
            })
        });
}

/// `out = grad · gelu'(x)` with `gelu'(x) = Φ(x) + x·φ(x)`, `φ(x) = exp(−x²/2)/√(2π)`.
pub(crate) fn gelu_backward(x: &[f32], grad: &[f32], out: &mut [f32]) {
    debug_assert_eq!(x.len(), out.len());
    debug_assert_eq!(grad.len(), out.len());
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
        .for_each(|(out, (x, grad))| {
            pulp::Arch::new().dispatch(|| {
                for ((o, &x), &g) in out.iter_mut().zip(x).zip(grad) {
                    let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
                    let pdf = INV_SQRT_2PI * exp_nonpositive(-0.5 * x * x);
                    *o = g * x.mul_add(pdf, cdf);
                }
            })
        });
}
