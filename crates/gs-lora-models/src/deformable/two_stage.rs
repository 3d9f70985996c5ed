//! Two-stage Deformable DETR (Zhu et al. 2021, appendix A.4): every encoder token proposes a
//! box around itself; the best-scoring proposals become the decoder's queries and reference
//! boxes, in place of learned query embeddings.

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Int, Tensor, TensorData};

use super::box_head::BoxHead;
use super::layers::LAYER_NORM_EPS;
use super::queries::Queries;
use crate::error::{ModelError, Result};
use crate::weights::{Init, Weights};

/// Temperature of the proposals' sine embedding (as the reference).
const TEMPERATURE: f64 = 10_000.0;

/// The first stage: proposals from the encoder output, scored and boxed by heads of their own.
#[derive(Module, Debug)]
pub struct ProposalHead {
    /// Encoder output → proposal features.
    pub enc_output: Linear,
    /// Their LayerNorm.
    pub enc_output_norm: LayerNorm,
    /// Proposal box embedding `[2d]` → query position and content `[2d]`.
    pub pos_trans: Linear,
    /// Its LayerNorm.
    pub pos_trans_norm: LayerNorm,
    /// Proposal scores (class 0 ranks them).
    pub class_embed: Linear,
    /// Proposal box refinement.
    pub bbox_embed: BoxHead,
    /// Proposals kept as queries.
    pub num_proposals: usize,
}

impl ProposalHead {
    /// Loads `model.enc_output{,_norm}`, `model.pos_trans{,_norm}` and the proposal heads
    /// `class_embed.{head}` / `bbox_embed.{head}` (the last of the per-level heads) from the
    /// checkpoint's root.
    pub(crate) fn load(
        weights: &mut Weights,
        d: usize,
        num_labels: usize,
        (head, num_proposals): (usize, usize),
    ) -> Result<Self> {
        let mut model = weights.pp("model");
        let enc_output = model.pp("enc_output").linear(d, d)?;
        let enc_output_norm = model.pp("enc_output_norm").layer_norm(d, LAYER_NORM_EPS)?;
        let pos_trans = model.pp("pos_trans").linear(2 * d, 2 * d)?;
        let pos_trans_norm = model
            .pp("pos_trans_norm")
            .layer_norm(2 * d, LAYER_NORM_EPS)?;
        Ok(Self {
            enc_output,
            enc_output_norm,
            pos_trans,
            pos_trans_norm,
            class_embed: weights.pp("class_embed").pp(head).linear_of(
                d,
                num_labels,
                Init::Linear,
                Some(Init::ClassBias),
            )?,
            bbox_embed: BoxHead::load(weights.pp("bbox_embed").pp(head), d)?,
            num_proposals,
        })
    }

    /// Picks the `K` best proposals of `memory` (`[N, S, d]`, tokens of `shapes` whose real
    /// pixels `level_masks` marks per level, `[N, h, w]` each).
    pub fn forward(
        &self,
        memory: Tensor<3>,
        level_masks: &[Vec<bool>],
        shapes: &[(usize, usize)],
    ) -> Result<Queries> {
        let [batch, tokens, d] = memory.dims();
        let device = memory.device();
        let (proposals, usable) = proposals(level_masks, shapes, batch);
        let usable = Tensor::<3>::from_data(TensorData::new(usable, [batch, tokens, 1]), &device);
        let proposals =
            Tensor::<3>::from_data(TensorData::new(proposals, [batch, tokens, 4]), &device);
        // Padded tokens and proposals off the image's edges propose nothing.
        let features = self
            .enc_output_norm
            .forward(self.enc_output.forward(memory * usable));
        let scores = self.class_embed.forward(features.clone()).narrow(2, 0, 1);
        let boxes = self.bbox_embed.forward(features) + proposals;

        let k = self.num_proposals.min(tokens);
        let scores: Vec<f32> =
            scores
                .inner()
                .try_into_vec_as::<f32>()
                .map_err(|err| ModelError::Readback {
                    what: "the proposal scores",
                    message: format!("{err:?}"),
                })?;
        let rows: Vec<i64> = (0..batch)
            .flat_map(|n| {
                let image = &scores[n * tokens..(n + 1) * tokens];
                let mut order: Vec<usize> = (0..tokens).collect();
                order.sort_by(|&a, &b| image[b].total_cmp(&image[a]).then(a.cmp(&b)));
                order.truncate(k);
                order.into_iter().map(move |t| (n * tokens + t) as i64)
            })
            .collect();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [batch * k]), &device);
        let chosen = boxes
            .reshape([batch * tokens, 4])
            .select(0, rows)
            .reshape([batch, k, 4])
            .detach();
        let embedded = self
            .pos_trans_norm
            .forward(self.pos_trans.forward(box_embedding(chosen.clone(), d)));
        Ok(Queries {
            position: embedded.clone().narrow(2, 0, d),
            content: embedded.narrow(2, d, d),
            reference: burn::tensor::activation::sigmoid(chosen),
        })
    }
}

/// Each token's proposal before the sigmoid, `N · S · 4` values, and whether it is usable
/// (`N · S` flags as 0/1): a box centred on the token, its centre relative to the image's real
/// part, of side `0.05 · 2^level`; usable when real and all four coordinates lie in
/// `(0.01, 0.99)` (others get `+∞`, as the reference).
fn proposals(
    level_masks: &[Vec<bool>],
    shapes: &[(usize, usize)],
    batch: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut logits = Vec::new();
    let mut usable = Vec::new();
    for n in 0..batch {
        for (level, (mask, &(h, w))) in level_masks.iter().zip(shapes).enumerate() {
            let image = &mask[n * h * w..(n + 1) * h * w];
            let rows = (0..h).filter(|&i| image[i * w]).count() as f32;
            let columns = (0..w).filter(|&j| image[j]).count() as f32;
            let side = 0.05 * 2f32.powi(level as i32);
            for (t, &real) in image.iter().enumerate() {
                let proposal = [
                    ((t % w) as f32 + 0.5) / columns,
                    ((t / w) as f32 + 0.5) / rows,
                    side,
                    side,
                ];
                let ok = real && proposal.iter().all(|&p| p > 0.01 && p < 0.99);
                logits.extend(proposal.map(|p| {
                    if ok {
                        (p / (1.0 - p)).ln()
                    } else {
                        f32::INFINITY
                    }
                }));
                usable.push(if ok { 1.0 } else { 0.0 });
            }
        }
    }
    (logits, usable)
}

/// The reference's sine embedding of proposal boxes (before the sigmoid) `[N, K, 4]` →
/// `[N, K, 2d]`: per coordinate `d/2` features `sin, cos, sin, …` of
/// `2π · sigmoid(x) / T^(2⌊i/2⌋ / (d/2))`.
fn box_embedding(boxes: Tensor<3>, d: usize) -> Tensor<3> {
    let [batch, k, _] = boxes.dims();
    let features = d / 2;
    let device = boxes.device();
    let inverse_frequency: Vec<f32> = (0..features)
        .map(|i| (1.0 / TEMPERATURE.powf((2 * (i / 2)) as f64 / features as f64)) as f32)
        .collect();
    let inverse_frequency =
        Tensor::<1>::from_data(TensorData::new(inverse_frequency, [features]), &device)
            .reshape([1, 1, 1, features]);
    let angles = burn::tensor::activation::sigmoid(boxes)
        .mul_scalar(std::f64::consts::TAU)
        .unsqueeze_dim::<4>(3)
        * inverse_frequency;
    // Even features take the sine, odd ones the cosine.
    let even: Vec<f32> = (0..features)
        .map(|i| if i % 2 == 0 { 1.0 } else { 0.0 })
        .collect();
    let even = Tensor::<1>::from_data(TensorData::new(even, [features]), &device)
        .reshape([1, 1, 1, features]);
    let odd = even.clone().neg().add_scalar(1.0);
    (angles.clone().sin() * even + angles.cos() * odd).reshape([batch, k, 4 * features])
}
