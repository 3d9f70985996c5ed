//! The paper's face Transformer (`ViT_face` of the official GS-LoRA code): config and key names.
//!
//! GS-LoRA's checkpoints are PyTorch state dicts without a `config.json`; we read one written as
//! its constructor arguments:
//!
//! ```json
//! {"model_type": "vit_face", "image_size": 112, "patch_size": 8, "dim": 512, "depth": 6,
//!  "heads": 8, "mlp_dim": 2048, "num_class": 100, "loss_type": "CosFace", "s": 64.0, "m": 0.35,
//!  "dropout": 0.1, "emb_dropout": 0.1}
//! ```
//!
//! Its differences from a timm ViT: patches are flattened in `(p1, p2, c)` order into a Linear,
//! qkv has no bias, attention logits are scaled by `dim^-1/2` (the width, not the head width),
//! LayerNorm eps is 1e-5, the embedding is `LayerNorm(cls)` and the head is CosFace.

use serde_json::Value;

use super::{GlobalPool, HeadKind, PosResample, VitConfig, VitFormat};
use crate::config_file::{config_error, get_f64, get_usize};
use crate::error::Result;
use crate::weights::KeyMap;

/// A `model_type: vit_face` config.
pub(crate) fn config_from_json(json: &Value) -> Result<VitConfig> {
    let dim = get_usize(json, "dim")?.unwrap_or(512);
    let heads = get_usize(json, "heads")?.unwrap_or(8);
    let dim_head = get_usize(json, "dim_head")?.unwrap_or(64);
    if dim_head * heads != dim {
        return Err(config_error(format!(
            "heads {heads} × dim_head {dim_head} must equal dim {dim} (inner_dim ≠ dim is not supported)"
        )));
    }
    let head = match json
        .get("loss_type")
        .and_then(Value::as_str)
        .unwrap_or("CosFace")
    {
        "CosFace" => HeadKind::CosFace {
            scale: get_f64(json, "s")?.unwrap_or(64.0),
            margin: get_f64(json, "m")?.unwrap_or(0.35),
        },
        other => {
            return Err(config_error(format!(
                "loss_type `{other}` is not supported (CosFace)"
            )));
        }
    };
    if json.get("pool").and_then(Value::as_str).unwrap_or("cls") != "cls" {
        return Err(config_error("only pool `cls` is supported".into()));
    }
    // `ViT_face(dropout=0.1, emb_dropout=0.1)`, as the official scripts build it.
    let dropout = get_f64(json, "dropout")?.unwrap_or(0.1);
    let embedding_dropout = get_f64(json, "emb_dropout")?.unwrap_or(dropout);
    if embedding_dropout != dropout {
        return Err(config_error(format!(
            "emb_dropout {embedding_dropout} differs from dropout {dropout}; one rate is supported"
        )));
    }
    Ok(VitConfig {
        format: VitFormat::GsLoraFace,
        image_size: get_usize(json, "image_size")?.unwrap_or(112),
        patch_size: get_usize(json, "patch_size")?.unwrap_or(8),
        num_channels: get_usize(json, "channels")?.unwrap_or(3),
        hidden_size: dim,
        depth: get_usize(json, "depth")?.unwrap_or(6),
        num_heads: heads,
        mlp_hidden: get_usize(json, "mlp_dim")?.unwrap_or(2048),
        qkv_bias: false,
        layer_norm_eps: 1e-5,
        class_token: true,
        global_pool: GlobalPool::Token,
        layer_scale: false,
        num_classes: Some(get_usize(json, "num_class")?.unwrap_or(100)),
        pos_resample: PosResample::Bicubic,
        attention_scale: Some((dim as f64).powf(-0.5)),
        head,
        dropout,
    })
}

/// `ViT_face` state-dict names for the canonical names.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaceKeys;

impl KeyMap for FaceKeys {
    fn file_keys(&self, key: &str) -> Vec<String> {
        if let Some(rest) = key.strip_prefix("blocks.") {
            let (index, rest) = rest.split_once('.').unwrap_or((rest, ""));
            let layer = format!("transformer.layers.{index}");
            let (name, param) = rest.rsplit_once('.').unwrap_or((rest, ""));
            let mapped = match name {
                "norm1" => format!("{layer}.0.fn.norm"),
                "attn.qkv" => format!("{layer}.0.fn.fn.to_qkv"),
                "attn.proj" => format!("{layer}.0.fn.fn.to_out.0"),
                "norm2" => format!("{layer}.1.fn.norm"),
                "mlp.fc1" => format!("{layer}.1.fn.fn.net.0"),
                "mlp.fc2" => format!("{layer}.1.fn.fn.net.3"),
                _ => return vec![key.to_string()],
            };
            return vec![format!("{mapped}.{param}")];
        }
        let mapped = match key {
            "cls_token" => "cls_token",
            "pos_embed" => "pos_embedding",
            "patch_embed.linear.weight" => "patch_to_embedding.weight",
            "patch_embed.linear.bias" => "patch_to_embedding.bias",
            "norm.weight" => "mlp_head.0.weight",
            "norm.bias" => "mlp_head.0.bias",
            "head.weight" => "loss.weight",
            other => other,
        };
        vec![mapped.to_string()]
    }

    /// GS-LoRA saves forgetting checkpoints from an `eval()` model, whose `lora_A`/`lora_B` are
    /// already merged into the weights; reading them again would apply them twice.
    fn is_ignored(&self, file_key: &str) -> bool {
        file_key.ends_with(".lora_A") || file_key.ends_with(".lora_B")
    }
}
