//! Labelled image sets split into train / validation / test: the embedded synthetic default,
//! CUB-200-2011, image folders (on disk or zipped) and IDX files (Fashion-MNIST).
//!
//! Images are kept as 8-bit pixels at (at most) the size they are used at; resizing, cropping,
//! flipping and normalisation happen per batch ([`crate::image::Preprocess`]).

mod cub;
mod folder;
mod idx;
mod listing;
mod synthetic;

use std::path::Path;

pub use cub::load_cub;
pub use folder::{load_folder, load_zip};
pub use idx::{FASHION_MNIST_CLASSES, load_idx};
pub use synthetic::{SyntheticShapes, SyntheticShapesConfig};

use crate::error::{Result, TrainError};
use crate::image::Image;

/// Images of one split with their class labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageSet {
    /// The images.
    pub images: Vec<Image>,
    /// Class of each image.
    pub labels: Vec<usize>,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Appends one image.
    pub fn push(&mut self, image: Image, label: usize) {
        self.images.push(image);
        self.labels.push(label);
    }

    /// Indices of the images whose class is in `classes`.
    pub fn indices_of(&self, classes: &[usize]) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| classes.contains(&self.labels[i]))
            .collect()
    }
}

/// A dataset with its class names and three splits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// Name of each class, indexed by label.
    pub class_names: Vec<String>,
    /// Training images.
    pub train: ImageSet,
    /// Validation images: model selection and reported metrics.
    pub val: ImageSet,
    /// Test images: never read by training or model selection.
    pub test: ImageSet,
    /// Images that could not be read, as `path: reason`; loading warns with their count.
    pub skipped: Vec<String>,
    /// The seed that chose which training images became validation images and which the
    /// per-class caps kept ([`LoadOptions::seed`]; generated data's generation seed). A model
    /// records the one it was trained with: its validation images are unseen only under it.
    pub split_seed: u64,
    /// Share of each class's training images set aside as validation images
    /// ([`LoadOptions::val_fraction`]); 0 when the source has its own validation split. Under
    /// one split seed a smaller share sets aside a subset of a larger one's images, so a model
    /// records its share: data with a larger one would validate on images it trained on.
    pub val_fraction: f64,
}

impl Dataset {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Checks that every class has at least one image in `set` (the split called `split`):
    /// a class whose images were all unreadable would otherwise train as a dead class.
    ///
    /// # Errors
    /// [`TrainError::Data`] naming the first class without images.
    pub fn require_each_class(&self, split: &str, set: &ImageSet) -> Result<()> {
        let mut counts = vec![0usize; self.num_classes()];
        for &label in &set.labels {
            if let Some(count) = counts.get_mut(label) {
                *count += 1;
            }
        }
        let Some(class) = counts.iter().position(|&n| n == 0) else {
            return Ok(());
        };
        let unreadable = match self.skipped.len() {
            0 => String::new(),
            n => format!(
                " ({n} image(s) were unreadable, first: {})",
                self.skipped[0]
            ),
        };
        Err(TrainError::Data(format!(
            "class `{}` has no {split} image{unreadable}; every class needs at least one",
            self.class_names[class]
        )))
    }

    /// Checks that there is a validation split to measure on.
    ///
    /// # Errors
    /// [`TrainError::Data`] when it is empty.
    pub fn require_validation(&self) -> Result<()> {
        if self.val.is_empty() {
            return Err(TrainError::Data(
                "the validation split is empty, so no accuracy can be measured (a --val-fraction \
                 above 0, or a val/ folder, gives one)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Loads the dataset at `path`, recognising its format: a `.zip` archive of an image
    /// folder, a CUB-200-2011 root, a folder of IDX files, or an image folder.
    ///
    /// # Errors
    /// A missing path, or the format loader's error.
    pub fn open(path: &Path, options: &LoadOptions) -> Result<Self> {
        if path.is_file() && path.extension().is_some_and(|e| e == "zip") {
            let dataset = load_zip(path, options)?;
            dataset.require_each_class("readable training", &dataset.train)?;
            return Ok(dataset);
        }
        if !path.is_dir() {
            return Err(TrainError::Data(format!(
                "{}: expected a dataset folder or a .zip archive, found nothing there",
                path.display()
            )));
        }
        let dataset = if cub::is_cub(path) {
            load_cub(path, options)?
        } else if idx::idx_file(path, "train-images-idx3-ubyte").is_some() {
            load_idx(path, options)?
        } else {
            load_folder(path, options)?
        };
        dataset.require_each_class("readable training", &dataset.train)?;
        Ok(dataset)
    }
}

/// How a loader turns a source into a [`Dataset`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadOptions {
    /// Share of each class's training images kept for validation when the source has no
    /// validation split (seeded).
    pub val_fraction: f64,
    /// Only the first classes (in the source's class order), when set.
    pub max_classes: Option<usize>,
    /// At most this many training images per class (a seeded choice), when set.
    pub train_per_class: Option<usize>,
    /// At most this many validation and test images per class, when set.
    pub eval_per_class: Option<usize>,
    /// Larger images are shrunk at load so their shorter side is this (memory stays small).
    pub max_side: Option<usize>,
    /// Seed of the split and of the capped choices (`--split-seed`): a property of the data,
    /// not of a run, so every run on one model sees the same validation images.
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            val_fraction: 0.2,
            max_classes: None,
            train_per_class: None,
            eval_per_class: None,
            max_side: None,
            seed: 0,
        }
    }
}

impl LoadOptions {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`TrainError::Setting`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(TrainError::Setting {
                name: "val_fraction",
                problem: format!("must be in [0, 1), found {}", self.val_fraction),
            });
        }
        let counts = [
            ("max_classes", self.max_classes),
            ("train_per_class", self.train_per_class),
            ("eval_per_class", self.eval_per_class),
            ("max_side", self.max_side),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, value)| *value == Some(0)) {
            return Err(TrainError::Setting {
                name,
                problem: "must be at least 1, found 0".into(),
            });
        }
        Ok(())
    }
}
