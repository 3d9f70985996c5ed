//! Forgetting methods: each decides which parameters train, the loss of a step, what follows
//! each optimiser step and what ends a task ([`Method`](crate::engine::Method)).

mod gs_lora;

pub use gs_lora::GsLora;
