//! Deformable DETR's building blocks (Zhu et al. 2021).

mod attention;
mod sampling;

pub use attention::{DeformableAttentionConfig, MultiScaleDeformableAttention};
pub use sampling::{SpatialShapes, multi_scale_deformable_sampling};
