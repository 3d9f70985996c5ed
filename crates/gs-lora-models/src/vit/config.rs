//! The architecture of a Vision Transformer, read from the `config.json` users have.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{HeadKind, PosResample};
use crate::config_file::{config_error, read_config_file};
use crate::error::{ModelError, Result};

/// What the classifier reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GlobalPool {
    /// The class token after the final norm (timm `token`, Hugging Face).
    Token,
    /// The mean of the patch tokens, then `fc_norm` (timm `avg`).
    Avg,
}

/// The checkpoint layout, which decides key names and details of the forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitFormat {
    /// timm `VisionTransformer` (`blocks.N.attn.qkv`, …).
    Timm,
    /// Hugging Face `ViTModel` (`encoder.layer.N…`) or, with a head, `ViTForImageClassification`
    /// (`vit.` prefix, `classifier`).
    HfVit,
    /// Hugging Face `Dinov2Model` (layer scale, `mlp.fc1`, position grid always interpolated).
    HfDinov2,
    /// The face Transformer `ViT_face` of the official GS-LoRA code (CosFace head).
    GsLoraFace,
    /// torchvision `VisionTransformer` (`vit_b_16`, …: `encoder.layers.encoder_layer_N…`).
    Torchvision,
}

/// Everything that fixes a Vision Transformer's shape and forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Checkpoint layout.
    pub format: VitFormat,
    /// Input size the stored position grid was made for (square).
    pub image_size: usize,
    /// Patch size (square).
    pub patch_size: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Token width `D`.
    pub hidden_size: usize,
    /// Number of Transformer blocks.
    pub depth: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// FFN hidden width.
    pub mlp_hidden: usize,
    /// Whether q, k, v projections have a bias.
    pub qkv_bias: bool,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Whether a class token is prepended.
    pub class_token: bool,
    /// What the classifier reads.
    pub global_pool: GlobalPool,
    /// Whether blocks have layer scale (`ls1`, `ls2`).
    pub layer_scale: bool,
    /// Classes of the linear head; `None` for a backbone without head.
    pub num_classes: Option<usize>,
    /// How the position grid is resampled to another input size.
    pub pos_resample: PosResample,
    /// Scale of the attention logits; `head_dim^-1/2` when absent.
    #[serde(default)]
    pub attention_scale: Option<f64>,
    /// The kind of classifier head.
    #[serde(default)]
    pub head: HeadKind,
    /// Dropout probability while training, after the position embedding, the attention
    /// projection, the FFN's activation and the FFN's output, where the face ViT (0.1),
    /// torchvision and timm put it ([`gs_lora_core::dropout`]). Hugging Face configs'
    /// `hidden_dropout_prob` (0.0 in the released ViT and DINOv2 configs; Hugging Face places it
    /// elsewhere) is not read: such models train without dropout unless this is set.
    #[serde(default)]
    pub dropout: f64,
}

impl VitConfig {
    /// The stored position grid's side, `image_size / patch_size`.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Scale of the attention logits.
    pub fn attention_scale(&self) -> f64 {
        self.attention_scale
            .unwrap_or(((self.hidden_size / self.num_heads) as f64).powf(-0.5))
    }

    /// Tokens before the patch tokens (the class token, if any).
    pub fn num_prefix_tokens(&self) -> usize {
        usize::from(self.class_token)
    }

    /// Checks that the numbers fit together.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] naming the offending values.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("num_channels", self.num_channels),
            ("hidden_size", self.hidden_size),
            ("depth", self.depth),
            ("num_heads", self.num_heads),
            ("mlp_hidden", self.mlp_hidden),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ModelError::InvalidConfig(format!(
                "{name} must be positive, found 0"
            )));
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(ModelError::InvalidConfig(format!(
                "hidden_size {} is not divisible by num_heads {}",
                self.hidden_size, self.num_heads
            )));
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(ModelError::InvalidConfig(format!(
                "image_size {} is not divisible by patch_size {}",
                self.image_size, self.patch_size
            )));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(ModelError::InvalidConfig(format!(
                "layer_norm_eps must be a positive number, found {}",
                self.layer_norm_eps
            )));
        }
        gs_lora_core::check_dropout("dropout", self.dropout)?;
        if self.num_classes == Some(0) {
            return Err(ModelError::InvalidConfig(
                "num_classes must be positive (or absent for a backbone), found 0".into(),
            ));
        }
        // Each parameter lives twice while loading (the module and the tensor read into it).
        let parameters = self.parameter_count();
        gs_lora_core::Limits::from_env()?.check_memory(
            || {
                format!(
                    "a ViT with hidden_size {}, depth {}, mlp {}, image_size {} and patch_size {} \
                     ({parameters} parameters)",
                    self.hidden_size, self.depth, self.mlp_hidden, self.image_size, self.patch_size
                )
            },
            parameters.saturating_mul(8),
        )?;
        Ok(())
    }

    /// Number of parameters the config describes (adapters excluded), computed without
    /// overflow so that absurd configs can be refused before anything is allocated.
    pub fn parameter_count(&self) -> u128 {
        let [d, mlp, depth, patch, channels, grid] = [
            self.hidden_size,
            self.mlp_hidden,
            self.depth,
            self.patch_size,
            self.num_channels,
            self.grid_size(),
        ]
        .map(|v| v as u128);
        let linear = |d_in: u128, d_out: u128| d_in.saturating_mul(d_out).saturating_add(d_out);
        let block = [
            4 * d,            // two LayerNorms
            linear(d, 3 * d), // qkv
            linear(d, d),     // proj
            linear(d, mlp),   // fc1
            linear(mlp, d),   // fc2
            2 * d,            // layer scales
        ]
        .iter()
        .fold(0u128, |sum, p| sum.saturating_add(*p));
        let embed = linear(channels.saturating_mul(patch).saturating_mul(patch), d)
            .saturating_add(
                grid.saturating_mul(grid)
                    .saturating_add(1)
                    .saturating_mul(d),
            )
            .saturating_add(d);
        let head = self.num_classes.map_or(0, |classes| {
            linear(d, classes as u128).saturating_add(linear(d, d))
        });
        embed
            .saturating_add(block.saturating_mul(depth))
            .saturating_add(4 * d)
            .saturating_add(head)
    }

    /// Bytes one forward pass without gradients needs at its peak for `batch` images of
    /// `height × width` (an estimate: the input, one block's activations and the attention
    /// scores of every head, in `f32`). Training keeps every block's activations, about
    /// `depth` times more.
    pub fn forward_bytes(&self, batch: usize, height: usize, width: usize) -> u128 {
        let [batch, height, width, channels, d, mlp, heads] = [
            batch,
            height,
            width,
            self.num_channels,
            self.hidden_size,
            self.mlp_hidden,
            self.num_heads,
        ]
        .map(|v| v as u128);
        let patch = self.patch_size.max(1) as u128;
        let tokens = (height / patch)
            .saturating_mul(width / patch)
            .saturating_add(self.num_prefix_tokens() as u128);
        let per_image = channels
            .saturating_mul(height)
            .saturating_mul(width)
            .saturating_add(tokens.saturating_mul(4 * d + 2 * mlp))
            .saturating_add(
                2u128
                    .saturating_mul(heads)
                    .saturating_mul(tokens.saturating_mul(tokens)),
            );
        per_image.saturating_mul(batch).saturating_mul(4)
    }

    /// Reads a Hugging Face (`model_type` `vit` or `dinov2`), timm (`architecture`), GS-LoRA
    /// face (`model_type` `vit_face`), torchvision (`model_type` `torchvision_vit`) or gs-lora
    /// (`format`, as `save_pretrained` writes) `config.json`.
    ///
    /// # Errors
    /// [`ModelError::Io`] or [`ModelError::Config`] naming the file and what is wrong.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        read_config_file(path.as_ref(), Self::from_json)
    }

    /// As [`from_file`](Self::from_file), from the JSON text.
    ///
    /// # Errors
    /// [`ModelError::Config`] saying what is wrong.
    pub fn from_json(text: &str) -> Result<Self> {
        let json: Value =
            serde_json::from_str(text).map_err(|err| config_error(err.to_string()))?;
        let config = if json.get("format").is_some() {
            // Written by `VisionTransformer::save_pretrained`.
            serde_json::from_value(json).map_err(|err| config_error(err.to_string()))?
        } else if json.get("architecture").is_some() {
            super::timm::config_from_json(&json)?
        } else {
            match json.get("model_type").and_then(Value::as_str) {
                Some("vit") => super::hf::vit_config_from_json(&json)?,
                Some("dinov2") => super::hf::dinov2_config_from_json(&json)?,
                Some("vit_face") => super::face::config_from_json(&json)?,
                Some("torchvision_vit") => super::torchvision::config_from_json(&json)?,
                Some(other) => {
                    return Err(config_error(format!(
                        "model_type `{other}` is not a supported Vision Transformer (vit, dinov2, \
                         vit_face, torchvision_vit)"
                    )));
                }
                None => {
                    return Err(config_error(
                        "neither a Hugging Face config (`model_type`) nor a timm config (`architecture`)"
                            .into(),
                    ));
                }
            }
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dinov2_small() -> VitConfig {
        VitConfig::from_json(
            r#"{"model_type": "dinov2", "hidden_size": 384, "num_hidden_layers": 12,
                "num_attention_heads": 6, "patch_size": 14, "image_size": 518}"#,
        )
        .expect("DINOv2-S")
    }

    /// Issue 14: `hidden_size` 6·10⁸ asked for 1.5 TB before any check; a size past 2³¹ is
    /// refused as it is read, one below it by the memory estimate.
    #[test]
    fn absurd_configs_are_refused_before_allocating() {
        let huge = r#"{"model_type": "vit", "hidden_size": 600000000, "num_attention_heads": 1}"#;
        let err = VitConfig::from_json(huge).expect_err("1.5 TB");
        assert!(err.to_string().contains("GS_LORA_MAX_MEMORY"), "{err}");
        let past = r#"{"model_type": "vit", "hidden_size": 18446744073709551615}"#;
        let err = VitConfig::from_json(past).expect_err("not a size");
        assert!(err.to_string().contains("hidden_size"), "{err}");
        assert!(dinov2_small().parameter_count() < 30_000_000);
    }

    /// Issue 14: a 2800×2800 input to DINOv2-S asked for 38 GB; the estimate sees it (the
    /// attention scores alone are 6 heads × 40001² floats) while 224×224 batches stay small.
    #[test]
    fn the_forward_estimate_sees_a_huge_input() {
        let config = dinov2_small();
        let huge = config.forward_bytes(1, 2800, 2800);
        assert!(huge > 38 << 30, "{huge}");
        let usual = config.forward_bytes(64, 224, 224);
        assert!(usual < 1 << 30, "{usual}");
    }
}
