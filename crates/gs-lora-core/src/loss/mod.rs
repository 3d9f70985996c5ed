//! The GS-LoRA losses: retention, bounded forgetting, and the GS-LoRA++ prototype loss.

mod classification;
mod prototype;

pub use classification::{cross_entropy, forget_loss, retain_loss};
pub use prototype::{
    PrototypeAccumulator, PrototypeLossConfig, Prototypes, prototype_kl, prototypes,
};
