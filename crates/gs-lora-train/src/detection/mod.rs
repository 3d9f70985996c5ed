//! Forgetting object classes in a Deformable DETR: detection data (COCO annotations and the
//! embedded synthetic scenes), the Hungarian matcher and set criterion of (Deformable) DETR,
//! post-processing and COCO-style average precision per group of classes, training a detector,
//! and the GS-LoRA forgetting loop for detection.

mod augment;
mod average_precision;
mod boxes;
mod coco;
mod criterion;
mod dataset;
mod detector_dir;
mod embedded;
mod evaluate;
mod forget;
mod matching;
mod pretrain;
mod synthetic;

pub use augment::DetrAugment;
pub use average_precision::{
    ApSummary, Detection, GroundTruth, average_precision, group_average_precision,
};
pub use boxes::{Corners, CxCyWh, corners, generalized_iou, iou};
pub use coco::{CocoAnnotations, CocoImage};
pub use criterion::{CriterionTerms, set_criterion};
pub use dataset::{
    DetectionBatch, DetectionDataset, DetectionSample, detection_batch, samples_with,
};
pub use detector_dir::{DetectorDir, DetectorInfo};
pub use embedded::{EMBEDDED_PREPROCESS, embedded_config, embedded_dataset, load_or_pretrain};
pub use evaluate::{DETECTIONS_PER_IMAGE, detector_ap, top_k_detections};
pub use forget::{DetectionFamily, DetectorCriterion, DetectorObjective, run_forgetting};
pub use matching::{HungarianMatcher, Target, linear_sum_assignment};
pub use pretrain::{PretrainConfig, pretrain};
pub use synthetic::{SyntheticScenes, SyntheticScenesConfig};
