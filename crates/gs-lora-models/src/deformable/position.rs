//! The sine position embedding of DETR for feature maps with padding: each valid pixel's row
//! and column index, counted over valid pixels only and normalised to `[0, 2π]`, encoded with
//! sines and cosines of geometrically spaced frequencies.

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{ModelError, Result};

/// Temperature of the frequencies (10 000, as the reference).
const TEMPERATURE: f64 = 10_000.0;

/// The position embedding `[N, 2F, H, W]` of feature maps whose valid pixels are `valid`
/// (`N · H · W` flags, row-major; padding false): the first `F` channels encode the row, the
/// last `F` the column, alternating `sin`, `cos` per frequency (`F` = `num_features`, even).
/// At padded pixels the values follow the reference's formula but carry no meaning (it divides
/// by a count of zero plus 1e-6); attention never reads padded tokens.
///
/// # Errors
/// [`ModelError::Input`] when `valid` does not have `N · H · W` flags or `F` is odd or zero.
pub fn sine_position_embedding(
    valid: &[bool],
    [batch, height, width]: [usize; 3],
    num_features: usize,
    device: &Device,
) -> Result<Tensor<4>> {
    if valid.len() != batch * height * width || num_features == 0 || num_features % 2 == 1 {
        return Err(ModelError::Input {
            expected: format!(
                "{} mask flags ([{batch}, {height}, {width}]) and an even number of features",
                batch * height * width
            ),
            found: format!("{} flags, {num_features} features", valid.len()),
        });
    }
    let scale = std::f64::consts::TAU;
    let frequencies: Vec<f64> = (0..num_features)
        .map(|i| TEMPERATURE.powf((2 * (i / 2)) as f64 / num_features as f64))
        .collect();
    let plane = height * width;
    let mut out = vec![0.0f32; batch * 2 * num_features * plane];
    for n in 0..batch {
        let at = |h: usize, w: usize| valid[n * plane + h * width + w] as u32 as f64;
        // Cumulative counts of valid pixels down each column and along each row.
        let mut rows = vec![0.0; plane];
        let mut cols = vec![0.0; plane];
        for h in 0..height {
            for w in 0..width {
                let i = h * width + w;
                rows[i] = at(h, w) + if h > 0 { rows[i - width] } else { 0.0 };
                cols[i] = at(h, w) + if w > 0 { cols[i - 1] } else { 0.0 };
            }
        }
        for h in 0..height {
            for w in 0..width {
                let i = h * width + w;
                let y = (rows[i] - 0.5) / (rows[(height - 1) * width + w] + 1e-6) * scale;
                let x = (cols[i] - 0.5) / (cols[h * width + width - 1] + 1e-6) * scale;
                for (c, frequency) in frequencies.iter().enumerate() {
                    let encode = |v: f64| {
                        if c % 2 == 0 {
                            (v / frequency).sin()
                        } else {
                            (v / frequency).cos()
                        }
                    };
                    let base = (n * 2 * num_features + c) * plane + i;
                    out[base] = encode(y) as f32;
                    out[base + num_features * plane] = encode(x) as f32;
                }
            }
        }
    }
    let shape = [batch, 2 * num_features, height, width];
    Ok(Tensor::from_data(TensorData::new(out, shape), device))
}
