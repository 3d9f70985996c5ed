//! Dropout: active only while training, inverted scaling, the mask's rate, seeded repeats, its
//! gradient, bad rates. The only test of this binary that draws from the backend's random
//! stream, so no other test moves it between a seed and a draw.

use crate::common::*;
use burn::tensor::{Tensor, TensorData};
use gs_lora_core::{CoreError, check_dropout, dropout, seed_dropout};

/// Off an autodiff device (evaluation, `model.valid()`) and at rate 0 dropout is the identity;
/// on one it zeroes about `p` of the entries, scales the rest by exactly `1/(1 − p)`, repeats
/// its mask for a repeated seed and not for another, and passes the gradient through the kept
/// entries only, with the same scale. Catches dropout left on at evaluation, a missing or
/// inverted scale, the keep rate used as the drop rate, and an unseeded mask.
#[test]
fn dropout_zeroes_a_share_p_while_training_and_nothing_at_evaluation() {
    let (n, p) = (20_000, 0.3);
    let x_values: Vec<f64> = (0..n).map(|i| 1.0 + (i % 7) as f64).collect();
    let input = |device| {
        Tensor::<1>::from_data(
            TensorData::new(x_values.iter().map(|v| *v as f32).collect(), [n]),
            device,
        )
    };
    let plain = device();
    assert_eq!(values(dropout(input(&plain), p)), x_values, "evaluation");

    let autodiff = plain.clone().autodiff();
    let x = input(&autodiff).require_grad();
    assert_eq!(values(dropout(x.clone(), 0.0)), x_values, "rate 0");

    let devices = [autodiff.clone()];
    seed_dropout(&devices, 7);
    let first = dropout(x.clone(), p);
    seed_dropout(&devices, 7);
    let again = values(dropout(x.clone(), p));
    seed_dropout(&devices, 8);
    let other = values(dropout(x.clone(), p));
    let found = values(first.clone());
    assert_eq!(found, again, "same seed, same mask");
    assert_ne!(found, other, "another seed, another mask");

    let dropped = found.iter().filter(|v| **v == 0.0).count() as f64 / n as f64;
    // Binomial(20000, 0.3): standard deviation 0.0032 of the share.
    assert!((dropped - p).abs() < 0.015, "dropped share {dropped}");
    for (out, x) in found.iter().zip(&x_values) {
        if *out != 0.0 {
            assert!(
                (out - x / (1.0 - p)).abs() <= 1e-5 * out.abs(),
                "{out} from {x}"
            );
        }
    }

    let gradients = first.sum().backward();
    let grad = values(x.grad(&gradients).expect("gradient"));
    for (g, out) in grad.iter().zip(&found) {
        let expected = if *out == 0.0 { 0.0 } else { 1.0 / (1.0 - p) };
        assert!(
            (g - expected).abs() < 1e-5,
            "gradient {g}, expected {expected}"
        );
    }
}

#[test]
fn rates_outside_zero_to_one_are_refused() {
    assert_eq!(check_dropout("dropout", 0.1), Ok(0.1));
    assert_eq!(check_dropout("dropout", 0.0), Ok(0.0));
    for bad in [1.0, -0.1, f64::NAN, 2.0] {
        let err = check_dropout("dropout", bad).expect_err("refused");
        assert!(
            matches!(
                err,
                CoreError::OutOfRange {
                    name: "dropout",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("[0, 1)"), "{err}");
    }
}
