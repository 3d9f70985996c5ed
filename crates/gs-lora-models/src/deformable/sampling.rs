//! The sampling core of multi-scale deformable attention (Zhu et al. 2021, eq. 3, without the
//! projections): every query reads `L × P` bilinearly interpolated points per head from the
//! feature levels and sums them with its attention weights.
//!
//! Bilinear interpolation follows `grid_sample(…, padding_mode="zeros", align_corners=False)` as
//! the reference implementation calls it per level, but it is written as one gather of the four
//! neighbours of every point from all levels at once. Its backward is a scatter-add into the
//! values plus elementwise terms for the locations and weights, where Burn's `grid_sample_2d`
//! under autodiff runs a decomposed reference implementation about 30× slower than PyTorch's.
//! On GPUs the scatter-add is [`select_rows`]'s planned one: Burn's runs serially there.

use burn::tensor::{Int, Tensor, TensorData};
use gs_lora_core::select_rows;

use crate::error::{ModelError, Result};

/// `(height, width)` of each feature level, in the order levels are concatenated in `value`.
pub type SpatialShapes = [(usize, usize)];

/// Multi-scale deformable sampling.
///
/// # Shapes
/// - `value`: `[N, S, M, Dh]`, the levels flattened row-major and concatenated, `S = Σ H_l·W_l`
/// - `locations`: `[N, Lq, M, L, P, 2]`, `(x, y)` normalised to `[0, 1]` per level (0 and 1 are
///   the outer edges of the level's first and last pixel)
/// - `weights`: `[N, Lq, M, L, P]`
/// - output: `[N, Lq, M · Dh]`
///
/// Points outside a level read zeros.
///
/// # Errors
/// [`ModelError::Input`] when the shapes disagree with each other or with `shapes`.
pub fn multi_scale_deformable_sampling(
    value: Tensor<4>,
    shapes: &SpatialShapes,
    locations: Tensor<6>,
    weights: Tensor<5>,
) -> Result<Tensor<3>> {
    let [batch, tokens, heads, head_dim] = value.dims();
    let [_, queries, _, levels, points, _] = locations.dims();
    check_shapes(value.dims(), shapes, locations.dims(), weights.dims())?;
    let device = value.device();

    // Per-level constants, shaped to broadcast over [N, Lq, M, L, P].
    let per_level = |f: &dyn Fn(usize) -> i64| {
        let data: Vec<i64> = (0..levels).map(f).collect();
        Tensor::<1, Int>::from_data(TensorData::new(data, [levels]), &device)
            .reshape([1, 1, 1, levels, 1])
    };
    let widths = per_level(&|l| shapes[l].1 as i64);
    let heights = per_level(&|l| shapes[l].0 as i64);
    let starts = per_level(&|l| shapes[..l].iter().map(|(h, w)| (h * w) as i64).sum());
    // `value` flattened to rows [N · S · M, Dh]: the row of (image n, token s, head m) is
    // (n · S + s) · M + m, so each (image, head) contributes n · S · M + m plus s · M.
    let bases: Vec<i64> = (0..batch)
        .flat_map(|n| (0..heads).map(move |m| (n * tokens * heads + m) as i64))
        .collect();
    let bases = Tensor::<1, Int>::from_data(TensorData::new(bases, [batch * heads]), &device)
        .reshape([batch, 1, heads, 1, 1]);
    // Pixel coordinates with align_corners = false: x · W − 0.5.
    let coordinate = |axis: usize, size: &Tensor<5, Int>| {
        locations
            .clone()
            .narrow(5, axis, 1)
            .squeeze_dim::<5>(5)
            .mul(size.clone().float())
            .sub_scalar(0.5)
    };
    let (x, y) = (coordinate(0, &widths), coordinate(1, &heights));
    let (x0, y0) = (x.clone().detach().floor(), y.clone().detach().floor());
    let (fx, fy) = (x - x0.clone(), y - y0.clone());
    let (x0, y0) = (x0.int(), y0.int());

    let mut corner_weights = Vec::with_capacity(4);
    let mut corner_rows = Vec::with_capacity(4);
    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        let xi = x0.clone().add_scalar(dx);
        let yi = y0.clone().add_scalar(dy);
        let inside = xi
            .clone()
            .greater_equal_elem(0)
            .bool_and(xi.clone().lower(widths.clone()))
            .bool_and(yi.clone().greater_equal_elem(0))
            .bool_and(yi.clone().lower(heights.clone()));
        let wx = if dx == 0 {
            fx.ones_like() - fx.clone()
        } else {
            fx.clone()
        };
        let wy = if dy == 0 {
            fy.ones_like() - fy.clone()
        } else {
            fy.clone()
        };
        corner_weights.push(wx * wy * weights.clone() * inside.clone().float());
        // Outside points read row 0 with weight 0.
        let token = starts.clone() + yi * widths.clone() + xi;
        let row = token.mul_scalar(heads as i64) + bases.clone();
        corner_rows.push(row.mask_fill(inside.bool_not(), 0));
    }
    // [N, Lq, M, L, P, 4]: each (image, query, head) owns a run of L · P · 4 samples, already in
    // the output's order, so no tensor is transposed.
    let samples = levels * points * 4;
    let runs = batch * queries * heads;
    let corner_weights: Tensor<6> = Tensor::stack(corner_weights, 5);
    let corner_rows: Tensor<6, Int> = Tensor::stack(corner_rows, 5);
    let gathered = select_rows(
        value.reshape([batch * tokens * heads, head_dim]),
        corner_rows.reshape([runs * samples]),
    )
    .reshape([runs, samples, head_dim]);
    // A [1, K] × [K, Dh] product per run: its backward reads the gathered rows once for the
    // weights' gradient and writes the rows' gradient once, with no [runs, K, Dh] temporaries.
    Ok(corner_weights
        .reshape([runs, 1, samples])
        .matmul(gathered)
        .reshape([batch, queries, heads * head_dim]))
}

fn check_shapes(
    value: [usize; 4],
    shapes: &SpatialShapes,
    locations: [usize; 6],
    weights: [usize; 5],
) -> Result<()> {
    let mismatch = |expected: String, found: String| Err(ModelError::Input { expected, found });
    let tokens: usize = shapes.iter().map(|(h, w)| h * w).sum();
    if shapes.is_empty() || shapes.iter().any(|&(h, w)| h == 0 || w == 0) {
        return mismatch(
            "at least one feature level, each of non-zero size".into(),
            format!("spatial shapes {shapes:?}"),
        );
    }
    if value[1] != tokens {
        return mismatch(
            format!("value with S = {tokens} tokens (Σ H·W of {shapes:?})"),
            format!("value of shape {value:?}"),
        );
    }
    let [n, lq, m, l, p, _] = locations;
    let expected_locations = [value[0], lq, value[2], shapes.len(), p, 2];
    if locations != expected_locations {
        return mismatch(
            format!("sampling locations of shape {expected_locations:?} [N, Lq, M, L, P, 2]"),
            format!("{locations:?}"),
        );
    }
    if weights != [n, lq, m, l, p] {
        return mismatch(
            format!(
                "attention weights of shape {:?} [N, Lq, M, L, P]",
                [n, lq, m, l, p]
            ),
            format!("{weights:?}"),
        );
    }
    Ok(())
}
