//! Resampling a grid of position embeddings to another grid size, as the reference code does.
//!
//! Computed on the host in `f64` from the stored (frozen) embeddings: a handful of rows, and the
//! exact kernel matters (the two references differ by up to 0.3 on random data).

use serde::{Deserialize, Serialize};

/// The bicubic kernel a checkpoint's reference implementation resamples with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PosResample {
    /// PyTorch `interpolate(size=…, mode="bicubic", align_corners=False)` (Hugging Face ≥ 4.45):
    /// Keys cubic with `A = −0.75`, source index clamped at the borders.
    Bicubic,
    /// PyTorch's `antialias=True` bicubic (timm's `resample_abs_pos_embed`): Keys cubic with
    /// `A = −0.5`, support widened by the scale when downsampling, weights renormalised.
    BicubicAntialias,
}

/// Taps (source index, weight) of one output index along one axis.
fn axis_taps(kind: PosResample, input: usize, output: usize) -> Vec<Vec<(usize, f64)>> {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|i| match kind {
            PosResample::Bicubic => {
                const A: f64 = -0.75;
                let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
                let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
                let src = scale * (i as f64 + 0.5) - 0.5;
                let floor = src.floor();
                let t = (src - floor).clamp(0.0, 1.0);
                let i0 = (floor as i64).min(input as i64 - 1);
                let weights = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
                (0..4)
                    .map(|j| {
                        let index = (i0 + j as i64 - 1).clamp(0, input as i64 - 1) as usize;
                        (index, weights[j])
                    })
                    .collect()
            }
            PosResample::BicubicAntialias => {
                const A: f64 = -0.5;
                let cubic = |x: f64| {
                    let x = x.abs();
                    if x < 1.0 {
                        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                    } else if x < 2.0 {
                        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
                    } else {
                        0.0
                    }
                };
                let (support, inv_scale) = if scale >= 1.0 {
                    (2.0 * scale, 1.0 / scale)
                } else {
                    (2.0, 1.0)
                };
                let center = scale * (i as f64 + 0.5);
                let min = ((center - support + 0.5).trunc() as i64).max(0) as usize;
                let max = ((center + support + 0.5).trunc() as usize).min(input);
                let taps: Vec<(usize, f64)> = (min..max)
                    .map(|j| (j, cubic((j as f64 - center + 0.5) * inv_scale)))
                    .collect();
                let total: f64 = taps.iter().map(|(_, w)| w).sum();
                taps.into_iter().map(|(j, w)| (j, w / total)).collect()
            }
        })
        .collect()
}

/// Resamples a `[height, width, dim]` grid (row-major, `dim` fastest) to `[new_h, new_w, dim]`.
pub fn resample_grid(
    grid: &[f32],
    (height, width): (usize, usize),
    (new_h, new_w): (usize, usize),
    dim: usize,
    kind: PosResample,
) -> Vec<f32> {
    let rows = axis_taps(kind, height, new_h);
    let cols = axis_taps(kind, width, new_w);
    // Width first, then height (as PyTorch's separable antialias kernel; exact for both).
    let mut horizontal = vec![0.0f64; height * new_w * dim];
    for y in 0..height {
        for (x, taps) in cols.iter().enumerate() {
            let out = &mut horizontal[(y * new_w + x) * dim..(y * new_w + x + 1) * dim];
            for &(src, weight) in taps {
                let row = &grid[(y * width + src) * dim..(y * width + src + 1) * dim];
                out.iter_mut()
                    .zip(row)
                    .for_each(|(o, &v)| *o += weight * f64::from(v));
            }
        }
    }
    let mut output = vec![0.0f32; new_h * new_w * dim];
    for (y, taps) in rows.iter().enumerate() {
        for x in 0..new_w {
            let out = &mut output[(y * new_w + x) * dim..(y * new_w + x + 1) * dim];
            let mut acc = vec![0.0f64; dim];
            for &(src, weight) in taps {
                let row = &horizontal[(src * new_w + x) * dim..(src * new_w + x + 1) * dim];
                acc.iter_mut().zip(row).for_each(|(a, v)| *a += weight * v);
            }
            out.iter_mut().zip(acc).for_each(|(o, a)| *o = a as f32);
        }
    }
    output
}
