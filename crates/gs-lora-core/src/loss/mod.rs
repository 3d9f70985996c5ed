//! The GS-LoRA losses: retention, bounded forgetting, and the GS-LoRA++ prototype loss, for
//! classifiers and (the set-prediction losses of Deformable DETR) for detectors.

mod classification;
mod detection;
mod prototype;

pub use classification::{
    cross_entropy, forget_loss, forget_loss_log_odds, forget_loss_per_sample,
    forget_loss_unlikelihood, retain_loss,
};
pub use detection::{
    FOCAL_ALPHA, FOCAL_GAMMA, box_l1_loss, detection_forget_loss, detection_loss, giou_loss,
    sigmoid_focal_loss,
};
pub use prototype::{
    PrototypeAccumulator, PrototypeLossConfig, Prototypes, prototype_kl, prototypes,
};
