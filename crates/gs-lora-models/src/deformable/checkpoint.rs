//! Reading Hugging Face Deformable DETR checkpoints: `config.json` and the tensor names of both
//! transformers generations.

use std::collections::BTreeSet;
use std::path::Path;

use burn::tensor::Device;
use gs_lora_core::LoraConfig;
use serde_json::Value;

use super::model::{DeformableDetr, DeformableDetrConfig};
use crate::config_file::{config_error, get_usize, plausible_size, read_config_file};
use crate::error::{ModelError, Result};
use crate::resnet::ResNetConfig;
use crate::weights::{IdentityKeys, KeyMap, SafetensorsSource};

impl DeformableDetrConfig {
    /// Reads a Hugging Face `config.json` (`model_type` `deformable_detr`): sizes default to the
    /// reference's (d 256, 6 + 6 layers, 8 heads, FFN 1024, 300 queries, 4 levels, 4 points),
    /// classes from `id2label` (or `num_labels`), the backbone from `backbone_config.backbone`
    /// or `backbone` (`resnet50`, `resnet101`), with timm's `channels` / `layers` arguments
    /// where the backbone config has them.
    ///
    /// # Errors
    /// [`ModelError::Config`] for another model type, two-stage or box-refining models, an
    /// unsupported backbone, or a field of the wrong type.
    pub fn from_json(text: &str) -> Result<Self> {
        let json: Value =
            serde_json::from_str(text).map_err(|err| config_error(err.to_string()))?;
        match json.get("model_type").and_then(Value::as_str) {
            Some("deformable_detr") => {}
            other => {
                return Err(config_error(format!(
                    "model_type {other:?} is not `deformable_detr`"
                )));
            }
        }
        let flag = |name: &str| json.get(name).and_then(Value::as_bool) == Some(true);
        if flag("two_stage") && !flag("with_box_refine") {
            return Err(config_error(
                "`two_stage` needs `with_box_refine` (the proposals use the refining box heads)"
                    .into(),
            ));
        }
        let size = |key: &str, default: usize| {
            Ok::<_, ModelError>(get_usize(&json, key)?.unwrap_or(default))
        };
        let num_labels = match json.get("id2label").and_then(Value::as_object) {
            Some(labels) => labels.len(),
            None => size("num_labels", 91)?,
        };
        Ok(Self {
            d_model: size("d_model", 256)?,
            encoder_layers: size("encoder_layers", 6)?,
            decoder_layers: size("decoder_layers", 6)?,
            encoder_heads: size("encoder_attention_heads", 8)?,
            decoder_heads: size("decoder_attention_heads", 8)?,
            encoder_ffn_dim: size("encoder_ffn_dim", 1024)?,
            decoder_ffn_dim: size("decoder_ffn_dim", 1024)?,
            num_queries: size("num_queries", 300)?,
            num_feature_levels: size("num_feature_levels", 4)?,
            encoder_points: size("encoder_n_points", 4)?,
            decoder_points: size("decoder_n_points", 4)?,
            num_labels,
            with_box_refine: flag("with_box_refine"),
            two_stage: flag("two_stage"),
            two_stage_num_proposals: size("two_stage_num_proposals", 300)?,
            backbone: backbone_from_json(&json)?,
        })
    }

    /// As [`from_json`](Self::from_json), from a file.
    ///
    /// # Errors
    /// [`ModelError::Io`], or [`ModelError::Config`] naming the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        read_config_file(path.as_ref(), Self::from_json)
    }
}

fn backbone_from_json(json: &Value) -> Result<ResNetConfig> {
    let nested = json.get("backbone_config").filter(|v| v.is_object());
    let name = nested
        .and_then(|b| b.get("backbone"))
        .or_else(|| json.get("backbone"))
        .and_then(Value::as_str)
        .unwrap_or("resnet50");
    let mut config = match name {
        "resnet50" => ResNetConfig::resnet50(),
        "resnet101" => ResNetConfig {
            depths: vec![3, 4, 23, 3],
            ..ResNetConfig::resnet50()
        },
        other => {
            return Err(config_error(format!(
                "backbone `{other}` is not supported (resnet50, resnet101)"
            )));
        }
    };
    // timm's own size arguments, where a backbone config carries them.
    let list = |key: &str| -> Result<Option<Vec<usize>>> {
        match nested.and_then(|b| b.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| plausible_size(&format!("backbone_config.{key}"), v))
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(_) => Err(config_error(format!(
                "backbone_config.{key} must be a list"
            ))),
        }
    };
    if let Some(widths) = list("channels")? {
        config.widths = widths;
    }
    if let Some(depths) = list("layers")? {
        config.depths = depths;
    }
    Ok(config)
}

/// Tensor names of Deformable DETR checkpoints. The model asks for transformers-5 backbone
/// names (`model.backbone.model.*`) and the released checkpoints' layer names (`fc1`,
/// `self_attn.out_proj`); older files call the backbone `model.backbone.conv_encoder.model.*`,
/// transformers 5 calls the others `mlp.fc1` and `o_proj`. The spelling is read off the file's
/// names. `class_embed.N` are copies of one head (or, with box refinement, per-level heads of
/// which only the last scores the output): the model reads the last, the others may stay
/// unread; so may `bbox_embed.N` except with box refinement, which uses every level's. A
/// two-stage model also reads the proposal heads `class_embed.L` / `bbox_embed.L` after the
/// `L` decoder levels.
#[derive(Debug, Clone)]
pub struct DetrKeys {
    legacy_backbone: bool,
    mlp_ffn: bool,
    o_proj: bool,
    head: usize,
    box_refine: bool,
    two_stage: bool,
}

impl DetrKeys {
    /// The key map for a file holding `names`, for a model of architecture `config`.
    pub fn new(names: &BTreeSet<String>, config: &DeformableDetrConfig) -> Self {
        let any = |needle: &str| names.iter().any(|n| n.contains(needle));
        Self {
            legacy_backbone: any("model.backbone.conv_encoder.model."),
            mlp_ffn: any(".mlp.fc1."),
            o_proj: any(".self_attn.o_proj."),
            head: config.decoder_layers.saturating_sub(1),
            box_refine: config.with_box_refine,
            two_stage: config.two_stage,
        }
    }
}

impl KeyMap for DetrKeys {
    fn file_keys(&self, key: &str) -> Vec<String> {
        let mut name = key.to_string();
        if self.legacy_backbone {
            name = name.replace(
                "model.backbone.model.",
                "model.backbone.conv_encoder.model.",
            );
        }
        if self.mlp_ffn {
            name = name
                .replace(".fc1.", ".mlp.fc1.")
                .replace(".fc2.", ".mlp.fc2.");
        }
        if self.o_proj {
            name = name.replace(".self_attn.out_proj.", ".self_attn.o_proj.");
        }
        vec![name]
    }

    fn is_ignored(&self, file_key: &str) -> bool {
        let unread_heads: &[&str] = if self.box_refine {
            &["class_embed."]
        } else {
            &["class_embed.", "bbox_embed."]
        };
        let copy_of_head = unread_heads.iter().any(|prefix| {
            file_key
                .strip_prefix(prefix)
                .and_then(|rest| rest.split('.').next())
                .and_then(|index| index.parse::<usize>().ok())
                .is_some_and(|index| {
                    index != self.head && !(self.two_stage && index == self.head + 1)
                })
        });
        // With box refinement (and two stages) the decoder holds the same heads under its own
        // name.
        let decoder_alias = ["model.decoder.bbox_embed.", "model.decoder.class_embed."]
            .iter()
            .any(|alias| file_key.starts_with(alias));
        copy_of_head || decoder_alias || file_key.ends_with("num_batches_tracked")
    }
}

impl DeformableDetr {
    /// Loads a checkpoint as users have it: `config.json` and `model.safetensors`, with fresh
    /// LoRA adapters drawn from `seed`.
    ///
    /// # Errors
    /// An unreadable or unsupported config, or weights that do not match it (a missing,
    /// unexpected or mis-shaped tensor names the key and both shapes).
    pub fn from_pretrained(
        config_path: impl AsRef<Path>,
        weights_path: impl AsRef<Path>,
        lora: &LoraConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let config = DeformableDetrConfig::from_file(config_path)?;
        let file = SafetensorsSource::open(weights_path, IdentityKeys)?;
        let keys = DetrKeys::new(file.names(), &config);
        let mut source = file.with_keys(keys);
        let model = Self::load(&config, &mut source, lora, seed, device)?;
        source.finish()?;
        Ok(model)
    }
}
