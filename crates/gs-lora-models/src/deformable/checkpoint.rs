//! Reading Hugging Face Deformable DETR checkpoints: `config.json` and the tensor names of both
//! transformers generations.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, TensorData};
use gs_lora_core::LoraConfig;
use serde_json::Value;

use super::model::{DeformableDetr, DeformableDetrConfig};
use crate::config_file::{config_error, get_f64, get_usize, plausible_size, read_config_file};
use crate::error::{ModelError, Result};
use crate::resnet::ResNetConfig;
use crate::weights::{CheckpointSource, IdentityKeys, Init, KeyMap, ParamSource};

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
        let rate =
            |key: &str, default: f64| Ok::<_, ModelError>(get_f64(&json, key)?.unwrap_or(default));
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
            dropout: rate("dropout", 0.1)?,
            activation_dropout: rate("activation_dropout", 0.0)?,
            attention_dropout: rate("attention_dropout", 0.0)?,
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
/// names.
///
/// # Tied heads
/// The detection heads are stored under several names that are one parameter:
/// - without box refinement every decoder level shares one class head and one box head:
///   `class_embed.N` for all levels `N` are one tensor, `bbox_embed.N` likewise;
/// - with box refinement each level has its own box head, which the decoder also holds as
///   `model.decoder.bbox_embed.N` (and, in two-stage models, `model.decoder.class_embed.N`
///   for `class_embed.N`, up to the proposal heads at `N = L` after the `L` decoder levels).
///
/// Older files write every name (the released checkpoints, transformers ≤ 5.23);
/// transformers ≥ 5.24's `save_pretrained` writes each tied tensor once (`class_embed.0.*` and
/// `bbox_embed.0.*` without box refinement, `model.decoder.bbox_embed.N.*` with it). The model
/// asks for the last level's name (`class_embed.{L-1}`, and every level's `bbox_embed.N` with box
/// refinement); the key map reads whichever copy the file holds, that name itself first (see
/// [`copies`](Self::copies)). [`DeformableDetr::from_pretrained`] also reads every other copy
/// and refuses a file whose copies differ; the other copies are never unexpected tensors. Box
/// refinement still needs a box head of every level.
///
/// With box refinement the class heads of the levels before the last score nothing at inference:
/// they stay unread. transformers 5 ties those too (one class head for all levels) and writes
/// only `class_embed.0`; when a file of a box-refining single-stage model has no copy of the
/// last level's class head, `class_embed.0` is read in its place.
#[derive(Debug, Clone)]
pub struct DetrKeys {
    legacy_backbone: bool,
    mlp_ffn: bool,
    o_proj: bool,
    head: usize,
    box_refine: bool,
    two_stage: bool,
    /// With box refinement and a single stage: the file holds no copy of the last level's
    /// class head, so the first level's (transformers 5 ties them) stands for it.
    shared_class: bool,
    /// Each head tensor the model reads → the file's copies of it, the one read first.
    copies: BTreeMap<String, Vec<String>>,
}

/// A detection head's tensor name, `[model.decoder.]{class_embed,bbox_embed}.{level}.{rest}`.
struct HeadKey<'a> {
    kind: &'a str,
    level: usize,
    rest: &'a str,
}

impl<'a> HeadKey<'a> {
    fn parse(key: &'a str) -> Option<Self> {
        let (kind, tail) = key
            .strip_prefix("model.decoder.")
            .unwrap_or(key)
            .split_once('.')?;
        if !matches!(kind, "class_embed" | "bbox_embed") {
            return None;
        }
        let (level, rest) = tail.split_once('.')?;
        Some(Self {
            kind,
            level: level.parse().ok()?,
            rest,
        })
    }
}

impl DetrKeys {
    /// The key map for a file holding `names`, for a model of architecture `config`.
    pub fn new(names: &BTreeSet<String>, config: &DeformableDetrConfig) -> Self {
        let any = |needle: &str| names.iter().any(|n| n.contains(needle));
        let head = config.decoder_layers.saturating_sub(1);
        let shared_class = config.with_box_refine
            && !config.two_stage
            && !names.iter().any(|name| {
                HeadKey::parse(name).is_some_and(|h| h.kind == "class_embed" && h.level == head)
            });
        let mut keys = Self {
            legacy_backbone: any("model.backbone.conv_encoder.model."),
            mlp_ffn: any(".mlp.fc1."),
            o_proj: any(".self_attn.o_proj."),
            head,
            box_refine: config.with_box_refine,
            two_stage: config.two_stage,
            shared_class,
            copies: BTreeMap::new(),
        };
        let mut copies: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in names {
            if let Some(canonical) = keys.canonical(name) {
                copies.entry(canonical).or_default().push(name.clone());
            }
        }
        // The model's own name first, then the heads' names before the decoder's aliases.
        for (canonical, names) in &mut copies {
            names.sort_by_key(|name| {
                (
                    name != canonical,
                    name.starts_with("model.decoder."),
                    name.clone(),
                )
            });
        }
        keys.copies = copies;
        keys
    }

    /// The file's copies of the head tensor `key` (a name the model asks for, e.g.
    /// `class_embed.1.weight`), the one read first; empty for other tensors, or when the file
    /// has no copy.
    pub fn copies(&self, key: &str) -> &[String] {
        self.copies.get(key).map_or(&[], Vec::as_slice)
    }

    /// The name the model asks for of the head tensor that the file's `name` is a copy of;
    /// `None` for other tensors and for heads the model does not read.
    fn canonical(&self, name: &str) -> Option<String> {
        let HeadKey { kind, level, rest } = HeadKey::parse(name)?;
        let proposals = self.two_stage && level == self.head + 1;
        let read = match (self.box_refine, kind) {
            // One head shared by every decoder level.
            (false, _) => (level <= self.head).then_some(self.head),
            // Every level's own box head, and the proposals'.
            (true, "bbox_embed") => (level <= self.head || proposals).then_some(level),
            // The last level's class head (transformers 5: the first's, tied to it), and the
            // proposals'.
            (true, _) if level == self.head || proposals => Some(level),
            (true, _) => (self.shared_class && level == 0).then_some(self.head),
        }?;
        Some(format!("{kind}.{read}.{rest}"))
    }
}

impl KeyMap for DetrKeys {
    fn file_keys(&self, key: &str) -> Vec<String> {
        if let Some(read) = self.copies(key).first() {
            return vec![read.clone()];
        }
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
        if file_key.ends_with("num_batches_tracked") {
            return true;
        }
        let Some(head) = HeadKey::parse(file_key) else {
            return false;
        };
        match self.canonical(file_key) {
            // Another copy of a tensor read under one of its names (or, when the file has none,
            // under the model's name, which then is missing).
            Some(canonical) => {
                let read = self.copies(&canonical).first().unwrap_or(&canonical);
                read != file_key
            }
            // A class head the model does not read; a box head beyond the levels is unexpected
            // with box refinement, as every box head is read.
            None => !(self.box_refine && head.kind == "bbox_embed"),
        }
    }
}

/// A checkpoint read for [`DeformableDetr::load`] that, for each tied head tensor, also reads
/// the file's other copies and checks that they equal the one read.
struct TiedCopies<'a, S> {
    source: &'a mut S,
    keys: DetrKeys,
    path: PathBuf,
}

impl<S: ParamSource> ParamSource for TiedCopies<'_, S> {
    fn tensor(&mut self, key: &str, shape: &[usize], init: Init) -> Result<TensorData> {
        let data = self.source.tensor(key, shape, init)?;
        let [read, others @ ..] = self.keys.copies(key) else {
            return Ok(data);
        };
        let values = data.as_slice::<f32>().map_err(|err| ModelError::Readback {
            what: "a head tensor",
            message: format!("{err:?}"),
        })?;
        for other in others {
            let copy = self.source.tensor(other, shape, init)?;
            let copy = copy.as_slice::<f32>().map_err(|err| ModelError::Readback {
                what: "a head tensor",
                message: format!("{err:?}"),
            })?;
            if let Some(index) = values.iter().zip(copy).position(|(a, b)| a != b) {
                return Err(ModelError::TiedCopiesDiffer {
                    path: self.path.clone(),
                    read: read.clone(),
                    copy: other.clone(),
                    index,
                    read_value: values[index],
                    copy_value: copy[index],
                });
            }
        }
        Ok(data)
    }

    fn contains(&self, key: &str) -> bool {
        self.source.contains(key)
    }
}

impl DeformableDetr {
    /// Loads a checkpoint as users have it: `config.json` and `model.safetensors`, with fresh
    /// LoRA adapters drawn from `seed`.
    ///
    /// # Errors
    /// An unreadable or unsupported config, or weights that do not match it (a missing,
    /// unexpected or mis-shaped tensor names the key and both shapes; copies of a tied head
    /// tensor that differ are [`ModelError::TiedCopiesDiffer`], naming both keys).
    pub fn from_pretrained(
        config_path: impl AsRef<Path>,
        weights_path: impl AsRef<Path>,
        lora: &LoraConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let config = DeformableDetrConfig::from_file(config_path)?;
        let file = CheckpointSource::open(weights_path, IdentityKeys)?;
        let keys = DetrKeys::new(file.names(), &config);
        let path = file.path().to_path_buf();
        let mut source = file.with_keys(keys.clone());
        let mut checked = TiedCopies {
            source: &mut source,
            keys,
            path,
        };
        let model = Self::load(&config, &mut checked, lora, seed, device)?;
        source.finish()?;
        Ok(model)
    }
}
