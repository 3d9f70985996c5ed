//! Deformable DETR's building blocks (Zhu et al. 2021).

mod sampling;

pub use sampling::{SpatialShapes, multi_scale_deformable_sampling};
