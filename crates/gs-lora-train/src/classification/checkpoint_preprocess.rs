//! How a pretrained checkpoint reads its images, decided by its format: the official face ViT
//! reads raw `[0, 1]` pixels (ToTensor only, PROTOCOL §0.3), a Hugging Face checkpoint what its
//! `preprocessor_config.json` says, a timm checkpoint what its `pretrained_cfg` says, and
//! ImageNet's statistics with timm's 0.875 crop where a file says nothing.

use std::path::Path;

use gs_lora_models::vit::{VitConfig, VitFormat};
use serde_json::Value;

use crate::error::{Result, TrainError, io};
use crate::image::{Normalization, Preprocess};

/// The crop share where a checkpoint names none: timm's and torchvision's (resize 256, crop 224).
const DEFAULT_CROP_PCT: f64 = 0.875;

/// How the checkpoint whose config is `config_path` reads images: `image_size` (the config's
/// when `None`), the config's channels, and the normalisation and crop share of its format
/// (`crop_pct` overrides the crop share):
///
/// | format | normalisation | crop share |
/// |---|---|---|
/// | GS-LoRA face (`vit_face`) | none: `[0, 1]` pixels | 1 (the whole 112×112 image) |
/// | torchvision (`torchvision_vit`) | ImageNet | 0.875 (resize 256, crop 224) |
/// | Hugging Face (`preprocessor_config.json` beside the config) | `image_mean`/`image_std`, none when `do_normalize` is false | `crop_size / size.shortest_edge` with `do_center_crop`, else 1 |
/// | timm (`pretrained_cfg` in the config) | `mean`/`std` | `crop_pct` |
/// | any of them without that file or entry | ImageNet | 0.875 |
///
/// # Errors
/// An unreadable config or preprocessor config, or a malformed entry in one.
pub fn checkpoint_preprocess(
    config_path: &Path,
    image_size: Option<usize>,
    crop_pct: Option<f64>,
) -> Result<Preprocess> {
    let config = VitConfig::from_file(config_path)?;
    let (norm, default_crop) = match config.format {
        VitFormat::GsLoraFace => (Normalization::NONE, 1.0),
        VitFormat::Torchvision => (Normalization::IMAGENET, DEFAULT_CROP_PCT),
        VitFormat::HfVit | VitFormat::HfDinov2 => {
            let processor = config_path.with_file_name("preprocessor_config.json");
            if processor.is_file() {
                hf_processor(&processor)?
            } else {
                (Normalization::IMAGENET, DEFAULT_CROP_PCT)
            }
        }
        VitFormat::Timm => timm_pretrained_cfg(config_path)?,
    };
    let preprocess = Preprocess {
        image_size: image_size.unwrap_or(config.image_size),
        crop_pct: crop_pct.unwrap_or(default_crop),
        channels: config.num_channels,
        norm,
    };
    preprocess.validate()?;
    Ok(preprocess)
}

/// Reads the JSON object in `path`.
fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|err| TrainError::Format {
        path: path.to_path_buf(),
        message: err.to_string(),
    })
}

/// A malformed entry `key` of `path`.
fn malformed(path: &Path, key: &str, expected: &str, found: &Value) -> TrainError {
    TrainError::Format {
        path: path.to_path_buf(),
        message: format!("`{key}` must be {expected}, found {found}"),
    }
}

/// Three finite numbers at `key` of `object`, when present; the std's must be positive.
fn channels(path: &Path, object: &Value, key: &str, positive: bool) -> Result<Option<[f32; 3]>> {
    let Some(value) = object.get(key) else {
        return Ok(None);
    };
    let expected = if positive {
        "three positive numbers"
    } else {
        "three finite numbers"
    };
    let numbers: Option<Vec<f64>> = value
        .as_array()
        .map(|items| items.iter().map(Value::as_f64).collect())
        .unwrap_or(None);
    match numbers.as_deref() {
        Some(&[a, b, c])
            if [a, b, c]
                .iter()
                .all(|v| v.is_finite() && (!positive || *v > 0.0)) =>
        {
            Ok(Some([a as f32, b as f32, c as f32]))
        }
        _ => Err(malformed(path, key, expected, value)),
    }
}

/// The normalisation from `mean_key` and `std_key` of `object`, ImageNet's where absent.
fn normalization(path: &Path, object: &Value, keys: [&str; 2]) -> Result<Normalization> {
    let [mean_key, std_key] = keys;
    Ok(Normalization {
        mean: channels(path, object, mean_key, false)?.unwrap_or(Normalization::IMAGENET.mean),
        std: channels(path, object, std_key, true)?.unwrap_or(Normalization::IMAGENET.std),
    })
}

/// A side from a Hugging Face size entry: a number, or an object with `key`.
fn side(entry: Option<&Value>, key: &str) -> Option<f64> {
    let entry = entry?;
    entry
        .as_f64()
        .or_else(|| entry.get(key).and_then(Value::as_f64))
}

/// The normalisation and crop share of a Hugging Face image processor config.
fn hf_processor(path: &Path) -> Result<(Normalization, f64)> {
    let json = read_json(path)?;
    let flag = |key: &str, default: bool| match json.get(key) {
        None => Ok(default),
        Some(Value::Bool(value)) => Ok(*value),
        Some(other) => Err(malformed(path, key, "true or false", other)),
    };
    let norm = if flag("do_normalize", true)? {
        normalization(path, &json, ["image_mean", "image_std"])?
    } else {
        Normalization::NONE
    };
    let crop_pct = if flag("do_center_crop", false)? {
        let crop = side(json.get("crop_size"), "height");
        let resize = side(json.get("size"), "shortest_edge");
        match (crop, resize) {
            (Some(crop), Some(resize)) if crop > 0.0 && resize >= crop => crop / resize,
            _ => {
                let found = serde_json::json!({"crop_size": json.get("crop_size"), "size": json.get("size")});
                return Err(malformed(
                    path,
                    "crop_size",
                    "a crop no larger than `size.shortest_edge` when `do_center_crop` is true",
                    &found,
                ));
            }
        }
    } else {
        1.0
    };
    Ok((norm, crop_pct))
}

/// The normalisation and crop share of a timm config's `pretrained_cfg`.
fn timm_pretrained_cfg(path: &Path) -> Result<(Normalization, f64)> {
    let json = read_json(path)?;
    let Some(cfg) = json.get("pretrained_cfg") else {
        return Ok((Normalization::IMAGENET, DEFAULT_CROP_PCT));
    };
    let norm = normalization(path, cfg, ["mean", "std"])?;
    let crop_pct = match cfg.get("crop_pct") {
        None => DEFAULT_CROP_PCT,
        Some(value) => match value.as_f64() {
            Some(pct) if pct > 0.0 && pct <= 1.0 => pct,
            _ => {
                return Err(malformed(
                    path,
                    "pretrained_cfg.crop_pct",
                    "in (0, 1]",
                    value,
                ));
            }
        },
    };
    Ok((norm, crop_pct))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A directory `name` in `scratch` holding `config.json` (and `preprocessor_config.json`
    /// when given).
    fn checkpoint(scratch: &Path, name: &str, config: &str, processor: Option<&str>) -> PathBuf {
        let dir = scratch.join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("config.json"), config).expect("config");
        let processor_path = dir.join("preprocessor_config.json");
        match processor {
            Some(text) => std::fs::write(&processor_path, text).expect("processor"),
            None => std::fs::remove_file(&processor_path).unwrap_or(()),
        }
        dir.join("config.json")
    }

    const FACE: &str = r#"{"model_type": "vit_face", "image_size": 112, "patch_size": 8,
        "dim": 512, "depth": 6, "heads": 8, "mlp_dim": 2048, "num_class": 100}"#;
    const DINOV2: &str = r#"{"model_type": "dinov2", "hidden_size": 384, "num_hidden_layers": 12,
        "num_attention_heads": 6, "patch_size": 14, "image_size": 518}"#;
    const HF_VIT: &str = r#"{"model_type": "vit", "hidden_size": 192, "num_hidden_layers": 2,
        "num_attention_heads": 3, "intermediate_size": 768, "patch_size": 16, "image_size": 224}"#;

    /// Each format's rule (PROTOCOL §0.3: the face ViT reads ToTensor's `[0, 1]` pixels, not
    /// ImageNet-normalised ones). Catches ImageNet statistics for every format (the face case),
    /// a preprocessor file ignored or its `do_normalize`/`do_center_crop` ignored, timm's
    /// `pretrained_cfg` ignored, and a caller's crop share not overriding the format's.
    #[test]
    fn each_format_reads_images_its_own_way() {
        let scratch = tempfile::tempdir().expect("scratch");
        let face = checkpoint(scratch.path(), "face", FACE, None);
        let found = checkpoint_preprocess(&face, None, None).expect("face");
        assert_eq!(found, Preprocess::new(112, 3, Normalization::NONE));

        let dinov2 = checkpoint(
            scratch.path(),
            "dinov2",
            DINOV2,
            Some(
                r#"{"do_center_crop": true, "crop_size": {"height": 224, "width": 224},
                    "size": {"shortest_edge": 256}, "do_normalize": true,
                    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}"#,
            ),
        );
        let found = checkpoint_preprocess(&dinov2, Some(224), None).expect("dinov2");
        assert_eq!(found.norm, Normalization::IMAGENET);
        assert_eq!(found.crop_pct, 224.0 / 256.0);
        assert_eq!(found.image_size, 224);
        let found = checkpoint_preprocess(&dinov2, Some(224), Some(1.0)).expect("override");
        assert_eq!(found.crop_pct, 1.0);

        let raw = checkpoint(
            scratch.path(),
            "hf-raw",
            HF_VIT,
            Some(r#"{"do_normalize": false, "image_mean": [0.5, 0.5, 0.5], "size": 224}"#),
        );
        let found = checkpoint_preprocess(&raw, None, None).expect("hf raw");
        assert_eq!((found.norm, found.crop_pct), (Normalization::NONE, 1.0));

        let half = checkpoint(
            scratch.path(),
            "hf-half",
            HF_VIT,
            Some(r#"{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}"#),
        );
        let found = checkpoint_preprocess(&half, None, None).expect("hf half");
        assert_eq!((found.norm, found.crop_pct), (Normalization::HALF, 1.0));

        let bare = checkpoint(scratch.path(), "hf-bare", HF_VIT, None);
        let found = checkpoint_preprocess(&bare, None, None).expect("hf bare");
        assert_eq!(
            (found.norm, found.crop_pct),
            (Normalization::IMAGENET, 0.875)
        );

        let timm = checkpoint(
            scratch.path(),
            "timm",
            r#"{"architecture": "vit_small_patch16_224",
                "pretrained_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop_pct": 0.9}}"#,
            None,
        );
        let found = checkpoint_preprocess(&timm, None, None).expect("timm");
        assert_eq!((found.norm, found.crop_pct), (Normalization::HALF, 0.9));
        let timm_bare = checkpoint(
            scratch.path(),
            "timm-bare",
            r#"{"architecture": "vit_small_patch16_224"}"#,
            None,
        );
        let found = checkpoint_preprocess(&timm_bare, None, None).expect("timm bare");
        assert_eq!(
            (found.norm, found.crop_pct),
            (Normalization::IMAGENET, 0.875)
        );

        let torchvision = checkpoint(
            scratch.path(),
            "torchvision",
            r#"{"model_type": "torchvision_vit", "arch": "vit_b_16"}"#,
            None,
        );
        let found = checkpoint_preprocess(&torchvision, None, None).expect("torchvision");
        assert_eq!(found.resize_side(), 256, "resize 256, crop 224");
        assert_eq!(
            (found.norm, found.image_size),
            (Normalization::IMAGENET, 224)
        );

        for path in [face, dinov2, raw, half, bare, timm, timm_bare, torchvision] {
            std::fs::remove_dir_all(path.parent().expect("dir")).ok();
        }
    }

    /// Malformed entries are refused naming the file, the key and what was found, instead of
    /// falling back to a default (a zero std would divide by zero; a crop larger than the
    /// resize cannot be cut).
    #[test]
    fn malformed_entries_are_named() {
        let scratch = tempfile::tempdir().expect("scratch");
        let cases = [
            (r#"{"image_std": [0.2, 0.0, 0.2]}"#, "`image_std`"),
            (r#"{"image_mean": [0.5, 0.5]}"#, "`image_mean`"),
            (r#"{"do_normalize": "yes"}"#, "`do_normalize`"),
            (
                r#"{"do_center_crop": true, "crop_size": 300, "size": {"shortest_edge": 256}}"#,
                "`crop_size`",
            ),
        ];
        for (i, (processor, key)) in cases.into_iter().enumerate() {
            let path = checkpoint(scratch.path(), &format!("bad{i}"), HF_VIT, Some(processor));
            let message = checkpoint_preprocess(&path, None, None)
                .expect_err(processor)
                .to_string();
            assert!(message.contains(key), "{processor}: {message}");
            assert!(message.contains("preprocessor_config.json"), "{message}");
            std::fs::remove_dir_all(path.parent().expect("dir")).ok();
        }
    }
}
