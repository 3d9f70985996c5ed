//! Deformable DETR's building blocks (Zhu et al. 2021).

mod attention;
mod checkpoint;
mod init;
mod layers;
mod model;
mod position;
mod sampling;
mod two_stage;

pub use attention::{DeformableAttentionConfig, MultiScaleDeformableAttention};
pub use checkpoint::DetrKeys;
pub use init::DetrInit;
pub use layers::{DecoderLayer, EncoderLayer, Ffn, LayerConfig, SelfAttention};
pub use model::{BoxHead, DeformableDetr, DeformableDetrConfig, DetrOutput, InputProjection};
pub use position::sine_position_embedding;
pub use sampling::{SpatialShapes, multi_scale_deformable_sampling};
pub use two_stage::{ProposalHead, Queries};
