//! A saved classifier: what `pretrain` writes and `forget` / `eval` read, and the form of every
//! forgetting checkpoint.
//!
//! ```text
//! DIR/config.json        the architecture (the checkpoint's own format)
//! DIR/model.safetensors  merged weights, no adapters
//! DIR/gs_lora.json       class names by label, input preprocessing, classes forgotten so far
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use gs_lora_core::LoraConfig;
use gs_lora_models::VisionTransformer;
use serde::{Deserialize, Serialize};

use crate::batch::Preprocess;
use crate::data::Dataset;
use crate::error::{Result, TrainError, io};
use crate::forget::write_json;

/// What a model directory records beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Name of each class the head predicts, by label.
    pub class_names: Vec<String>,
    /// How images become the model's inputs.
    pub preprocess: Preprocess,
    /// Labels erased by forgetting tasks so far (empty for a pretrained model).
    #[serde(default)]
    pub forgotten: Vec<usize>,
}

impl ModelInfo {
    /// Checks that `dataset` has the model's classes, in the same order.
    ///
    /// # Errors
    /// [`TrainError::Data`] naming the first class that differs.
    pub fn check_classes(&self, dataset: &Dataset) -> Result<()> {
        let (model, data) = (&self.class_names, &dataset.class_names);
        if model == data {
            return Ok(());
        }
        let first = model.iter().zip(data).position(|(a, b)| a != b);
        Err(TrainError::Data(match first {
            Some(i) => format!(
                "class {i} is `{}` in the model but `{}` in the data; the model was trained on other classes",
                model[i], data[i]
            ),
            None => format!(
                "the model has {} classes but the data has {}; pass the same --max-classes as when pretraining",
                model.len(),
                data.len()
            ),
        }))
    }
}

/// A model directory on disk.
#[derive(Debug, Clone)]
pub struct ModelDir(PathBuf);

impl ModelDir {
    /// The model directory `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Whether a complete model is saved there.
    pub fn exists(&self) -> bool {
        ["config.json", "model.safetensors", "gs_lora.json"]
            .iter()
            .all(|name| self.0.join(name).is_file())
    }

    /// Saves `model` (merged) and `info`, atomically: written to a sibling folder that then
    /// replaces the directory, so a kill never leaves a half-written model.
    ///
    /// # Errors
    /// File errors, or a model whose adapters cannot be merged.
    pub fn save(&self, model: &VisionTransformer, info: &ModelInfo) -> Result<()> {
        let tmp = self.0.with_extension("tmp");
        std::fs::remove_dir_all(&tmp).ok();
        model.save_pretrained(&tmp)?;
        write_json(&tmp.join("gs_lora.json"), info)?;
        std::fs::remove_dir_all(&self.0).ok();
        std::fs::rename(&tmp, &self.0).map_err(io(&self.0))
    }

    /// The recorded class names, preprocessing and forgotten classes.
    ///
    /// # Errors
    /// A missing or malformed `gs_lora.json`.
    pub fn info(&self) -> Result<ModelInfo> {
        let path = self.0.join("gs_lora.json");
        let text = std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                TrainError::Data(format!(
                    "{} is not a model directory (no gs_lora.json); make one with `gs-lora pretrain`",
                    self.0.display()
                ))
            } else {
                TrainError::Io {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let info: ModelInfo = serde_json::from_str(&text).map_err(|err| TrainError::Format {
            path: path.clone(),
            message: err.to_string(),
        })?;
        info.preprocess.validate()?;
        Ok(info)
    }

    /// Loads the model on `device` with fresh `lora` adapters drawn from `seed`.
    ///
    /// # Errors
    /// Missing files, or weights that do not match the config.
    pub fn load(&self, lora: &LoraConfig, seed: u64, device: &Device) -> Result<VisionTransformer> {
        Ok(VisionTransformer::from_pretrained(
            self.0.join("config.json"),
            self.0.join("model.safetensors"),
            lora,
            seed,
            device,
        )?)
    }
}
