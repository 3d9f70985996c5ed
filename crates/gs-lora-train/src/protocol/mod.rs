//! What the official experiments do, reproduced where a number depends on it: their class
//! orders and the random streams behind them.

mod class_order;
mod rng;

pub use class_order::ClassOrder;
pub use rng::{NumpyRandomState, PythonRandom};
