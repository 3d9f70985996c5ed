//! What the official experiments do, reproduced where a number depends on it: their class
//! orders and the random streams behind them, and their settings as presets.

mod class_order;
mod preset;
mod rng;

pub use class_order::ClassOrder;
pub use preset::{PRESETS, Preset};
pub use rng::{NumpyRandomState, PythonRandom};
