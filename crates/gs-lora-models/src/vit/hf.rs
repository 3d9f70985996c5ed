//! Hugging Face `ViTModel`/`ViTForImageClassification` and `Dinov2Model`: config and key names.

use serde_json::Value;

use super::{GlobalPool, HeadKind, PosResample, VitConfig, VitFormat};
use crate::config_file::{config_error, get_bool, get_f64, get_usize};
use crate::error::Result;
use crate::weights::KeyMap;

fn require_gelu(json: &Value) -> Result<()> {
    match json.get("hidden_act").and_then(Value::as_str) {
        None | Some("gelu") => Ok(()),
        Some(other) => Err(config_error(format!(
            "hidden_act `{other}` is not supported; these models use the exact `gelu`"
        ))),
    }
}

fn common(
    json: &Value,
    format: VitFormat,
    default_eps: f64,
    default_patch: usize,
) -> Result<VitConfig> {
    require_gelu(json)?;
    let hidden_size = get_usize(json, "hidden_size")?.unwrap_or(768);
    Ok(VitConfig {
        format,
        image_size: get_usize(json, "image_size")?.unwrap_or(224),
        patch_size: get_usize(json, "patch_size")?.unwrap_or(default_patch),
        num_channels: get_usize(json, "num_channels")?.unwrap_or(3),
        hidden_size,
        depth: get_usize(json, "num_hidden_layers")?.unwrap_or(12),
        num_heads: get_usize(json, "num_attention_heads")?.unwrap_or(12),
        mlp_hidden: get_usize(json, "intermediate_size")?.unwrap_or(4 * hidden_size),
        qkv_bias: get_bool(json, "qkv_bias")?.unwrap_or(true),
        layer_norm_eps: get_f64(json, "layer_norm_eps")?.unwrap_or(default_eps),
        class_token: true,
        global_pool: GlobalPool::Token,
        layer_scale: false,
        num_classes: None,
        pos_resample: PosResample::Bicubic,
        attention_scale: None,
        head: HeadKind::Linear,
        dropout: 0.0,
    })
}

fn is_classifier(json: &Value, architecture: &str) -> bool {
    json.get("architectures")
        .and_then(Value::as_array)
        .is_some_and(|names| names.iter().any(|name| name.as_str() == Some(architecture)))
}

/// A `model_type: vit` config.
pub(crate) fn vit_config_from_json(json: &Value) -> Result<VitConfig> {
    let mut config = common(json, VitFormat::HfVit, 1e-12, 16)?;
    if is_classifier(json, "ViTForImageClassification") {
        let labels = json
            .get("id2label")
            .and_then(Value::as_object)
            .map(|labels| labels.len())
            .or(get_usize(json, "num_labels")?)
            .ok_or_else(|| {
                config_error("a ViTForImageClassification config needs `id2label`".into())
            })?;
        config.num_classes = Some(labels);
    }
    Ok(config)
}

/// A `model_type: dinov2` config.
pub(crate) fn dinov2_config_from_json(json: &Value) -> Result<VitConfig> {
    if get_bool(json, "use_swiglu_ffn")?.unwrap_or(false) {
        return Err(config_error(
            "use_swiglu_ffn is not supported (DINOv2-g); the FFN must be fc1-GELU-fc2".into(),
        ));
    }
    if is_classifier(json, "Dinov2ForImageClassification") {
        return Err(config_error(
            "Dinov2ForImageClassification is not supported; load the Dinov2Model backbone and attach a head".into(),
        ));
    }
    let mut config = common(json, VitFormat::HfDinov2, 1e-6, 14)?;
    if json.get("intermediate_size").is_none() {
        let ratio = get_f64(json, "mlp_ratio")?.unwrap_or(4.0);
        config.mlp_hidden = (config.hidden_size as f64 * ratio) as usize;
    }
    config.layer_scale = true;
    Ok(config)
}

/// Hugging Face key names for the canonical (timm) names.
#[derive(Debug, Clone)]
pub struct HfKeys {
    format: VitFormat,
    /// `vit.` for `ViTForImageClassification`, empty otherwise.
    prefix: &'static str,
}

impl HfKeys {
    /// The key map for `config`.
    pub fn new(config: &VitConfig) -> Self {
        let prefix = if config.format == VitFormat::HfVit && config.num_classes.is_some() {
            "vit."
        } else {
            ""
        };
        Self {
            format: config.format,
            prefix,
        }
    }

    fn block_key(&self, rest: &str) -> Option<String> {
        let dinov2 = self.format == VitFormat::HfDinov2;
        let (name, param) = rest.rsplit_once('.')?;
        let mapped = match name {
            "norm1" if dinov2 => "norm1",
            "norm1" => "layernorm_before",
            "norm2" if dinov2 => "norm2",
            "norm2" => "layernorm_after",
            "attn.proj" => "attention.output.dense",
            "mlp.fc1" if dinov2 => "mlp.fc1",
            "mlp.fc1" => "intermediate.dense",
            "mlp.fc2" if dinov2 => "mlp.fc2",
            "mlp.fc2" => "output.dense",
            "ls1" => return Some("layer_scale1.lambda1".into()),
            "ls2" => return Some("layer_scale2.lambda1".into()),
            _ => return None,
        };
        Some(format!("{mapped}.{param}"))
    }
}

impl KeyMap for HfKeys {
    fn file_keys(&self, key: &str) -> Vec<String> {
        let p = self.prefix;
        let single = |name: String| vec![format!("{p}{name}")];
        if let Some(rest) = key.strip_prefix("blocks.") {
            let (index, rest) = rest.split_once('.').unwrap_or((rest, ""));
            let layer = format!("encoder.layer.{index}");
            if let Some(param) = rest.strip_prefix("attn.qkv.") {
                return ["query", "key", "value"]
                    .iter()
                    .map(|part| format!("{p}{layer}.attention.attention.{part}.{param}"))
                    .collect();
            }
            return match self.block_key(rest) {
                Some(mapped) => single(format!("{layer}.{mapped}")),
                None => single(key.to_string()),
            };
        }
        match key {
            "cls_token" => single("embeddings.cls_token".into()),
            "pos_embed" => single("embeddings.position_embeddings".into()),
            "patch_embed.proj.weight" => {
                single("embeddings.patch_embeddings.projection.weight".into())
            }
            "patch_embed.proj.bias" => single("embeddings.patch_embeddings.projection.bias".into()),
            "norm.weight" => single("layernorm.weight".into()),
            "norm.bias" => single("layernorm.bias".into()),
            "head.weight" => vec!["classifier.weight".into()],
            "head.bias" => vec!["classifier.bias".into()],
            "pooler.weight" => single("pooler.dense.weight".into()),
            "pooler.bias" => single("pooler.dense.bias".into()),
            other => single(other.to_string()),
        }
    }

    fn is_ignored(&self, file_key: &str) -> bool {
        file_key.ends_with("embeddings.mask_token")
    }
}
