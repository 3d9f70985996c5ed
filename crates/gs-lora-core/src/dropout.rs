//! Dropout while training, drawn from the backend's seeded random stream.
//!
//! Training runs on an autodiff device and evaluation on `model.valid()` (the official code's
//! `train()` and `eval()`), so dropout is active exactly when the tensor's device is autodiff,
//! the rule Burn's own `Dropout` follows. The masks come from the backend's random stream,
//! which the training loops seed per epoch ([`seed_dropout`]), so a run repeats bit for bit.

use burn::tensor::{Device, Distribution, Tensor};

use crate::error::{CoreError, Result};

/// Inverted dropout: each entry is zeroed with probability `prob` and the others are scaled by
/// `1/(1 − prob)`, so the expectation is unchanged; the identity off an autodiff device or when
/// `prob` is 0.
///
/// - `x`: any shape; the output has the same.
///
/// # Panics
/// If `prob` is not in `[0, 1)`; configs refuse such rates with [`check_dropout`] first.
pub fn dropout<const D: usize>(x: Tensor<D>, prob: f64) -> Tensor<D> {
    assert!(
        (0.0..1.0).contains(&prob),
        "dropout: expected a probability in [0, 1), found {prob}"
    );
    if prob == 0.0 || !x.device().is_autodiff() {
        return x;
    }
    let keep = 1.0 - prob;
    let mask = x
        .random_like(Distribution::Bernoulli(keep))
        .div_scalar(keep);
    x * mask
}

/// Checks a dropout rate named `name` read from a config or a flag.
///
/// # Errors
/// [`CoreError::OutOfRange`] when `prob` is not a number in `[0, 1)`.
pub fn check_dropout(name: &'static str, prob: f64) -> Result<f64> {
    if (0.0..1.0).contains(&prob) {
        Ok(prob)
    } else {
        Err(CoreError::OutOfRange {
            name,
            expected: "a probability in [0, 1)",
            value: prob,
        })
    }
}

/// Seeds the random stream dropout draws from on every device in `devices` (Burn's backends
/// keep one stream per backend, not per model).
pub fn seed_dropout(devices: &[Device], seed: u64) {
    for device in devices {
        device.seed(seed);
    }
}
