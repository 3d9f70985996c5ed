//! timm `VisionTransformer`: config (`architecture` preset plus `model_args`).

use serde_json::Value;

use super::{GlobalPool, HeadKind, PosResample, VitConfig, VitFormat};
use crate::config_file::{config_error, get_bool, get_f64, get_usize};
use crate::error::Result;

/// `(embed_dim, depth, num_heads)` of timm's size names.
const SIZES: [(&str, usize, usize, usize); 4] = [
    ("tiny", 192, 12, 3),
    ("small", 384, 12, 6),
    ("base", 768, 12, 12),
    ("large", 1024, 24, 16),
];

/// Parses `vit_{size}_patch{P}_{image}` (optionally with a `.tag`).
fn preset(name: &str) -> Option<(usize, usize, usize, usize, usize)> {
    let name = name.split('.').next()?;
    let mut parts = name.strip_prefix("vit_")?.split('_');
    let size = parts.next()?;
    let patch = parts.next()?.strip_prefix("patch")?.parse().ok()?;
    let image = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    let &(_, dim, depth, heads) = SIZES.iter().find(|(n, ..)| *n == size)?;
    Some((dim, depth, heads, patch, image))
}

/// A timm hub `config.json`.
pub(crate) fn config_from_json(json: &Value) -> Result<VitConfig> {
    let architecture = json
        .get("architecture")
        .and_then(Value::as_str)
        .ok_or_else(|| config_error("`architecture` must be a string".into()))?;
    let (dim, depth, heads, patch, image) = preset(architecture).ok_or_else(|| {
        config_error(format!(
            "unknown timm architecture `{architecture}`; supported: vit_{{tiny,small,base,large}}_patch{{P}}_{{size}}"
        ))
    })?;
    let empty = Value::Object(Default::default());
    let args = json.get("model_args").unwrap_or(&empty);
    let image_size = match args.get("img_size") {
        Some(Value::Array(sides)) => {
            let sides: Vec<u64> = sides.iter().filter_map(Value::as_u64).collect();
            match sides.as_slice() {
                [h, w] if h == w => *h as usize,
                _ => return Err(config_error(format!("img_size {sides:?} must be square"))),
            }
        }
        _ => get_usize(args, "img_size")?.unwrap_or(image),
    };
    let hidden_size = get_usize(args, "embed_dim")?.unwrap_or(dim);
    let mlp_ratio = get_f64(args, "mlp_ratio")?.unwrap_or(4.0);
    let pool = args
        .get("global_pool")
        .or_else(|| json.get("global_pool"))
        .and_then(Value::as_str)
        .unwrap_or("token");
    let global_pool = match pool {
        "token" => GlobalPool::Token,
        "avg" => GlobalPool::Avg,
        other => {
            return Err(config_error(format!(
                "global_pool `{other}` is not supported (token, avg)"
            )));
        }
    };
    for unsupported in ["no_embed_class", "pre_norm", "qk_norm", "dynamic_img_size"] {
        if get_bool(args, unsupported)?.unwrap_or(false) {
            return Err(config_error(format!(
                "model_args.{unsupported} is not supported"
            )));
        }
    }
    if get_usize(args, "reg_tokens")?.unwrap_or(0) > 0 {
        return Err(config_error(
            "model_args.reg_tokens is not supported".into(),
        ));
    }
    let num_classes = get_usize(args, "num_classes")?
        .or(get_usize(json, "num_classes")?)
        .unwrap_or(1000);
    Ok(VitConfig {
        format: VitFormat::Timm,
        image_size,
        patch_size: get_usize(args, "patch_size")?.unwrap_or(patch),
        num_channels: get_usize(args, "in_chans")?.unwrap_or(3),
        hidden_size,
        depth: get_usize(args, "depth")?.unwrap_or(depth),
        num_heads: get_usize(args, "num_heads")?.unwrap_or(heads),
        mlp_hidden: (hidden_size as f64 * mlp_ratio) as usize,
        qkv_bias: get_bool(args, "qkv_bias")?.unwrap_or(true),
        layer_norm_eps: 1e-6,
        class_token: get_bool(args, "class_token")?.unwrap_or(true),
        global_pool,
        layer_scale: get_f64(args, "init_values")?.is_some(),
        num_classes: (num_classes > 0).then_some(num_classes),
        pos_resample: PosResample::BicubicAntialias,
        attention_scale: None,
        head: HeadKind::Linear,
        dropout: 0.0,
    })
}
