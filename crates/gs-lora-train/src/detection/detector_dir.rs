//! A saved detector: what detection pretraining writes and every detection forgetting
//! checkpoint.
//!
//! ```text
//! DIR/detector.json      architecture, class names by label, input preprocessing, forgotten classes
//! DIR/model.safetensors  merged weights (Burn module paths), no adapters
//! ```

use std::path::{Path, PathBuf};

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use gs_lora_core::LoraConfig;
use gs_lora_models::deformable::{DeformableDetr, DeformableDetrConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError, io};
use crate::image::Preprocess;
use crate::io::{replace_dir, write_json};
use crate::record::validate_record;

/// The files of a detector directory; a directory holding anything else is never replaced.
const FILES: [&str; 2] = ["detector.json", "model.safetensors"];

/// Key renames from detectors saved before the query source became one enum field
/// (`DeformableDetr::queries`): `(pattern in the file, replacement)`.
const OLD_QUERY_KEYS: [(&str, &str); 3] = [
    (
        r"^query_position_embeddings$",
        "queries.Learned.query_position_embeddings",
    ),
    (r"^reference_points\.", "queries.Learned.reference_points."),
    (r"^proposals\.", "queries.Proposals."),
];

/// What a detector directory says besides its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorInfo {
    /// The architecture.
    pub config: DeformableDetrConfig,
    /// Class names by label.
    pub class_names: Vec<String>,
    /// How images become inputs.
    pub preprocess: Preprocess,
    /// Classes forgotten so far.
    #[serde(default)]
    pub forgotten: Vec<usize>,
}

/// A directory holding a detector.
#[derive(Debug, Clone)]
pub struct DetectorDir(PathBuf);

/// Adapters are never saved: a checkpoint is merged, so loading it cannot merge twice.
fn is_base_weight(path: &str, _container: &str) -> bool {
    !path.contains("lora_")
}

impl DetectorDir {
    /// The directory `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Whether both files are there.
    pub fn exists(&self) -> bool {
        FILES.iter().all(|name| self.0.join(name).is_file())
    }

    /// Saves `model` (its adapters merged already) and `info`, replacing the directory
    /// atomically as [`ClassifierDir::save`](crate::ClassifierDir::save) does (and refusing a directory
    /// that holds anything else).
    ///
    /// # Errors
    /// A directory holding other files, or a file that cannot be written.
    pub fn save(&self, model: &DeformableDetr, info: &DetectorInfo) -> Result<()> {
        replace_dir(&self.0, &FILES, |tmp| {
            let weights = tmp.join("model.safetensors");
            let mut store = SafetensorsStore::from_file(&weights).with_predicate(is_base_weight);
            model
                .save_into(&mut store)
                .map_err(|err| TrainError::Format {
                    path: weights.clone(),
                    message: err.to_string(),
                })?;
            write_json(&tmp.join("detector.json"), info)
        })
    }

    /// Reads `detector.json`.
    ///
    /// # Errors
    /// A missing or malformed file, or one whose architecture (sizes, memory limit), classes
    /// or preprocessing are invalid.
    pub fn info(&self) -> Result<DetectorInfo> {
        let path = self.0.join("detector.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let info: DetectorInfo = serde_json::from_str(&text).map_err(|err| TrainError::Format {
            path: path.clone(),
            message: err.to_string(),
        })?;
        // Checked before anything is built from it: sizes, the memory limit, the classes.
        info.config.validate().map_err(|err| TrainError::Format {
            path: path.clone(),
            message: err.to_string(),
        })?;
        validate_record(&info.class_names, &info.forgotten, &info.preprocess).map_err(|err| {
            TrainError::Format {
                path,
                message: err.to_string(),
            }
        })?;
        Ok(info)
    }

    /// The saved detector with fresh adapters from `seed`: the base weights frozen, the
    /// adapters trainable (as [`DeformableDetr::init`] makes them; loading keeps each
    /// parameter's setting).
    ///
    /// # Errors
    /// Missing or malformed files, or weights that do not fit the saved architecture.
    pub fn load(&self, lora: &LoraConfig, seed: u64, device: &Device) -> Result<DeformableDetr> {
        let info = self.info()?;
        let weights = self.0.join("model.safetensors");
        let format_error = |message: String| TrainError::Format {
            path: weights.clone(),
            message,
        };
        let mut model = DeformableDetr::init(&info.config, lora, seed, device)?;
        // Partial: the adapters are absent by design; every other missing tensor is refused.
        let mut store = SafetensorsStore::from_file(&weights).allow_partial(true);
        // Detectors saved before the query source became one field name its parts at the top.
        for (old, new) in OLD_QUERY_KEYS {
            store = store.with_key_remapping(old, new);
        }
        let applied = model
            .load_from(&mut store)
            .map_err(|err| format_error(err.to_string()))?;
        let missing: Vec<&str> = applied
            .missing
            .iter()
            .map(|(path, _)| path.as_str())
            .filter(|path| is_base_weight(path, ""))
            .collect();
        if !applied.errors.is_empty() || !missing.is_empty() || !applied.unused.is_empty() {
            return Err(format_error(format!(
                "does not fit the architecture in detector.json: missing {missing:?}, unused {:?}, \
                 errors {:?}",
                applied.unused, applied.errors
            )));
        }
        Ok(model)
    }
}
