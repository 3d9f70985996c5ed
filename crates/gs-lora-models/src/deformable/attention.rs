//! Multi-scale deformable attention with its projections, as Hugging Face's
//! `DeformableDetrMultiscaleDeformableAttention`: each query predicts `L × P` sampling offsets
//! around its reference point and their softmax weights per head, reads the projected values
//! there, and projects the result.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Bool, Tensor, TensorData};
use gs_lora_core::fused;

use super::sampling::{SpatialShapes, multi_scale_deformable_sampling};
use crate::error::{ModelError, Result};
use crate::weights::{Init, Weights};

/// The sizes of a [`MultiScaleDeformableAttention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeformableAttentionConfig {
    /// Model width `d`.
    pub d_model: usize,
    /// Heads `M` (`d` must be a multiple).
    pub num_heads: usize,
    /// Feature levels `L`.
    pub num_levels: usize,
    /// Sampling points `P` per level and head.
    pub num_points: usize,
}

/// Multi-scale deformable attention (Zhu et al. 2021, eq. 3).
#[derive(Module, Debug)]
pub struct MultiScaleDeformableAttention {
    /// Query → `M · L · P · 2` sampling offsets, in pixels of each level.
    pub sampling_offsets: Linear,
    /// Query → `M · L · P` attention logits (softmax over `L · P` per head).
    pub attention_weights: Linear,
    /// Input features → values.
    pub value_proj: Linear,
    /// Heads' concatenated output → output.
    pub output_proj: Linear,
    /// Heads `M`.
    pub num_heads: usize,
    /// Feature levels `L`.
    pub num_levels: usize,
    /// Points `P` per level and head.
    pub num_points: usize,
}

impl MultiScaleDeformableAttention {
    /// Loads the four projections from `weights` (Hugging Face names, PyTorch layout).
    ///
    /// # Errors
    /// A width that is not a multiple of the heads, or a missing or mis-shaped tensor.
    pub fn load(mut weights: Weights, config: DeformableAttentionConfig) -> Result<Self> {
        let DeformableAttentionConfig {
            d_model: d,
            num_heads,
            num_levels,
            num_points,
        } = config;
        if num_heads == 0 || !d.is_multiple_of(num_heads) || num_levels == 0 || num_points == 0 {
            return Err(ModelError::InvalidConfig(format!(
                "deformable attention needs d_model a multiple of the heads and at least one \
                 level and point, found d_model {d}, {num_heads} heads, {num_levels} levels, \
                 {num_points} points"
            )));
        }
        let samples = num_heads * num_levels * num_points;
        let offset_bias = Init::SamplingOffsetBias {
            heads: num_heads,
            levels: num_levels,
            points: num_points,
        };
        Ok(Self {
            sampling_offsets: weights.pp("sampling_offsets").linear_of(
                d,
                samples * 2,
                Init::ZeroLinear,
                Some(offset_bias),
            )?,
            attention_weights: weights.pp("attention_weights").linear_of(
                d,
                samples,
                Init::ZeroLinear,
                Some(Init::Bias),
            )?,
            value_proj: weights.pp("value_proj").linear(d, d)?,
            output_proj: weights.pp("output_proj").linear(d, d)?,
            num_heads,
            num_levels,
            num_points,
        })
    }

    /// Attends from `queries` (plus `position`, when given) to `values` laid out as `shapes`.
    ///
    /// `reference_points` are `(x, y)` in `[0, 1]` per level, with offsets in pixels of each
    /// level; or `(cx, cy, w, h)` boxes, with offsets in units of half the box over `P`.
    /// `value_mask` marks the real (not padded) value tokens; padded ones read zeros.
    ///
    /// # Shapes
    /// - `queries`, `position`: `[N, Lq, d]`
    /// - `values`: `[N, S, d]`, `S = Σ H_l · W_l`; `value_mask`: `[N, S]`
    /// - `reference_points`: `[N, Lq, L, 2]` or `[N, Lq, L, 4]`
    /// - output: `[N, Lq, d]`
    ///
    /// # Errors
    /// [`ModelError::Input`] for shapes that disagree.
    pub fn forward(
        &self,
        queries: Tensor<3>,
        position: Option<Tensor<3>>,
        values: Tensor<3>,
        value_mask: Option<Tensor<2, Bool>>,
        reference_points: Tensor<4>,
        shapes: &SpatialShapes,
    ) -> Result<Tensor<3>> {
        let (heads, levels, points) = (self.num_heads, self.num_levels, self.num_points);
        let [batch, queries_len, d] = queries.dims();
        let [_, tokens, _] = values.dims();
        let [_, _, ref_levels, coordinates] = reference_points.dims();
        if shapes.len() != levels || ref_levels != levels || !matches!(coordinates, 2 | 4) {
            return Err(ModelError::Input {
                expected: format!(
                    "{levels} spatial shapes and reference points [N, Lq, {levels}, 2 or 4]"
                ),
                found: format!(
                    "{} spatial shapes, reference points {:?}",
                    shapes.len(),
                    reference_points.dims()
                ),
            });
        }
        let queries = match position {
            Some(position) => queries + position,
            None => queries,
        };
        let mut values = self.value_proj.forward(values);
        if let Some(mask) = value_mask {
            values = values.mask_fill(mask.bool_not().unsqueeze_dim::<3>(2), 0.0);
        }
        let values = values.reshape([batch, tokens, heads, d / heads]);
        let offsets = self.sampling_offsets.forward(queries.clone()).reshape([
            batch,
            queries_len,
            heads,
            levels,
            points,
            2,
        ]);
        let weights = fused::softmax(self.attention_weights.forward(queries).reshape([
            batch,
            queries_len,
            heads,
            levels * points,
        ]))
        .reshape([batch, queries_len, heads, levels, points]);

        let reference = |range| {
            reference_points.clone().narrow(3, range, 2).reshape([
                batch,
                queries_len,
                1,
                levels,
                1,
                2,
            ])
        };
        let locations = if coordinates == 2 {
            // Offsets are in pixels of each level: divide by (W_l, H_l).
            let sizes: Vec<f32> = shapes
                .iter()
                .flat_map(|&(h, w)| [w as f32, h as f32])
                .collect();
            let sizes = Tensor::<6>::from_data(
                TensorData::new(sizes, [1, 1, 1, levels, 1, 2]),
                &offsets.device(),
            );
            reference(0) + offsets / sizes
        } else {
            reference(0) + offsets.div_scalar(points as f64) * reference(2).mul_scalar(0.5)
        };
        let sampled = multi_scale_deformable_sampling(values, shapes, locations, weights)?;
        Ok(self.output_proj.forward(sampled))
    }
}
