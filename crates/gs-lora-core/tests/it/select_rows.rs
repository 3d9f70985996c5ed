//! `select_rows` on the test device against host arithmetic: on wgpu this is the planned
//! backward (every kernel a gather or a sum), on Flex Burn's `select`.

use crate::common::*;
use burn::tensor::{Int, Tensor, TensorData};
use gs_lora_core::select_rows;

/// 2000 gathered rows of 8 from 40, with one hot row (every third index reads row 0, as the
/// deformable sampling's points outside a level all read row 0), and the weights of each
/// gathered row in the loss `Σ select_rows(values, rows) ⊙ weights`.
struct Case {
    values: Vec<f32>,
    rows: Vec<i64>,
    weights: Vec<f32>,
}

const N_ROWS: usize = 40;
const N: usize = 2000;
const WIDTH: usize = 8;

impl Case {
    fn new(seed: u64) -> Self {
        Self {
            values: random_values(N_ROWS * WIDTH, seed),
            rows: (0..N as i64)
                .map(|k| {
                    if k % 3 == 0 {
                        0
                    } else {
                        (k * 7919) % N_ROWS as i64
                    }
                })
                .collect(),
            weights: random_values(N * WIDTH, seed + 1),
        }
    }

    /// The output and the gradient of the loss w.r.t. `values`, on the test device.
    fn run(&self) -> (Vec<f64>, Vec<f64>) {
        let device = device().autodiff();
        let values = Tensor::<2>::from_data(
            TensorData::new(self.values.clone(), [N_ROWS, WIDTH]),
            &device,
        )
        .require_grad();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(self.rows.clone(), [N]), &device);
        let weights =
            Tensor::<2>::from_data(TensorData::new(self.weights.clone(), [N, WIDTH]), &device);
        let output = select_rows(values.clone(), rows);
        let grads = (output.clone() * weights).sum().backward();
        let gradient = values.grad(&grads).expect("values has a gradient");
        (self::values(output.inner()), self::values(gradient))
    }
}

#[test]
fn select_rows_gathers_rows_and_sums_their_gradients() {
    let case = Case::new(1);
    let (output, gradient) = case.run();

    let mut expected_output = Vec::with_capacity(N * WIDTH);
    let mut expected_gradient = vec![0.0f64; N_ROWS * WIDTH];
    for (k, &row) in case.rows.iter().enumerate() {
        let row = row as usize;
        for d in 0..WIDTH {
            expected_output.push(f64::from(case.values[row * WIDTH + d]));
            expected_gradient[row * WIDTH + d] += f64::from(case.weights[k * WIDTH + d]);
        }
    }
    assert_eq!(output, expected_output);
    // Row 0 sums 667 terms in f32.
    assert_close(&gradient, &expected_gradient, 1e-4);
}

#[test]
fn select_rows_gradient_is_the_same_on_every_run() {
    let case = Case::new(3);
    let first = case.run().1;
    for _ in 0..3 {
        assert_eq!(case.run().1, first);
    }
}
