//! Deformable DETR for object detection (single or two stages, with or without iterative box
//! refinement), as Hugging Face's `DeformableDetrForObjectDetection`, with LoRA on the FFN of
//! every encoder and decoder layer: one adapter group per layer.
//!
//! Backbone stages → 1×1 projections (+ strided 3×3 ones for extra levels) with group norm →
//! tokens of all levels with sine positions and level embeddings → deformable encoder →
//! object queries (position half and content half of one embedding) with reference points →
//! deformable decoder → class logits and boxes `sigmoid(Δ + inverse_sigmoid(reference))`.

use std::ops::Range;

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use gs_lora_core::lora::derive_seed;
use gs_lora_core::{Batched, LoraConfig, LoraGroup, LoraLinear, LoraModel, check_dropout};

use super::box_head::BoxHead;
use super::layers::{DecoderLayer, EncoderLayer, LayerConfig};
use super::position::sine_position_embedding;
use super::queries::{LearnedQueries, Queries};
use super::two_stage::ProposalHead;
use crate::error::{ModelError, Result};
use crate::resnet::{ResNet, ResNetConfig};
use crate::weights::{ConvShape, Init, ParamSource, Weights};

/// Groups of the input projections' group norm (the reference's 32).
const GROUPS: usize = 32;

/// The architecture of a [`DeformableDetr`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeformableDetrConfig {
    /// Model width `d` (a multiple of 32 and of the heads).
    pub d_model: usize,
    /// Encoder layers.
    pub encoder_layers: usize,
    /// Decoder layers.
    pub decoder_layers: usize,
    /// Encoder attention heads.
    pub encoder_heads: usize,
    /// Decoder attention heads.
    pub decoder_heads: usize,
    /// Encoder FFN width.
    pub encoder_ffn_dim: usize,
    /// Decoder FFN width.
    pub decoder_ffn_dim: usize,
    /// Object queries.
    pub num_queries: usize,
    /// Feature levels: the last three backbone stages, then strided extra levels (1: the last
    /// stage alone).
    pub num_feature_levels: usize,
    /// Sampling points per level and head in the encoder.
    pub encoder_points: usize,
    /// Sampling points per level and head in the decoder.
    pub decoder_points: usize,
    /// Object classes (sigmoid scores, no background class).
    pub num_labels: usize,
    /// Iterative box refinement: each decoder layer has its own box head, whose output becomes
    /// the next layer's reference box (Zhu et al. 2021, §4.1).
    #[serde(default)]
    pub with_box_refine: bool,
    /// Two stages: the encoder proposes boxes and the best `two_stage_num_proposals` become the
    /// queries (needs box refinement, as the reference).
    #[serde(default)]
    pub two_stage: bool,
    /// Proposals kept as queries by a two-stage model.
    #[serde(default)]
    pub two_stage_num_proposals: usize,
    /// Dropout probability while training on the residual branches of the encoder and decoder
    /// layers (after each attention and after the FFN), as Hugging Face's `dropout` (0.1 in the
    /// released checkpoints and in the official training).
    #[serde(default)]
    pub dropout: f64,
    /// Dropout probability after the FFN's activation (Hugging Face's `activation_dropout`: 0.0
    /// in the released configs, 0.1 in the official training, whose layers use one rate).
    #[serde(default)]
    pub activation_dropout: f64,
    /// Dropout probability on the decoder self-attention's weights (Hugging Face's
    /// `attention_dropout`: 0.0 in the released configs, 0.1 in the official training).
    #[serde(default)]
    pub attention_dropout: f64,
    /// The backbone.
    pub backbone: ResNetConfig,
}

impl DeformableDetrConfig {
    /// Output channels of the backbone stages the model reads.
    fn backbone_channels(&self) -> Vec<usize> {
        let channels = self.backbone.stage_channels();
        let used = if self.num_feature_levels > 1 { 3 } else { 1 };
        channels[channels.len().saturating_sub(used)..].to_vec()
    }

    /// Checks that the sizes fit together and that the model fits the memory limit (checked
    /// first, in overflow-free arithmetic, so that absurd sizes are refused before any other
    /// product of them is formed).
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] naming the values, or the limit's error.
    pub fn validate(&self) -> Result<()> {
        let d = self.d_model;
        let parameters = self.parameter_count();
        gs_lora_core::Limits::from_env()?.check_memory(
            || {
                format!(
                    "a Deformable DETR with d_model {d}, {} + {} layers, FFN {} / {}, {} queries, \
                     {} labels and backbone widths {:?} (about {parameters} parameters)",
                    self.encoder_layers,
                    self.decoder_layers,
                    self.encoder_ffn_dim,
                    self.decoder_ffn_dim,
                    self.num_queries,
                    self.num_labels,
                    self.backbone.widths
                )
            },
            parameters.saturating_mul(8),
        )?;
        check_dropout("dropout", self.dropout)?;
        check_dropout("activation_dropout", self.activation_dropout)?;
        check_dropout("attention_dropout", self.attention_dropout)?;
        let bad = d == 0
            || !d.is_multiple_of(GROUPS)
            || self.num_feature_levels == 0
            || self.num_queries == 0
            || self.backbone.widths.len() < 3
            || self.backbone_channels().len() > self.num_feature_levels;
        if bad {
            return Err(ModelError::InvalidConfig(format!(
                "Deformable DETR needs d_model a multiple of {GROUPS}, at least one query, a \
                 backbone of at least three stages and no more backbone levels than feature \
                 levels; found d_model {d}, {} queries, {} stages, {} levels",
                self.num_queries,
                self.backbone.widths.len(),
                self.num_feature_levels
            )));
        }
        Ok(())
    }

    /// Bytes one forward pass without gradients needs at its peak for `batch` images of
    /// `height × width` (an estimate: the backbone's widest activations, about 64 values per
    /// input pixel, and the encoder's tokens, in `f32`).
    pub fn forward_bytes(&self, batch: usize, height: usize, width: usize) -> u128 {
        let pixels = (height as u128).saturating_mul(width as u128);
        let per_image = pixels
            .saturating_mul(67)
            .saturating_add((pixels / 48).saturating_mul(self.d_model as u128 * 8));
        per_image.saturating_mul(batch as u128).saturating_mul(4)
    }

    /// An upper estimate of the parameter count (adapters excluded), computed without
    /// overflow so that absurd configs are refused before anything is allocated.
    pub fn parameter_count(&self) -> u128 {
        let n = |v: usize| v as u128;
        let sum = |parts: &[u128]| parts.iter().fold(0u128, |s, p| s.saturating_add(*p));
        let d = n(self.d_model);
        let square = |v: u128| v.saturating_mul(v);
        let backbone = self.backbone.widths.iter().zip(&self.backbone.depths).fold(
            // The 7×7 stem from the input channels.
            n(self.backbone.in_channels)
                .saturating_mul(n(self.backbone.stem_width))
                .saturating_mul(49),
            |s, (w, depth)| {
                // Bottleneck: 1×1 (4w→w), 3×3 (w→w), 1×1 (w→4w), and the projection shortcut.
                let block = square(n(*w)).saturating_mul(4 + 9 + 4 + 16);
                s.saturating_add(block.saturating_mul(n(*depth)))
            },
        );
        let sampling = |heads: usize, points: usize| {
            let samples = n(heads)
                .saturating_mul(n(self.num_feature_levels))
                .saturating_mul(n(points));
            sum(&[
                d.saturating_mul(samples).saturating_mul(3),
                square(d).saturating_mul(2),
            ])
        };
        let ffn = |dim: usize| d.saturating_mul(n(dim)).saturating_mul(2);
        let encoder = sum(&[
            sampling(self.encoder_heads, self.encoder_points),
            ffn(self.encoder_ffn_dim),
        ])
        .saturating_mul(n(self.encoder_layers));
        let decoder = sum(&[
            square(d).saturating_mul(4),
            sampling(self.decoder_heads, self.decoder_points),
            ffn(self.decoder_ffn_dim),
        ])
        .saturating_mul(n(self.decoder_layers));
        let levels = n(self.num_feature_levels);
        let heads = sum(&[
            d.saturating_mul(n(self.num_labels)),
            square(d).saturating_mul(3),
        ])
        .saturating_mul(n(self.decoder_layers).saturating_add(2));
        sum(&[
            backbone,
            encoder,
            decoder,
            heads,
            square(d).saturating_mul(levels).saturating_mul(16),
            n(self.num_queries).saturating_mul(d).saturating_mul(2),
            n(self.two_stage_num_proposals).saturating_mul(d),
        ])
    }

    fn layer(&self, heads: usize, ffn_dim: usize, num_points: usize) -> LayerConfig {
        LayerConfig {
            d_model: self.d_model,
            num_heads: heads,
            ffn_dim,
            num_levels: self.num_feature_levels,
            num_points,
            dropout: self.dropout,
            activation_dropout: self.activation_dropout,
            attention_dropout: self.attention_dropout,
        }
    }
}

/// A convolution followed by group norm, mapping one feature level to `d` channels.
#[derive(Module, Debug)]
pub struct InputProjection {
    /// 1×1 (backbone levels) or 3×3 stride-2 (extra levels) convolution.
    pub conv: Conv2d,
    /// Group norm over 32 groups.
    pub norm: GroupNorm,
}

impl InputProjection {
    /// Loads the convolution `0` of `shape` and the group norm `1`.
    fn load(mut weights: Weights, shape: ConvShape) -> Result<Self> {
        Ok(Self {
            conv: weights.pp(0).conv2d(shape)?,
            norm: weights.pp(1).group_norm(GROUPS, shape.channels[1])?,
        })
    }

    /// # Shapes
    /// `[N, C, H, W] → [N, d, H', W']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.norm.forward(self.conv.forward(x))
    }
}

/// Where the decoder's queries come from.
// One per model, never moved in a loop: boxing the larger variant would buy nothing (and Burn
// derives no `Module` for `Box`).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum QuerySource {
    /// Learned query embeddings (single-stage models).
    Learned(LearnedQueries),
    /// The encoder's best proposals (two-stage models).
    Proposals(ProposalHead),
}

impl QuerySource {
    /// Two-stage models read the proposal heads after the decoder's (`model.enc_output`, …,
    /// `class_embed.{L}`), the others learned queries (`model.query_position_embeddings`,
    /// `model.reference_points`), all from the checkpoint's root.
    fn load(weights: &mut Weights, config: &DeformableDetrConfig) -> Result<Self> {
        let d = config.d_model;
        Ok(match config.two_stage {
            true => {
                let head = (config.decoder_layers, config.two_stage_num_proposals);
                Self::Proposals(ProposalHead::load(weights, d, config.num_labels, head)?)
            }
            false => Self::Learned(LearnedQueries::load(
                weights.pp("model"),
                config.num_queries,
                d,
            )?),
        })
    }

    /// The queries for the encoder output `memory` `[N, S, d]` (tokens of `shapes`, real where
    /// `level_masks` says).
    ///
    /// # Errors
    /// Proposal scores that cannot be read back from the device.
    pub fn forward(
        &self,
        memory: Tensor<3>,
        level_masks: &[Vec<bool>],
        shapes: &[(usize, usize)],
    ) -> Result<Queries> {
        match self {
            Self::Learned(queries) => Ok(queries.forward(memory.dims()[0])),
            Self::Proposals(proposals) => proposals.forward(memory, level_masks, shapes),
        }
    }
}

/// What the detector predicts for each object query.
#[derive(Debug, Clone)]
pub struct DetrOutput {
    /// Class logits `[N, Q, C]` (sigmoid scores per class).
    pub logits: Tensor<3>,
    /// Boxes `[N, Q, 4]`: `(cx, cy, w, h)` normalised to the image.
    pub pred_boxes: Tensor<3>,
    /// The last decoder layer's query embeddings `[N, Q, d]`, which both heads read.
    pub hidden: Tensor<3>,
}

/// Split and gathered along the images, every field alike
/// ([`DataParallel`](gs_lora_core::DataParallel)).
impl Batched for DetrOutput {
    fn rows(&self) -> usize {
        self.logits.rows()
    }

    fn narrow_rows(&self, range: Range<usize>) -> Self {
        Self {
            logits: self.logits.narrow_rows(range.clone()),
            pred_boxes: self.pred_boxes.narrow_rows(range.clone()),
            hidden: self.hidden.narrow_rows(range),
        }
    }

    fn moved_to(self, device: &Device) -> Self {
        Self {
            logits: self.logits.moved_to(device),
            pred_boxes: self.pred_boxes.moved_to(device),
            hidden: self.hidden.moved_to(device),
        }
    }

    fn cat_rows(parts: Vec<Self>) -> Self {
        let all = |f: fn(&Self) -> Tensor<3>| parts.iter().map(f).collect();
        Self {
            logits: Batched::cat_rows(all(|p| p.logits.clone())),
            pred_boxes: Batched::cat_rows(all(|p| p.pred_boxes.clone())),
            hidden: Batched::cat_rows(all(|p| p.hidden.clone())),
        }
    }
}

/// Deformable DETR with LoRA on every encoder and decoder FFN.
#[derive(Module, Debug)]
pub struct DeformableDetr {
    /// The ResNet backbone (frozen batch norm).
    pub backbone: ResNet,
    /// One projection per feature level.
    pub input_proj: Vec<InputProjection>,
    /// Learned embedding of each level `[L, d]`.
    pub level_embed: Param<Tensor<2>>,
    /// Encoder layers.
    pub encoder: Vec<EncoderLayer>,
    /// Decoder layers.
    pub decoder: Vec<DecoderLayer>,
    /// Where the decoder's queries come from: learned embeddings, or the encoder's proposals
    /// in two-stage models.
    pub queries: QuerySource,
    /// Class head.
    pub class_embed: Linear,
    /// Box heads: one shared head, or one per decoder layer with box refinement (the last
    /// predicts the output boxes).
    pub bbox_embed: Vec<BoxHead>,
    /// The architecture.
    #[module(skip)]
    pub config: DeformableDetrConfig,
}

/// The feature levels flattened into one token sequence, with what the encoder and the
/// decoder need to read it.
struct Levels {
    /// Tokens of all levels `[N, S, d]`.
    tokens: Tensor<3>,
    /// Their sine positions plus level embeddings `[N, S, d]`.
    positions: Tensor<3>,
    /// Each level's real pixels, `N · h · w` flags.
    masks: Vec<Vec<bool>>,
    /// Each level's `(h, w)`.
    shapes: Vec<(usize, usize)>,
    /// Each image's share of real columns and rows per level `[N, L, 2]`.
    ratios: Tensor<3>,
    /// The encoder's reference points `[N, S, L, 2]`.
    references: Tensor<4>,
    /// The real tokens `[N, S]`, for padded batches only (without padding all are real).
    token_mask: Option<Tensor<2, Bool>>,
}

impl DeformableDetr {
    /// Builds the model from `source` (names of the released checkpoints, as transformers
    /// writes them: `model.backbone.model.*`, `model.input_proj.*`, `model.encoder.layers.*`,
    /// `class_embed.{last}`, …), with fresh LoRA adapters drawn from `seed`.
    ///
    /// # Errors
    /// An invalid config, or a missing or mis-shaped tensor (naming the key and both shapes).
    pub fn load(
        config: &DeformableDetrConfig,
        source: &mut impl ParamSource,
        lora: &LoraConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let mut weights = Weights::new(source, device);
        let d = config.d_model;
        let mut model = weights.pp("model");
        let backbone = ResNet::load(model.pp("backbone.model"), &config.backbone)?;
        let input_proj = Self::input_shapes(config)
            .into_iter()
            .enumerate()
            .map(|(level, shape)| InputProjection::load(model.pp("input_proj").pp(level), shape))
            .collect::<Result<Vec<_>>>()?;
        let encoder_layer = config.layer(
            config.encoder_heads,
            config.encoder_ffn_dim,
            config.encoder_points,
        );
        let decoder_layer = config.layer(
            config.decoder_heads,
            config.decoder_ffn_dim,
            config.decoder_points,
        );
        let mut encoder_weights = model.pp("encoder.layers");
        let encoder = (0..config.encoder_layers)
            .map(|i| {
                let layer_seed = derive_seed(seed, i as u64);
                EncoderLayer::load(encoder_weights.pp(i), &encoder_layer, lora, layer_seed)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut decoder_weights = model.pp("decoder.layers");
        let decoder = (0..config.decoder_layers)
            .map(|i| {
                let layer_seed = derive_seed(seed, (config.encoder_layers + i) as u64);
                DecoderLayer::load(decoder_weights.pp(i), &decoder_layer, lora, layer_seed)
            })
            .collect::<Result<Vec<_>>>()?;
        // Without box refinement every decoder level shares one head: the last level's name is
        // asked for, and a checkpoint's key map reads whichever copy it holds (`DetrKeys`).
        // With it, every level's box head refines the reference boxes.
        let head = config.decoder_layers.saturating_sub(1);
        let box_heads = if config.with_box_refine {
            0..config.decoder_layers
        } else {
            head..head + 1
        };
        let bbox_embed = box_heads
            .map(|level| BoxHead::load(weights.pp("bbox_embed").pp(level), d))
            .collect::<Result<Vec<_>>>()?;
        let queries = QuerySource::load(&mut weights, config)?;
        Ok(Self {
            backbone,
            input_proj,
            level_embed: weights.pp("model").param(
                "level_embed",
                [config.num_feature_levels, d],
                Init::Embedding,
            )?,
            encoder,
            decoder,
            queries,
            class_embed: weights.pp("class_embed").pp(head).linear_of(
                d,
                config.num_labels,
                Init::Linear,
                Some(Init::ClassBias),
            )?,
            bbox_embed,
            config: config.clone(),
        })
    }

    /// The convolution of each level's input projection: 1×1 from the backbone stages used,
    /// then 3×3 stride 2 for the extra levels (the first from the last stage, the others
    /// from the previous level).
    fn input_shapes(config: &DeformableDetrConfig) -> Vec<ConvShape> {
        let d = config.d_model;
        let channels = config.backbone_channels();
        let mut extra_input = *channels.last().unwrap_or(&d);
        (0..config.num_feature_levels)
            .map(|level| match channels.get(level) {
                Some(&c) => ConvShape {
                    channels: [c, d],
                    kernel: 1,
                    stride: 1,
                    padding: 0,
                },
                None => {
                    let shape = ConvShape {
                        channels: [extra_input, d],
                        kernel: 3,
                        stride: 2,
                        padding: 1,
                    };
                    extra_input = d;
                    shape
                }
            })
            .collect()
    }

    /// The model with every dropout rate (residual, activation and attention weights) set to
    /// `prob`, as the official training uses one rate for all.
    ///
    /// # Errors
    /// [`gs_lora_core::CoreError::OutOfRange`] when `prob` is not in `[0, 1)`.
    pub fn with_dropout(mut self, prob: f64) -> Result<Self> {
        check_dropout("dropout", prob)?;
        for layer in &mut self.encoder {
            layer.dropout = prob;
            layer.ffn.dropout = prob;
            layer.ffn.activation_dropout = prob;
        }
        for layer in &mut self.decoder {
            layer.dropout = prob;
            layer.self_attn.attention_dropout = prob;
            layer.ffn.dropout = prob;
            layer.ffn.activation_dropout = prob;
        }
        self.config.dropout = prob;
        self.config.activation_dropout = prob;
        self.config.attention_dropout = prob;
        Ok(self)
    }

    /// Detects objects in unpadded images (every pixel real).
    ///
    /// # Shapes
    /// - `pixels`: `[N, 3, H, W]`, normalised as the checkpoint expects
    /// - output: logits `[N, Q, C]`, boxes `[N, Q, 4]`
    ///
    /// # Errors
    /// [`ModelError::Input`] for a wrong channel count or an image too small for the levels.
    pub fn forward(&self, pixels: Tensor<4>) -> Result<DetrOutput> {
        self.forward_masked(pixels, None)
    }

    /// Detects objects in a padded batch: `pixel_mask` marks each image's real pixels (as
    /// Hugging Face's `pixel_mask`; padding at the bottom and right, as its image processor
    /// pads). Positions count real pixels only, padded tokens are never attended to, and
    /// reference points and boxes are relative to each image's real part.
    ///
    /// # Shapes
    /// - `pixels`: `[N, 3, H, W]`; `pixel_mask`: `[N, H, W]`, true on real pixels
    /// - output: logits `[N, Q, C]`, boxes `[N, Q, 4]` normalised to the real part
    ///
    /// # Errors
    /// [`ModelError::Input`] for a wrong channel count, an image too small for the levels, or a
    /// mask of another size.
    pub fn forward_masked(
        &self,
        pixels: Tensor<4>,
        pixel_mask: Option<Tensor<3, Bool>>,
    ) -> Result<DetrOutput> {
        let valid = self.check_input(pixels.dims(), pixel_mask)?;
        let levels = self.embed_levels(pixels, valid.as_deref())?;
        let memory = self.encode(&levels)?;
        let queries = self
            .queries
            .forward(memory.clone(), &levels.masks, &levels.shapes)?;
        let (hidden, reference) = self.decode(queries, memory, &levels)?;
        Ok(self.predict(hidden, reference))
    }

    /// The smallest image height and width the model reads: its coarsest feature level must
    /// keep one pixel.
    pub fn min_input_side(&self) -> usize {
        1 << (self.backbone.stages.len() + 1 + self.config.num_feature_levels.saturating_sub(3))
    }

    /// Checks the input of `shape` `[N, C, H, W]` and its mask, returned as `N · H · W` flags.
    fn check_input(
        &self,
        shape: [usize; 4],
        pixel_mask: Option<Tensor<3, Bool>>,
    ) -> Result<Option<Vec<bool>>> {
        let [batch, channels, height, width] = shape;
        let min_side = self.min_input_side();
        if batch == 0
            || channels != self.config.backbone.in_channels
            || height < min_side
            || width < min_side
        {
            return Err(ModelError::Input {
                expected: format!(
                    "[N, {}, H, W] images with N ≥ 1 and H, W ≥ {min_side}",
                    self.config.backbone.in_channels
                ),
                found: format!("{shape:?}"),
            });
        }
        gs_lora_core::Limits::from_env()?.check_memory(
            || format!("a forward pass on an input of shape {shape:?}"),
            self.config.forward_bytes(batch, height, width),
        )?;
        let valid = match pixel_mask {
            Some(mask) if mask.dims() == [batch, height, width] => Some(
                mask.into_data()
                    .try_to_vec::<bool>()
                    .map_err(|err| ModelError::Readback {
                        what: "the pixel mask",
                        message: format!("{err:?}"),
                    })?,
            ),
            Some(mask) => {
                return Err(ModelError::Input {
                    expected: format!("a pixel mask [{batch}, {height}, {width}]"),
                    found: format!("{:?}", mask.dims()),
                });
            }
            None => None,
        };
        if let Some(empty) = valid
            .as_ref()
            .and_then(|v| (0..batch).find(|&n| !v[n * height * width]))
        {
            return Err(ModelError::Input {
                expected: "a real top-left pixel in every image (padding at the bottom and right)"
                    .into(),
                found: format!("image {empty} padded at its top-left pixel"),
            });
        }
        Ok(valid)
    }

    /// Runs the backbone and the input projections and flattens every level into tokens with
    /// their positions; `valid` marks the real pixels (`N · H · W` flags; none: all real).
    fn embed_levels(&self, pixels: Tensor<4>, valid: Option<&[bool]>) -> Result<Levels> {
        let [batch, _, height, width] = pixels.dims();
        let device = pixels.device();
        let d = self.config.d_model;
        let features = self.backbone.forward(pixels);
        let used = &features[features.len() - self.config.backbone_channels().len()..];
        let mut sources: Vec<Tensor<4>> = Vec::with_capacity(self.input_proj.len());
        for (level, projection) in self.input_proj.iter().enumerate() {
            let input = match used.get(level) {
                Some(feature) => feature.clone(),
                None if level == used.len() => used[used.len() - 1].clone(),
                None => sources[level - 1].clone(),
            };
            sources.push(projection.forward(input));
        }

        let mut shapes = Vec::with_capacity(sources.len());
        let mut tokens = Vec::with_capacity(sources.len());
        let mut positions = Vec::with_capacity(sources.len());
        let mut masks = Vec::with_capacity(sources.len());
        for (level, source) in sources.into_iter().enumerate() {
            let [_, _, h, w] = source.dims();
            shapes.push((h, w));
            let level_mask = match valid {
                Some(valid) => nearest_mask(valid, [batch, height, width], [h, w]),
                None => vec![true; batch * h * w],
            };
            let flat = |t: Tensor<4>| t.reshape([batch, d, h * w]).swap_dims(1, 2);
            tokens.push(flat(source));
            let position = sine_position_embedding(&level_mask, [batch, h, w], d / 2, &device)?;
            let level_embed = self
                .level_embed
                .val()
                .narrow(0, level, 1)
                .reshape([1, 1, d]);
            positions.push(flat(position) + level_embed);
            masks.push(level_mask);
        }
        let ratios = valid_ratios(&masks, &shapes, batch);
        let references = encoder_reference_points(&shapes, &ratios, batch, &device);
        let ratios =
            Tensor::<3>::from_data(TensorData::new(ratios, [batch, shapes.len(), 2]), &device);
        let token_mask = valid.map(|_| token_mask(&masks, &shapes, batch, &device));
        Ok(Levels {
            tokens: Tensor::cat(tokens, 1),
            positions: Tensor::cat(positions, 1),
            masks,
            shapes,
            ratios,
            references,
            token_mask,
        })
    }

    /// The encoder's output `[N, S, d]`.
    fn encode(&self, levels: &Levels) -> Result<Tensor<3>> {
        self.encoder
            .iter()
            .try_fold(levels.tokens.clone(), |memory, layer| {
                layer.forward(
                    memory,
                    levels.positions.clone(),
                    levels.token_mask.clone(),
                    levels.references.clone(),
                    &levels.shapes,
                )
            })
    }

    /// Runs the decoder from `queries` over `memory`: the last layer's hidden states
    /// `[N, Q, d]` and the reference the box head refines, points `[N, Q, 2]` or boxes
    /// `[N, Q, 4]` (from proposals, or once a refining head has run).
    fn decode(
        &self,
        queries: Queries,
        memory: Tensor<3>,
        levels: &Levels,
    ) -> Result<(Tensor<3>, Tensor<3>)> {
        let Queries {
            position,
            content: mut hidden,
            mut reference,
        } = queries;
        // Each level reads the reference scaled to its real part (boxes: all four coordinates).
        let per_level = |reference: &Tensor<3>| {
            let ratios = levels.ratios.clone();
            let scale = match reference.dims()[2] {
                2 => ratios,
                _ => Tensor::cat(vec![ratios.clone(), ratios], 2),
            };
            reference.clone().unsqueeze_dim::<4>(2) * scale.unsqueeze_dim(1)
        };
        let mut reference_input = per_level(&reference);
        let last = self.decoder.len().saturating_sub(1);
        for (level, layer) in self.decoder.iter().enumerate() {
            hidden = layer.forward(
                hidden,
                position.clone(),
                reference_input.clone(),
                memory.clone(),
                levels.token_mask.clone(),
                &levels.shapes,
            )?;
            if self.config.with_box_refine && level < last {
                let delta = self.bbox_embed[level].forward(hidden.clone());
                // The reference detaches the refined boxes: each head learns its own correction.
                reference = refined_boxes(delta, reference).detach();
                reference_input = per_level(&reference);
            }
        }
        Ok((hidden, reference))
    }

    /// The class logits and the last box head's boxes around `reference`.
    fn predict(&self, hidden: Tensor<3>, reference: Tensor<3>) -> DetrOutput {
        let logits = self.class_embed.forward(hidden.clone());
        let head = &self.bbox_embed[self.bbox_embed.len() - 1];
        let pred_boxes = refined_boxes(head.forward(hidden.clone()), reference);
        DetrOutput {
            logits,
            pred_boxes,
            hidden,
        }
    }
}

/// `mask` (`[N, H, W]`, row-major) resized to `[N, h, w]` by nearest neighbour, as PyTorch's
/// `interpolate(mode="nearest")`: source index `⌊i · H / h⌋`.
fn nearest_mask(
    mask: &[bool],
    [batch, height, width]: [usize; 3],
    [h, w]: [usize; 2],
) -> Vec<bool> {
    let source = |i: usize, from: usize, to: usize| {
        ((i as f32 * (from as f32 / to as f32)).floor() as usize).min(from - 1)
    };
    (0..batch)
        .flat_map(|n| {
            (0..h).flat_map(move |i| {
                let row = source(i, height, h);
                (0..w).map(move |j| mask[(n * height + row) * width + source(j, width, w)])
            })
        })
        .collect()
}

/// Each image's share of real rows and columns per level, `(w, h)` as the reference's
/// `get_valid_ratio` (real pixels counted along the first column and the first row); `N · L · 2`
/// values.
fn valid_ratios(level_masks: &[Vec<bool>], shapes: &[(usize, usize)], batch: usize) -> Vec<f32> {
    (0..batch)
        .flat_map(|n| {
            level_masks
                .iter()
                .zip(shapes)
                .flat_map(move |(mask, &(h, w))| {
                    let image = &mask[n * h * w..(n + 1) * h * w];
                    let rows = (0..h).filter(|&i| image[i * w]).count();
                    let columns = (0..w).filter(|&j| image[j]).count();
                    [columns as f32 / w as f32, rows as f32 / h as f32]
                })
        })
        .collect()
}

/// The tokens of all levels that are real pixels, `[N, S]`.
fn token_mask(
    level_masks: &[Vec<bool>],
    shapes: &[(usize, usize)],
    batch: usize,
    device: &Device,
) -> Tensor<2, Bool> {
    let tokens: usize = shapes.iter().map(|&(h, w)| h * w).sum();
    let flags: Vec<bool> = (0..batch)
        .flat_map(|n| {
            level_masks
                .iter()
                .zip(shapes)
                .flat_map(move |(mask, &(h, w))| mask[n * h * w..(n + 1) * h * w].iter().copied())
        })
        .collect();
    Tensor::from_data(TensorData::new(flags, [batch, tokens]), device)
}

/// Boxes `sigmoid(Δ + inverse_sigmoid(reference))`: for reference points `[N, Q, 2]` the
/// centre moves and `Δ` gives the size; for reference boxes `[N, Q, 4]` all four move.
fn refined_boxes(delta: Tensor<3>, reference: Tensor<3>) -> Tensor<3> {
    let logits = match reference.dims()[2] {
        2 => {
            let centre = delta.clone().narrow(2, 0, 2) + inverse_sigmoid(reference);
            Tensor::cat(vec![centre, delta.narrow(2, 2, 2)], 2)
        }
        _ => delta + inverse_sigmoid(reference),
    };
    sigmoid(logits)
}

/// `log(x / (1 − x))` with both clamped to at least 1e-5, as the reference.
fn inverse_sigmoid(x: Tensor<3>) -> Tensor<3> {
    let x = x.clamp(0.0, 1.0);
    let (a, b) = (
        x.clone().clamp_min(1e-5),
        x.ones_like().sub(x).clamp_min(1e-5),
    );
    (a / b).log()
}

/// Each token's pixel centre in its own level relative to the image's real part,
/// `((j + ½)/(r_w W), (i + ½)/(r_h H))`, then scaled by every level's ratios `r` (`ratios`:
/// `N · L · 2` values, `(w, h)`), as the reference's encoder; `[N, S, L, 2]`.
fn encoder_reference_points(
    shapes: &[(usize, usize)],
    ratios: &[f32],
    batch: usize,
    device: &Device,
) -> Tensor<4> {
    let levels = shapes.len();
    let points: Vec<f32> = (0..batch)
        .flat_map(|n| {
            let ratio = move |level: usize, axis: usize| ratios[(n * levels + level) * 2 + axis];
            shapes.iter().enumerate().flat_map(move |(level, &(h, w))| {
                (0..h * w).flat_map(move |t| {
                    let x = ((t % w) as f32 + 0.5) / (ratio(level, 0) * w as f32);
                    let y = ((t / w) as f32 + 0.5) / (ratio(level, 1) * h as f32);
                    (0..levels).flat_map(move |l| [x * ratio(l, 0), y * ratio(l, 1)])
                })
            })
        })
        .collect();
    let tokens = points.len() / (2 * levels * batch.max(1));
    Tensor::<4>::from_data(TensorData::new(points, [batch, tokens, levels, 2]), device)
}

impl LoraModel for DeformableDetr {
    fn lora_groups(&self) -> Vec<LoraGroup<&LoraLinear>> {
        let encoder = self.encoder.iter().enumerate().map(|(i, layer)| {
            LoraGroup::new(
                format!("encoder.layers.{i}"),
                vec![&layer.ffn.fc1, &layer.ffn.fc2],
            )
        });
        let decoder = self.decoder.iter().enumerate().map(|(i, layer)| {
            LoraGroup::new(
                format!("decoder.layers.{i}"),
                vec![&layer.ffn.fc1, &layer.ffn.fc2],
            )
        });
        encoder.chain(decoder).collect()
    }

    fn lora_groups_mut(&mut self) -> Vec<LoraGroup<&mut LoraLinear>> {
        let encoder = self.encoder.iter_mut().enumerate().map(|(i, layer)| {
            let ffn = &mut layer.ffn;
            LoraGroup::new(
                format!("encoder.layers.{i}"),
                vec![&mut ffn.fc1, &mut ffn.fc2],
            )
        });
        let decoder = self.decoder.iter_mut().enumerate().map(|(i, layer)| {
            let ffn = &mut layer.ffn;
            LoraGroup::new(
                format!("decoder.layers.{i}"),
                vec![&mut ffn.fc1, &mut ffn.fc2],
            )
        });
        encoder.chain(decoder).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DeformableDetrConfig {
        DeformableDetrConfig::from_json(r#"{"model_type": "deformable_detr"}"#).expect("defaults")
    }

    /// Found by fuzzing `detector.json`: a backbone with 2³¹ − 1 input channels passed the
    /// check and its stem allocated 27 TB. Every size of the backbone counts in the estimate,
    /// and absurd sizes are refused before any product of them is formed.
    #[test]
    fn absurd_sizes_are_refused_before_allocating() {
        assert!(config().validate().is_ok(), "the reference model fits");
        let mut wide = config();
        wide.backbone.in_channels = (1 << 31) - 1;
        let err = wide.validate().expect_err("27 TB stem");
        assert!(err.to_string().contains("GS_LORA_MAX_MEMORY"), "{err}");
        let mut huge = config();
        huge.backbone.widths[1] = usize::MAX / 2;
        assert!(huge.validate().is_err(), "no overflow in 4·width either");
        let mut queries = config();
        queries.num_queries = usize::MAX;
        assert!(queries.validate().is_err());
    }
}
