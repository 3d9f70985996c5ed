//! The Vision Transformer: patch embedding, class token, position grid, blocks, pooling, head.

use std::ops::Range;

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Tensor, TensorData};
use gs_lora_core::lora::derive_seed;
use gs_lora_core::{Batched, LoraConfig, LoraGroup, LoraLinear, LoraModel, check_dropout, dropout};

use super::block::Block;
use super::head::Head;
use super::pos_embed::resample_grid;
use super::{GlobalPool, VitConfig, VitFormat};
use crate::error::{ModelError, Result};
use crate::weights::{ConvShape, Init, ParamSource, SeededInit, Weights, frozen};

/// What a forward pass returns.
#[derive(Debug, Clone)]
pub struct VitOutput {
    /// The final token sequence `[B, prefix + N, D]`, as Hugging Face's `last_hidden_state` and
    /// timm's `forward_features` (normalised, except for timm's `avg` pooling).
    pub last_hidden_state: Tensor<3>,
    /// Hugging Face's `pooler_output` `[B, D]`, where the format has one.
    pub pooler_output: Option<Tensor<2>>,
    /// The feature the head reads `[B, D]` (GS-LoRA++ prototypes live in this space).
    pub embedding: Tensor<2>,
    /// Class scores `[B, C]`, when the model has a head.
    pub logits: Option<Tensor<2>>,
    /// The tokens after the lower half of the blocks (`⌊depth/2⌋` of them) `[B, prefix + N, D]`:
    /// where LIRF splits the model.
    pub middle_hidden_state: Tensor<3>,
}

/// Split and gathered along the batch, every field alike ([`DataParallel`](gs_lora_core::DataParallel)).
impl Batched for VitOutput {
    fn rows(&self) -> usize {
        self.embedding.rows()
    }

    fn narrow_rows(&self, range: Range<usize>) -> Self {
        Self {
            last_hidden_state: self.last_hidden_state.narrow_rows(range.clone()),
            pooler_output: self.pooler_output.narrow_rows(range.clone()),
            embedding: self.embedding.narrow_rows(range.clone()),
            logits: self.logits.narrow_rows(range.clone()),
            middle_hidden_state: self.middle_hidden_state.narrow_rows(range),
        }
    }

    fn moved_to(self, device: &Device) -> Self {
        Self {
            last_hidden_state: self.last_hidden_state.moved_to(device),
            pooler_output: self.pooler_output.moved_to(device),
            embedding: self.embedding.moved_to(device),
            logits: self.logits.moved_to(device),
            middle_hidden_state: self.middle_hidden_state.moved_to(device),
        }
    }

    fn cat_rows(parts: Vec<Self>) -> Self {
        let all = |f: fn(&Self) -> Tensor<3>| parts.iter().map(f).collect();
        let optional = |f: fn(&Self) -> Option<Tensor<2>>| parts.iter().map(f).collect();
        Self {
            last_hidden_state: Batched::cat_rows(all(|p| p.last_hidden_state.clone())),
            pooler_output: Batched::cat_rows(optional(|p| p.pooler_output.clone())),
            embedding: Batched::cat_rows(parts.iter().map(|p| p.embedding.clone()).collect()),
            logits: Batched::cat_rows(optional(|p| p.logits.clone())),
            middle_hidden_state: Batched::cat_rows(all(|p| p.middle_hidden_state.clone())),
        }
    }
}

/// A Vision Transformer with LoRA on both FFN Linears of every block.
///
/// Everything except the adapters is frozen after loading (GS-LoRA trains adapters only).
#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// Patch embedding, a convolution with kernel = stride = patch size.
    pub patch_embed: Conv2d,
    /// Class token `[1, 1, D]`.
    pub cls_token: Option<Param<Tensor<3>>>,
    /// Position embeddings `[1, prefix + G², D]` for the stored grid `G × G`.
    pub pos_embed: Param<Tensor<3>>,
    /// The Transformer blocks.
    pub blocks: Vec<Block>,
    /// Final norm (token pooling).
    pub norm: Option<LayerNorm>,
    /// Norm after average pooling (timm `avg`).
    pub fc_norm: Option<LayerNorm>,
    /// Hugging Face `ViTModel` pooler: `tanh(dense(cls))`.
    pub pooler: Option<Linear>,
    /// Classifier.
    pub head: Option<Head>,
    /// The architecture.
    #[module(skip)]
    pub config: VitConfig,
}

impl VisionTransformer {
    /// Builds the model from `source` (a checkpoint or [`SeededInit`]), wrapping every FFN
    /// Linear with a fresh LoRA adapter drawn from `seed`.
    ///
    /// # Errors
    /// An invalid config, or a missing or mis-shaped tensor (naming the key and both shapes).
    pub fn load(
        config: &VitConfig,
        source: &mut impl ParamSource,
        lora: &LoraConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let mut weights = Weights::new(source, device);
        let (d, eps) = (config.hidden_size, config.layer_norm_eps);
        let (channels, patch) = (config.num_channels, config.patch_size);
        let patch_embed = match config.format {
            VitFormat::GsLoraFace => weights
                .pp("patch_embed.linear")
                .patch_linear_as_conv(channels, d, patch)?,
            _ => weights
                .pp("patch_embed.proj")
                .conv2d(ConvShape::patch([channels, d], patch))?,
        };
        let cls_token = config
            .class_token
            .then(|| weights.param("cls_token", [1, 1, d], Init::Embedding))
            .transpose()?;
        let positions = config.num_prefix_tokens() + config.grid_size().pow(2);
        let pos_embed = weights.param("pos_embed", [1, positions, d], Init::Embedding)?;
        let mut block_weights = weights.pp("blocks");
        let blocks = (0..config.depth)
            .map(|i| {
                Block::load(
                    block_weights.pp(i),
                    config,
                    lora,
                    derive_seed(seed, i as u64),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let (norm, fc_norm) = match config.global_pool {
            GlobalPool::Token => (Some(weights.pp("norm").layer_norm(d, eps)?), None),
            GlobalPool::Avg => (None, Some(weights.pp("fc_norm").layer_norm(d, eps)?)),
        };
        let pooler = (config.format == VitFormat::HfVit && weights.contains("pooler.weight"))
            .then(|| weights.pp("pooler").linear(d, d))
            .transpose()?;
        let head = config
            .num_classes
            .map(|classes| Head::load(weights.pp("head"), config, classes))
            .transpose()?;
        Ok(Self {
            patch_embed,
            cls_token,
            pos_embed,
            blocks,
            norm,
            fc_norm,
            pooler,
            head,
            config: config.clone(),
        })
    }

    /// Replaces the head with a fresh, trainable one of the config's kind with `num_classes`
    /// classes, drawn from `seed` (timm-style truncated normal, std 0.02, zero bias).
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] when `num_classes` is zero.
    pub fn with_new_head(mut self, num_classes: usize, seed: u64) -> Result<Self> {
        if num_classes == 0 {
            return Err(ModelError::InvalidConfig(
                "a head needs at least one class".into(),
            ));
        }
        let device = self.pos_embed.val().device();
        let mut init = SeededInit::new(seed);
        let head = Head::load(
            Weights::new(&mut init, &device).pp("head"),
            &self.config,
            num_classes,
        )?;
        self.head = Some(head.set_require_grad(true));
        self.config.num_classes = Some(num_classes);
        Ok(self)
    }

    /// The position embeddings for a `grid_h × grid_w` patch grid, `[1, prefix + N, D]`.
    fn position_embedding(&self, grid_h: usize, grid_w: usize) -> Result<Tensor<3>> {
        let grid = self.config.grid_size();
        let pos = self.pos_embed.val();
        if (grid_h, grid_w) == (grid, grid) {
            return Ok(pos);
        }
        let (prefix, d) = (self.config.num_prefix_tokens(), self.config.hidden_size);
        let device = pos.device();
        let patch_pos = pos.clone().slice_dim(1, prefix..prefix + grid * grid);
        let values: Vec<f32> =
            patch_pos
                .try_into_vec_as::<f32>()
                .map_err(|err| ModelError::Readback {
                    what: "the position embeddings",
                    message: err.to_string(),
                })?;
        let resampled = resample_grid(
            &values,
            (grid, grid),
            (grid_h, grid_w),
            d,
            self.config.pos_resample,
        );
        let resampled =
            Tensor::from_data(TensorData::new(resampled, [1, grid_h * grid_w, d]), &device);
        Ok(Tensor::cat(vec![pos.slice_dim(1, 0..prefix), resampled], 1))
    }

    /// The model with every dropout rate set to `prob` (see [`VitConfig::dropout`]).
    ///
    /// # Errors
    /// [`gs_lora_core::CoreError::OutOfRange`] when `prob` is not in `[0, 1)`.
    pub fn with_dropout(mut self, prob: f64) -> Result<Self> {
        check_dropout("dropout", prob)?;
        for block in &mut self.blocks {
            block.attn.dropout = prob;
            block.mlp.dropout = prob;
        }
        self.config.dropout = prob;
        Ok(self)
    }

    /// The model with its head scoring only the classes `rows`, in that order (see
    /// [`Head::select_classes`]): a 1000-way ImageNet head cut to a dataset's classes.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for a model without a head, [`ModelError::Input`] for a
    /// row that is not one of its classes.
    pub fn select_classes(mut self, rows: &[usize]) -> Result<Self> {
        let head = self.head.take().ok_or_else(|| {
            ModelError::InvalidConfig("the model has no classifier head to cut".into())
        })?;
        self.head = Some(head.select_classes(rows)?);
        self.config.num_classes = Some(rows.len());
        Ok(self)
    }

    /// Resamples the stored position grid for inputs of `image_size` once (as timm's
    /// `set_input_size`), so later forwards at that size need no resampling.
    ///
    /// # Errors
    /// [`ModelError::Input`] when `image_size` is not a multiple of the patch size.
    pub fn resize_position_grid(mut self, image_size: usize) -> Result<Self> {
        let grid = self.checked_grid(image_size, image_size)?;
        let pos = self.position_embedding(grid.0, grid.1)?;
        // Detached but on the model's own device: an autodiff model stays one (a head attached
        // later is created where `pos_embed` lives).
        self.pos_embed = frozen(pos.detach());
        self.config.image_size = image_size;
        Ok(self)
    }

    fn checked_grid(&self, height: usize, width: usize) -> Result<(usize, usize)> {
        let patch = self.config.patch_size;
        if !height.is_multiple_of(patch)
            || !width.is_multiple_of(patch)
            || height == 0
            || width == 0
        {
            return Err(ModelError::Input {
                expected: format!(
                    "an image whose height and width are positive multiples of the patch size {patch}"
                ),
                found: format!("{height}x{width}"),
            });
        }
        Ok((height / patch, width / patch))
    }

    /// Checks that an input of `shape` `[B, C, H, W]` can run: at least one image, the
    /// model's channel count, sides that are multiples of the patch size, and a forward pass
    /// that fits the memory limit ([`VitConfig::forward_bytes`]).
    ///
    /// # Errors
    /// [`ModelError::Input`] naming the shape, or the limit's error.
    pub fn check_input(&self, shape: [usize; 4]) -> Result<()> {
        let [batch, channels, height, width] = shape;
        if batch == 0 {
            return Err(ModelError::Input {
                expected: "at least one image".into(),
                found: format!("an empty batch (input shape {shape:?})"),
            });
        }
        if channels != self.config.num_channels {
            return Err(ModelError::Input {
                expected: format!("{} input channels", self.config.num_channels),
                found: format!("{channels} (input shape {shape:?})"),
            });
        }
        self.checked_grid(height, width)?;
        gs_lora_core::Limits::from_env()?.check_memory(
            || format!("a forward pass on an input of shape {shape:?}"),
            self.config.forward_bytes(batch, height, width),
        )?;
        Ok(())
    }

    /// Runs the model.
    ///
    /// # Shapes
    /// - pixels: `[B, C, H, W]`, `H` and `W` multiples of the patch size
    ///
    /// # Errors
    /// As [`check_input`](Self::check_input).
    pub fn forward(&self, pixels: Tensor<4>) -> Result<VitOutput> {
        self.check_input(pixels.dims())?;
        let [batch, _, height, width] = pixels.dims();
        let (grid_h, grid_w) = self.checked_grid(height, width)?;
        let d = self.config.hidden_size;
        let patches = self
            .patch_embed
            .forward(pixels)
            .reshape([batch, d, grid_h * grid_w])
            .swap_dims(1, 2);
        let tokens = match &self.cls_token {
            Some(cls) => Tensor::cat(vec![cls.val().expand([batch, 1, d]), patches], 1),
            None => patches,
        };
        let x = dropout(
            tokens + self.position_embedding(grid_h, grid_w)?,
            self.config.dropout,
        );
        let (lower, upper) = self.blocks.split_at(self.lower_half_depth());
        let middle_hidden_state = lower.iter().fold(x, |x, block| block.forward(x));
        let x = upper
            .iter()
            .fold(middle_hidden_state.clone(), |x, block| block.forward(x));

        let prefix = self.config.num_prefix_tokens();
        let tokens = match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        let first = || tokens.clone().slice_dim(1, 0..1).reshape([batch, d]);
        let embedding = match (self.config.global_pool, &self.fc_norm) {
            (GlobalPool::Avg, Some(fc_norm)) => {
                let n = tokens.dims()[1];
                let mean = tokens
                    .clone()
                    .slice_dim(1, prefix..n)
                    .mean_dim(1)
                    .reshape([batch, d]);
                fc_norm.forward(mean)
            }
            _ => first(),
        };
        let pooler_output = match (&self.pooler, self.config.format) {
            (Some(pooler), _) => Some(tanh(pooler.forward(first()))),
            (None, VitFormat::HfDinov2) => Some(first()),
            _ => None,
        };
        let logits = self
            .head
            .as_ref()
            .map(|head| head.forward(embedding.clone()));
        Ok(VitOutput {
            last_hidden_state: tokens,
            pooler_output,
            embedding,
            logits,
            middle_hidden_state,
        })
    }

    /// The number of blocks in the model's lower half, `⌊depth/2⌋` (LIRF trains the embeddings
    /// and these blocks; the official face ViT's blocks 0–2 of 6).
    pub fn lower_half_depth(&self) -> usize {
        self.blocks.len() / 2
    }
}

impl LoraModel for VisionTransformer {
    fn lora_groups(&self) -> Vec<LoraGroup<&LoraLinear>> {
        self.blocks
            .iter()
            .enumerate()
            .map(|(i, block)| {
                LoraGroup::new(format!("blocks.{i}"), vec![&block.mlp.fc1, &block.mlp.fc2])
            })
            .collect()
    }

    fn lora_groups_mut(&mut self) -> Vec<LoraGroup<&mut LoraLinear>> {
        self.blocks
            .iter_mut()
            .enumerate()
            .map(|(i, block)| {
                let mlp = &mut block.mlp;
                LoraGroup::new(format!("blocks.{i}"), vec![&mut mlp.fc1, &mut mlp.fc2])
            })
            .collect()
    }
}
