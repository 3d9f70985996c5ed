//! Forgetting methods: each decides which parameters train, the loss of a step, what follows
//! each optimiser step and what ends a task ([`Method`](crate::engine::Method)).

mod full_model;
mod gs_lora;

pub use full_model::FullModel;
pub use gs_lora::GsLora;

use crate::config::ForgetConfig;
use crate::engine::{Family, Method};

/// The method `config.method` with the weights of `config`.
pub fn method_for<F: Family>(config: &ForgetConfig) -> Box<dyn Method<F>> {
    match config.method.trains_adapters() {
        true => Box::new(GsLora::new(config)),
        false => Box::new(FullModel::new(config)),
    }
}
