//! Detection pieces of forgetting object classes: box overlaps, COCO annotations, the
//! Hungarian matcher of (Deformable) DETR, and COCO-style average precision per group of classes.

mod average_precision;
mod boxes;
mod coco;
mod matching;

pub use average_precision::{ApSummary, Detection, GroundTruth, average_precision};
pub use boxes::{Corners, CxCyWh, corners, generalized_iou, iou};
pub use coco::{CocoAnnotations, CocoImage};
pub use matching::{HungarianMatcher, Target, linear_sum_assignment};
