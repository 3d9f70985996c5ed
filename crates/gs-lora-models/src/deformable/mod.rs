//! Deformable DETR's building blocks (Zhu et al. 2021).

mod attention;
mod box_head;
mod checkpoint;
mod init;
mod layers;
mod model;
mod position;
mod queries;
mod sampling;
mod two_stage;

pub use attention::{DeformableAttentionConfig, MultiScaleDeformableAttention};
pub use box_head::BoxHead;
pub use checkpoint::DetrKeys;
pub use init::DetrInit;
pub use layers::{DecoderLayer, EncoderLayer, Ffn, LayerConfig, SelfAttention};
pub use model::{DeformableDetr, DeformableDetrConfig, DetrOutput, InputProjection, QuerySource};
pub use position::sine_position_embedding;
pub use queries::{LearnedQueries, Queries};
pub use sampling::{SpatialShapes, multi_scale_deformable_sampling};
pub use two_stage::ProposalHead;
