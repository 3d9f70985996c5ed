//! torchvision's `VisionTransformer` (`vit_b_16`, …; the official GS-LoRA ImageNet model):
//! config and key names.
//!
//! torchvision checkpoints (`vit_b_16-c867db91.pth`) are state dicts without a config; we read
//! one written as the constructor's arguments, or a builder's name:
//!
//! ```json
//! {"model_type": "torchvision_vit", "image_size": 224, "patch_size": 16, "num_layers": 12,
//!  "num_heads": 12, "hidden_dim": 768, "mlp_dim": 3072, "num_classes": 1000}
//! {"model_type": "torchvision_vit", "arch": "vit_b_16"}
//! ```
//!
//! The network is a pre-LN ViT with a class token, the fused `in_proj` of
//! `nn.MultiheadAttention` (timm's `qkv` layout), exact GELU, LayerNorm eps 1e-6 and the head
//! on the final LayerNorm's class token: timm's canonical model under other names.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{GlobalPool, HeadKind, PosResample, VitConfig, VitFormat};
use crate::config_file::{config_error, get_f64, get_usize};
use crate::error::Result;
use crate::weights::KeyMap;

/// `(name, patch, layers, heads, hidden, mlp)` of torchvision's builders.
const ARCHS: [(&str, usize, usize, usize, usize, usize); 5] = [
    ("vit_b_16", 16, 12, 12, 768, 3072),
    ("vit_b_32", 32, 12, 12, 768, 3072),
    ("vit_l_16", 16, 24, 16, 1024, 4096),
    ("vit_l_32", 32, 24, 16, 1024, 4096),
    ("vit_h_14", 14, 32, 16, 1280, 5120),
];

/// A `model_type: torchvision_vit` config: the constructor's arguments, each defaulting to
/// the builder `arch` names (`vit_b_16` when absent).
pub(crate) fn config_from_json(json: &Value) -> Result<VitConfig> {
    let arch = match json.get("arch") {
        None => "vit_b_16",
        Some(value) => value
            .as_str()
            .ok_or_else(|| config_error(format!("`arch` must be a string, found {value}")))?,
    };
    let &(_, patch, layers, heads, hidden, mlp) = ARCHS
        .iter()
        .find(|(name, ..)| *name == arch)
        .ok_or_else(|| {
            let names: Vec<&str> = ARCHS.iter().map(|a| a.0).collect();
            config_error(format!(
                "unknown torchvision arch `{arch}`; supported: {}",
                names.join(", ")
            ))
        })?;
    if let Some(rate) = get_f64(json, "attention_dropout")?.filter(|rate| *rate != 0.0) {
        return Err(config_error(format!(
            "attention_dropout {rate} is not supported (0 in torchvision's builders)"
        )));
    }
    let dropout = get_f64(json, "dropout")?.unwrap_or(0.0);
    Ok(VitConfig {
        format: VitFormat::Torchvision,
        image_size: get_usize(json, "image_size")?.unwrap_or(224),
        patch_size: get_usize(json, "patch_size")?.unwrap_or(patch),
        num_channels: 3,
        hidden_size: get_usize(json, "hidden_dim")?.unwrap_or(hidden),
        depth: get_usize(json, "num_layers")?.unwrap_or(layers),
        num_heads: get_usize(json, "num_heads")?.unwrap_or(heads),
        mlp_hidden: get_usize(json, "mlp_dim")?.unwrap_or(mlp),
        qkv_bias: true,
        layer_norm_eps: 1e-6,
        class_token: true,
        global_pool: GlobalPool::Token,
        layer_scale: false,
        num_classes: Some(get_usize(json, "num_classes")?.unwrap_or(1000)),
        pos_resample: PosResample::Bicubic,
        attention_scale: None,
        head: HeadKind::Linear,
        dropout,
    })
}

/// torchvision state-dict names for the canonical names. The MLP's Linears are `mlp.0` and
/// `mlp.3` (torchvision ≥ 0.13) or `mlp.linear_1` and `mlp.linear_2` (earlier checkpoints,
/// which torchvision itself still loads).
#[derive(Debug, Clone, Copy)]
pub struct TorchvisionKeys {
    /// The names of the MLP's two Linears.
    mlp: [&'static str; 2],
}

impl Default for TorchvisionKeys {
    fn default() -> Self {
        Self {
            mlp: ["mlp.0", "mlp.3"],
        }
    }
}

impl TorchvisionKeys {
    /// The names the checkpoint holding `names` uses.
    pub fn for_names(names: &BTreeSet<String>) -> Self {
        let legacy = names
            .iter()
            .any(|name| name.ends_with(".mlp.linear_1.weight"));
        match legacy {
            true => Self {
                mlp: ["mlp.linear_1", "mlp.linear_2"],
            },
            false => Self::default(),
        }
    }
}

impl KeyMap for TorchvisionKeys {
    fn file_keys(&self, key: &str) -> Vec<String> {
        if let Some(rest) = key.strip_prefix("blocks.") {
            let (index, rest) = rest.split_once('.').unwrap_or((rest, ""));
            let layer = format!("encoder.layers.encoder_layer_{index}");
            let mapped = match rest {
                "attn.qkv.weight" => format!("{layer}.self_attention.in_proj_weight"),
                "attn.qkv.bias" => format!("{layer}.self_attention.in_proj_bias"),
                _ => {
                    let (name, param) = rest.rsplit_once('.').unwrap_or((rest, ""));
                    let name = match name {
                        "norm1" => "ln_1",
                        "attn.proj" => "self_attention.out_proj",
                        "norm2" => "ln_2",
                        "mlp.fc1" => self.mlp[0],
                        "mlp.fc2" => self.mlp[1],
                        _ => return vec![key.to_string()],
                    };
                    format!("{layer}.{name}.{param}")
                }
            };
            return vec![mapped];
        }
        let mapped = match key {
            "cls_token" => "class_token".to_string(),
            "pos_embed" => "encoder.pos_embedding".to_string(),
            other => match other.split_once('.') {
                Some(("patch_embed", param)) => {
                    format!("conv_proj.{}", param.trim_start_matches("proj."))
                }
                Some(("norm", param)) => format!("encoder.ln.{param}"),
                Some(("head", param)) => format!("heads.head.{param}"),
                _ => other.to_string(),
            },
        };
        vec![mapped]
    }

    fn is_ignored(&self, _file_key: &str) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Catches a canonical name mapped to the wrong torchvision tensor, and the legacy MLP
    /// names not recognised.
    #[test]
    fn canonical_names_map_to_torchvision_names() {
        let keys = TorchvisionKeys::default();
        let cases = [
            ("cls_token", "class_token"),
            ("pos_embed", "encoder.pos_embedding"),
            ("patch_embed.proj.weight", "conv_proj.weight"),
            ("norm.bias", "encoder.ln.bias"),
            ("head.weight", "heads.head.weight"),
            (
                "blocks.3.norm1.weight",
                "encoder.layers.encoder_layer_3.ln_1.weight",
            ),
            (
                "blocks.3.attn.qkv.weight",
                "encoder.layers.encoder_layer_3.self_attention.in_proj_weight",
            ),
            (
                "blocks.3.attn.qkv.bias",
                "encoder.layers.encoder_layer_3.self_attention.in_proj_bias",
            ),
            (
                "blocks.0.attn.proj.bias",
                "encoder.layers.encoder_layer_0.self_attention.out_proj.bias",
            ),
            (
                "blocks.11.norm2.bias",
                "encoder.layers.encoder_layer_11.ln_2.bias",
            ),
            (
                "blocks.2.mlp.fc1.weight",
                "encoder.layers.encoder_layer_2.mlp.0.weight",
            ),
            (
                "blocks.2.mlp.fc2.bias",
                "encoder.layers.encoder_layer_2.mlp.3.bias",
            ),
        ];
        for (canonical, file) in cases {
            assert_eq!(
                keys.file_keys(canonical),
                vec![file.to_string()],
                "{canonical}"
            );
        }
        let names: BTreeSet<String> =
            ["encoder.layers.encoder_layer_0.mlp.linear_1.weight".to_string()].into();
        let legacy = TorchvisionKeys::for_names(&names);
        assert_eq!(
            legacy.file_keys("blocks.0.mlp.fc2.weight"),
            vec!["encoder.layers.encoder_layer_0.mlp.linear_2.weight".to_string()]
        );
    }

    /// `arch` fills in the builder's sizes; explicit arguments win; an unknown name is an error
    /// listing the known ones.
    #[test]
    fn configs_follow_the_builders() {
        let b16 = config_from_json(&serde_json::json!({"arch": "vit_b_16"})).expect("b16");
        assert_eq!(
            (
                b16.patch_size,
                b16.depth,
                b16.num_heads,
                b16.hidden_size,
                b16.mlp_hidden
            ),
            (16, 12, 12, 768, 3072)
        );
        assert_eq!((b16.image_size, b16.num_classes), (224, Some(1000)));
        let tiny = config_from_json(&serde_json::json!({
            "arch": "vit_l_32", "num_layers": 2, "hidden_dim": 48, "num_classes": 5
        }))
        .expect("tiny");
        assert_eq!((tiny.patch_size, tiny.depth, tiny.hidden_size), (32, 2, 48));
        assert_eq!(tiny.num_classes, Some(5));
        let err = config_from_json(&serde_json::json!({"arch": "vit_x_1"})).expect_err("unknown");
        assert!(err.to_string().contains("vit_b_16, vit_b_32"), "{err}");
    }
}
