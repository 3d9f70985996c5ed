//! COCO `instances_*.json` annotations, filtered to the classes a task works with, with boxes
//! converted to the model's `(cx, cy, w, h)` normalised to the image.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use rayon::prelude::*;

use super::dataset::DetectionSample;
use super::matching::Target;
use crate::error::{Result, TrainError, io};
use crate::image::Image;

#[derive(Deserialize)]
struct File {
    images: Vec<ImageEntry>,
    annotations: Vec<AnnotationEntry>,
    categories: Vec<CategoryEntry>,
}

#[derive(Deserialize)]
struct ImageEntry {
    id: u64,
    file_name: String,
    width: f64,
    height: f64,
}

#[derive(Deserialize)]
struct AnnotationEntry {
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
    #[serde(default)]
    iscrowd: u8,
}

#[derive(Deserialize)]
struct CategoryEntry {
    id: u64,
    name: String,
}

/// One image and its objects.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoImage {
    /// COCO image id.
    pub id: u64,
    /// File name inside the image directory.
    pub file_name: String,
    /// Objects of the kept classes; `label` indexes [`CocoAnnotations::categories`].
    pub objects: Vec<Target>,
    /// Crowd regions (`iscrowd`) of the kept classes, labelled alike: never trained on (DETR's
    /// loader drops them), ignored regions when scoring (COCOeval).
    pub crowd: Vec<Target>,
}

/// Annotations of the kept classes.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoAnnotations {
    /// Kept categories `(COCO id, name)`, in the order of the labels.
    pub categories: Vec<(u64, String)>,
    /// Every image (images without kept objects stay, as negatives).
    pub images: Vec<CocoImage>,
    /// Boxes dropped: boxes of zero or negative size.
    pub skipped_boxes: usize,
}

impl CocoAnnotations {
    /// Reads `path`, keeping the categories `keep` (COCO ids; all when `None`).
    ///
    /// # Errors
    /// An unreadable file, invalid JSON, an image whose width or height is not positive, a kept
    /// id the file does not define, or an annotation naming an unknown image or category: each
    /// error names the file and the id.
    pub fn open(path: impl AsRef<Path>, keep: Option<&[u64]>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        Self::from_json(&text, keep).map_err(|err| match err {
            TrainError::Data(message) => TrainError::Data(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    /// As [`open`](Self::open), from the JSON text.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn from_json(text: &str, keep: Option<&[u64]>) -> Result<Self> {
        let file: File = serde_json::from_str(text)
            .map_err(|err| TrainError::Data(format!("not COCO instances JSON: {err}")))?;
        let names: HashMap<u64, &str> = file
            .categories
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect();
        let kept: Vec<u64> = match keep {
            Some(ids) => {
                if let Some(missing) = ids.iter().find(|id| !names.contains_key(id)) {
                    return Err(TrainError::Data(format!(
                        "category {missing} is not among the file's {} categories",
                        names.len()
                    )));
                }
                ids.to_vec()
            }
            None => file.categories.iter().map(|c| c.id).collect(),
        };
        let label: HashMap<u64, usize> = kept.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let mut images: Vec<CocoImage> = file
            .images
            .iter()
            .map(|image| CocoImage {
                id: image.id,
                file_name: image.file_name.clone(),
                objects: Vec::new(),
                crowd: Vec::new(),
            })
            .collect();
        for image in &file.images {
            for (field, value) in [("width", image.width), ("height", image.height)] {
                if !(value.is_finite() && value > 0.0) {
                    return Err(TrainError::Data(format!(
                        "image {} (`{}`) has `{field}` {value}; expected a positive size in pixels",
                        image.id, image.file_name
                    )));
                }
            }
        }
        let index: HashMap<u64, usize> = file
            .images
            .iter()
            .enumerate()
            .map(|(i, image)| (image.id, i))
            .collect();
        let mut skipped_boxes = 0;
        for annotation in &file.annotations {
            let &i = index.get(&annotation.image_id).ok_or_else(|| {
                TrainError::Data(format!(
                    "an annotation names image {}, which the file does not list",
                    annotation.image_id
                ))
            })?;
            if !names.contains_key(&annotation.category_id) {
                return Err(TrainError::Data(format!(
                    "an annotation of image {} names category {}, which the file does not define",
                    annotation.image_id, annotation.category_id
                )));
            }
            let Some(&class) = label.get(&annotation.category_id) else {
                continue;
            };
            let image = &file.images[i];
            let Some(bbox) = normalised_box(annotation.bbox, image.width, image.height) else {
                skipped_boxes += 1;
                continue;
            };
            let target = Target { label: class, bbox };
            match annotation.iscrowd {
                0 => images[i].objects.push(target),
                _ => images[i].crowd.push(target),
            }
        }
        Ok(Self {
            categories: kept
                .iter()
                .map(|&id| (id, names[&id].to_string()))
                .collect(),
            images,
            skipped_boxes,
        })
    }
}

/// DETR's limit on the longer side relative to the shorter (1333 / 800).
const MAX_TO_SHORT_SIDE: f64 = 1333.0 / 800.0;

impl CocoAnnotations {
    /// Each kept category's label in a model whose classes are `class_names`, matched by name.
    ///
    /// # Errors
    /// A category the model has no class of, naming it.
    pub fn model_labels(&self, class_names: &[String]) -> Result<Vec<usize>> {
        self.categories
            .iter()
            .map(|(id, name)| {
                class_names.iter().position(|n| n == name).ok_or_else(|| {
                    TrainError::Data(format!(
                        "category {id} `{name}` is not among the model's {} labels",
                        class_names.len()
                    ))
                })
            })
            .collect()
    }

    /// The first `max_images` images (all when `None`) decoded from `image_dir` and resized,
    /// aspect kept, so the shorter side is `side` and the longer at most `side · 1333 / 800`
    /// (DETR's 800 / 1333; boxes are normalised, so they stay valid), their objects relabelled
    /// with `labels` (one model label per kept category, as
    /// [`model_labels`](Self::model_labels)). Batches of them are padded.
    ///
    /// # Errors
    /// A `labels` list of another length, or an image that cannot be read or decoded (naming
    /// the file).
    pub fn load_samples(
        &self,
        image_dir: &Path,
        labels: &[usize],
        side: usize,
        max_images: Option<usize>,
    ) -> Result<Vec<DetectionSample>> {
        if labels.len() != self.categories.len() {
            return Err(TrainError::InvalidSetting(format!(
                "{} labels for {} categories",
                labels.len(),
                self.categories.len()
            )));
        }
        let count = max_images
            .unwrap_or(self.images.len())
            .min(self.images.len());
        self.images[..count]
            .par_iter()
            .map(|image| {
                let path = image_dir.join(&image.file_name);
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                let decoded = Image::decode(&bytes).map_err(|message| TrainError::Format {
                    path: path.clone(),
                    message,
                })?;
                let longest = side as f64 * MAX_TO_SHORT_SIDE;
                let (w, h) = (decoded.width() as f64, decoded.height() as f64);
                let scale = (side as f64 / w.min(h)).min(longest / w.max(h));
                let size = |extent: f64| ((extent * scale).round() as usize).max(1);
                let relabel = |targets: &[Target]| -> Vec<Target> {
                    targets
                        .iter()
                        .map(|o| Target {
                            label: labels[o.label],
                            bbox: o.bbox,
                        })
                        .collect()
                };
                Ok(DetectionSample {
                    image: decoded.resized(size(w), size(h)),
                    objects: relabel(&image.objects),
                    crowd: relabel(&image.crowd),
                })
            })
            .collect()
    }
}

/// COCO `[x, y, w, h]` in pixels → `[cx, cy, w, h]` normalised, clamped to the image; `None`
/// for a box with no area inside it.
fn normalised_box([x, y, w, h]: [f64; 4], width: f64, height: f64) -> Option<[f64; 4]> {
    let (x0, y0) = (x.clamp(0.0, width), y.clamp(0.0, height));
    let (x1, y1) = ((x + w).clamp(0.0, width), (y + h).clamp(0.0, height));
    if !(x1 > x0 && y1 > y0) {
        return None;
    }
    Some([
        (x0 + x1) / 2.0 / width,
        (y0 + y1) / 2.0 / height,
        (x1 - x0) / width,
        (y1 - y0) / height,
    ])
}
