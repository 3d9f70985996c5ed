//! A saved classifier: what `pretrain` writes and `forget` / `eval` read, and the form of every
//! forgetting checkpoint.
//!
//! ```text
//! DIR/config.json        the architecture (the checkpoint's own format)
//! DIR/model.safetensors  merged weights, no adapters
//! DIR/gs_lora.json       class names by label, input preprocessing, classes forgotten so far,
//!                        the split seed and validation share of the data it trained on
//! DIR/pretrain.json      the settings `gs-lora pretrain` used (only in its output)
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use gs_lora_core::LoraConfig;
use gs_lora_models::VisionTransformer;
use serde::{Deserialize, Serialize};

use super::data::Dataset;
use crate::error::{Result, TrainError, io};
use crate::image::Preprocess;
use crate::io::{ensure_replaceable, replace_dir, write_json};
use crate::record::validate_record;

/// The files of a model directory; a directory holding anything else is never replaced.
const FILES: [&str; 4] = [
    "config.json",
    "model.safetensors",
    "gs_lora.json",
    SETTINGS_FILE,
];

/// The file of a model directory that records how it was trained (written by
/// [`ClassifierDir::save_with_settings`]).
pub const SETTINGS_FILE: &str = "pretrain.json";

/// What a model directory records beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierInfo {
    /// Name of each class the head predicts, by label.
    pub class_names: Vec<String>,
    /// How images become the model's inputs.
    pub preprocess: Preprocess,
    /// Labels erased by forgetting tasks so far (empty for a pretrained model).
    #[serde(default)]
    pub forgotten: Vec<usize>,
    /// The [`Dataset::split_seed`] of the data the model was trained on (0, `pretrain`'s
    /// default, in earlier versions' files): runs on the model load their data with it.
    #[serde(default)]
    pub split_seed: u64,
    /// The [`Dataset::val_fraction`] of the data the model was trained on (`None` in earlier
    /// versions' files: not checked): runs on the model set aside that share for validation
    /// by default, and no larger one.
    #[serde(default)]
    pub val_fraction: Option<f64>,
}

impl ClassifierInfo {
    /// Checks that the record is consistent (see [`validate_record`]).
    ///
    /// # Errors
    /// [`TrainError::InvalidSetting`] naming the field and the value.
    pub fn validate(&self) -> Result<()> {
        if let Some(share) = self.val_fraction.filter(|s| !(0.0..1.0).contains(s)) {
            return Err(TrainError::InvalidSetting(format!(
                "val_fraction must be in [0, 1), found {share}"
            )));
        }
        validate_record(&self.class_names, &self.forgotten, &self.preprocess)
    }

    /// Checks that `dataset` has the model's classes, in the same order, and was split with
    /// the model's seed and at most its validation share (another seed or a larger share would
    /// put images the model trained on among the validation images, or draw another generated
    /// dataset).
    ///
    /// # Errors
    /// [`TrainError::Data`] naming the first class that differs, both split seeds or both
    /// validation shares.
    pub fn check_data(&self, dataset: &Dataset) -> Result<()> {
        if self.split_seed != dataset.split_seed {
            return Err(TrainError::Data(format!(
                "the data was split with seed {} but the model was trained on the split of seed \
                 {}; load it with --split-seed {1}",
                dataset.split_seed, self.split_seed
            )));
        }
        if let Some(share) = self
            .val_fraction
            .filter(|&share| dataset.val_fraction > share)
        {
            return Err(TrainError::Data(format!(
                "the data sets {} of each class's training images aside for validation but the \
                 model trained on all but {share} of them, so some validation images would be \
                 images it trained on; load it with --val-fraction {share} (or less)",
                dataset.val_fraction
            )));
        }
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
pub struct ClassifierDir(PathBuf);

impl ClassifierDir {
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

    /// Checks, before anything is trained, that [`save`](Self::save) may write here: the
    /// directory is absent, empty, or a model directory.
    ///
    /// # Errors
    /// [`TrainError::InvalidSetting`] naming the first file this program did not write.
    pub fn ensure_writable(&self) -> Result<()> {
        ensure_replaceable(&self.0, &FILES)
    }

    /// Saves `model` (merged) and `info`, atomically: written to a hidden sibling folder that
    /// then takes the directory's place, so a kill never leaves a half-written model and the
    /// previous one stays until the new one is complete. An existing directory is replaced
    /// only when it is empty or a model directory (nothing but [`FILES`]).
    ///
    /// # Errors
    /// A directory holding other files (refused, untouched), file errors, or a model whose
    /// adapters cannot be merged.
    pub fn save(&self, model: &VisionTransformer, info: &ClassifierInfo) -> Result<()> {
        self.write(model, info, None::<&()>)
    }

    /// [`save`](Self::save), with the settings that trained the model as [`SETTINGS_FILE`]
    /// in the same atomic replacement.
    ///
    /// # Errors
    /// As [`save`](Self::save).
    pub fn save_with_settings(
        &self,
        model: &VisionTransformer,
        info: &ClassifierInfo,
        settings: &impl Serialize,
    ) -> Result<()> {
        self.write(model, info, Some(settings))
    }

    fn write<S: Serialize>(
        &self,
        model: &VisionTransformer,
        info: &ClassifierInfo,
        settings: Option<&S>,
    ) -> Result<()> {
        replace_dir(&self.0, &FILES, |tmp| {
            model.save_pretrained(tmp)?;
            write_json(&tmp.join("gs_lora.json"), info)?;
            match settings {
                Some(settings) => write_json(&tmp.join(SETTINGS_FILE), settings),
                None => Ok(()),
            }
        })
    }

    /// The recorded class names, preprocessing and forgotten classes.
    ///
    /// # Errors
    /// A missing or malformed `gs_lora.json`.
    pub fn info(&self) -> Result<ClassifierInfo> {
        let path = self.0.join("gs_lora.json");
        let text = std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                TrainError::Data(format!(
                    "{} is not a model directory (no gs_lora.json); make one with `gs-lora pretrain`",
                    self.0.display()
                ))
            } else {
                io(&path)(source)
            }
        })?;
        let info: ClassifierInfo =
            serde_json::from_str(&text).map_err(|err| TrainError::Format {
                path: path.clone(),
                message: err.to_string(),
            })?;
        info.validate().map_err(|err| TrainError::Format {
            path,
            message: err.to_string(),
        })?;
        Ok(info)
    }

    /// Loads the model on `device` with fresh `lora` adapters drawn from `seed`.
    ///
    /// # Errors
    /// Missing files, weights that do not match the config, a head whose size differs from
    /// the recorded classes, or an input size the memory limit cannot hold.
    pub fn load(&self, lora: &LoraConfig, seed: u64, device: &Device) -> Result<VisionTransformer> {
        let info = self.info()?;
        let model = VisionTransformer::from_pretrained(
            self.0.join("config.json"),
            self.0.join("model.safetensors"),
            lora,
            seed,
            device,
        )?;
        let classes = info.class_names.len();
        if model.config.num_classes != Some(classes) {
            return Err(TrainError::Format {
                path: self.0.join("config.json"),
                message: format!(
                    "the head has {:?} classes but gs_lora.json names {classes}",
                    model.config.num_classes
                ),
            });
        }
        let side = info.preprocess.image_size;
        model.check_input([1, info.preprocess.channels, side, side])?;
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Normalization;

    /// A recorded validation share outside [0, 1) is refused by name; none (earlier files) and
    /// one inside are not. Catches the share left unchecked.
    #[test]
    fn a_validation_share_outside_the_unit_interval_is_refused() {
        let info = |val_fraction| ClassifierInfo {
            class_names: vec!["ant".into(), "bee".into()],
            preprocess: Preprocess::new(16, 3, Normalization::IMAGENET),
            forgotten: Vec::new(),
            split_seed: 0,
            val_fraction,
        };
        for share in [None, Some(0.0), Some(0.4)] {
            info(share).validate().expect("valid");
        }
        for share in [1.0, -0.1, f64::NAN] {
            let err = info(Some(share)).validate().expect_err("refused");
            assert!(err.to_string().contains("val_fraction"), "{err}");
        }
    }
}
