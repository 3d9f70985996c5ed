//! Forgetting methods: each decides which parameters train, the loss of a step, what follows
//! each optimiser step and what ends a task ([`Method`](crate::engine::Method)).
//!
//! - [`GsLora`]: GS-LoRA, GS-LoRA++ and LoRA without the group lasso (adapters);
//! - [`FullModel`]: fine-tuning, NegGrad+, random labelling, SalUn, Retrain from scratch and
//!   by fine-tuning;
//! - [`Anchored`]: L2, EWC, MAS;
//! - [`Distilled`]: LwF, DER, DER++, FDR, and LIRF on the lower half ([`lirf`]);
//! - [`Scrub`]: SCRUB, SCRUB-S.

mod anchored;
pub mod anchors;
pub mod distilled;
mod full_model;
mod gs_lora;
pub mod lirf;
pub mod relabel;
pub mod scratch;
pub mod scrub;

pub use anchored::Anchored;
pub use distilled::Distilled;
pub use full_model::FullModel;
pub use gs_lora::GsLora;
pub use scrub::Scrub;

use crate::config::{ForgetConfig, MethodKind};
use crate::engine::{Family, Method};

/// The method `config.method` with the weights of `config`.
pub fn method_for<F: Family>(config: &ForgetConfig) -> Box<dyn Method<F>>
where
    F::Model: 'static,
{
    let method = config.method;
    if method.trains_adapters() {
        Box::new(GsLora::new(config))
    } else if method.anchors() {
        Box::new(Anchored::new(config))
    } else if matches!(method, MethodKind::Scrub | MethodKind::ScrubS) {
        Box::new(Scrub::<F::Model>::new(config))
    } else if method.distils() {
        Box::new(Distilled::<F::Model>::new(config))
    } else {
        Box::new(FullModel::new(config))
    }
}
