//! `select_rows` on the test device against host arithmetic: on wgpu this is the planned
//! backward (every kernel a gather or a sum), on Flex Burn's `select`.

use crate::common::*;
use burn::tensor::{Int, Tensor, TensorData};
use gs_lora_core::select_rows;

/// Indices with one hot row, as the deformable sampling's points outside a level all read row 0.
fn skewed_rows(n: usize, n_rows: usize) -> Vec<i64> {
    (0..n as i64)
        .map(|k| {
            if k % 3 == 0 {
                0
            } else {
                (k * 7919) % n_rows as i64
            }
        })
        .collect()
}

/// The output and the gradient of `Σ select_rows(values, rows) ⊙ weights` w.r.t. `values`.
fn run(values: &[f32], rows: &[i64], weights: &[f32], width: usize) -> (Vec<f64>, Vec<f64>) {
    let device = device().autodiff();
    let values = Tensor::<2>::from_data(
        TensorData::new(values.to_vec(), [values.len() / width, width]),
        &device,
    )
    .require_grad();
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows.to_vec(), [rows.len()]), &device);
    let weights = Tensor::<2>::from_data(
        TensorData::new(weights.to_vec(), [weights.len() / width, width]),
        &device,
    );
    let output = select_rows(values.clone(), rows);
    let grads = (output.clone() * weights).sum().backward();
    let gradient = values.grad(&grads).expect("values has a gradient");
    (self::values(output.inner()), self::values(gradient))
}

#[test]
fn select_rows_gathers_rows_and_sums_their_gradients() {
    let (n_rows, n, width) = (40, 2000, 8);
    let values = random_values(n_rows * width, 1);
    let weights = random_values(n * width, 2);
    let rows = skewed_rows(n, n_rows);
    let (output, gradient) = run(&values, &rows, &weights, width);

    let mut expected_output = Vec::with_capacity(n * width);
    let mut expected_gradient = vec![0.0f64; n_rows * width];
    for (k, &row) in rows.iter().enumerate() {
        let row = row as usize;
        for d in 0..width {
            expected_output.push(f64::from(values[row * width + d]));
            expected_gradient[row * width + d] += f64::from(weights[k * width + d]);
        }
    }
    assert_eq!(output, expected_output);
    // Row 0 sums 667 terms in f32.
    assert_close(&gradient, &expected_gradient, 1e-4);
}

#[test]
fn select_rows_gradient_is_the_same_on_every_run() {
    let (n_rows, n, width) = (40, 2000, 8);
    let values = random_values(n_rows * width, 3);
    let weights = random_values(n * width, 4);
    let rows = skewed_rows(n, n_rows);
    let first = run(&values, &rows, &weights, width).1;
    for _ in 0..3 {
        assert_eq!(run(&values, &rows, &weights, width).1, first);
    }
}
