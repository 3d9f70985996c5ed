//! `values.select(0, rows)` with a backward that is parallel and deterministic on GPUs.
//!
//! Burn differentiates `select` with `select_assign(…, Add)`. The cubecl backends (wgpu, CUDA)
//! run that with one thread per column, each looping over every index: the gradient of the
//! deformable sampling's gather (307 200 rows of 32: 76 800 points × 4 corners, the benchmark's
//! sizes) took 96× PyTorch's time on an H200
//! (`docs/benchmarks.md`). Atomic adds (Burn's `scatter`) would be parallel, but add in a
//! different order on every run.
//!
//! Here the backward reads the row indices to the host once, groups the contributions of each
//! row in index order (a stable counting sort) and adds them by a fixed tree: each level gathers
//! the rows that still have more than one term in chunks of [`FAN_IN`] and sums each chunk,
//! until every row has one term, which a last gather puts in place. Every kernel is a parallel
//! gather, copy or reduction over [`FAN_IN`] rows, and which terms are added together depends
//! on the indices alone (as everywhere on cubecl, the reduction's kernel is the one its
//! autotuning picked on that device).

use burn::tensor::{Int, Tensor};

/// How many rows each level of the backward's tree adds at once.
#[cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]
const FAN_IN: usize = 4;

/// `values.select(0, rows)`: row `k` of the output is row `rows[k]` of `values`.
///
/// On the cubecl backends (wgpu, CUDA) under autodiff the gradient of `values` is summed as this
/// module describes; elsewhere this is Burn's `select`, whose serial backward is fast on a CPU
/// (and keeps the CPU runs' floating-point order).
///
/// - `values`: `[n_rows, d]`; `rows`: `[n]`, each in `0..n_rows`
/// - returns `[n, d]`
pub fn select_rows(values: Tensor<2>, rows: Tensor<1, Int>) -> Tensor<2> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if matches!(
        values.device().inner().as_dispatch(),
        burn::backend::DispatchDevice::Cube(_)
    ) {
        return planned::select_rows(values, rows);
    }
    values.select(0, rows)
}

/// The fixed order in which the backward adds each row's contributions.
#[cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]
#[derive(Debug, Clone, PartialEq)]
struct SumPlan {
    /// Per level, the rows to gather, `FAN_IN` per chunk, from the previous level's rows
    /// (level 0: the incoming gradient's), where the index one past them reads a zero row.
    /// A level's rows are its chunks' sums.
    levels: Vec<Vec<i64>>,
    /// Per output row, its sum's row in the pool of the gradient's rows, then each level's
    /// rows, then a zero row (for rows nothing was gathered from).
    output: Vec<i64>,
}

#[cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]
impl SumPlan {
    /// The plan for the gradient of `select(0, rows)` on a tensor of `n_rows` rows. Indices
    /// outside `0..n_rows` contribute nothing (the cubecl backends clamp such reads).
    fn new(rows: &[i64], n_rows: usize) -> Self {
        let row_of = |k: usize| usize::try_from(rows[k]).ok().filter(|&r| r < n_rows);
        // Stable counting sort: the contributions of each row, in index order.
        let mut offsets = vec![0usize; n_rows + 1];
        for k in 0..rows.len() {
            if let Some(r) = row_of(k) {
                offsets[r + 1] += 1;
            }
        }
        for r in 0..n_rows {
            offsets[r + 1] += offsets[r];
        }
        let mut items = vec![0i64; offsets[n_rows]];
        let mut next = offsets.clone();
        for k in 0..rows.len() {
            if let Some(r) = row_of(k) {
                items[next[r]] = k as i64;
                next[r] += 1;
            }
        }
        // Each row still to sum, with its run of `items` (rows of the current level).
        let mut pending: Vec<(usize, std::ops::Range<usize>)> = (0..n_rows)
            .filter(|&r| offsets[r + 1] > offsets[r])
            .map(|r| (r, offsets[r]..offsets[r + 1]))
            .collect();
        let mut output = vec![None; n_rows];
        // Where the current level's rows start in the pool, and how many there are.
        let (mut level_start, mut level_len) = (0, rows.len());
        let mut levels = Vec::new();
        loop {
            let (mut table, mut sums, mut unfinished) = (Vec::new(), Vec::new(), Vec::new());
            for (row, run) in pending {
                if run.len() == 1 {
                    output[row] = Some(level_start + items[run.start] as usize);
                    continue;
                }
                let first = sums.len();
                for chunk in items[run].chunks(FAN_IN) {
                    sums.push((table.len() / FAN_IN) as i64);
                    table.extend_from_slice(chunk);
                    table.resize(table.len() + FAN_IN - chunk.len(), level_len as i64);
                }
                unfinished.push((row, first..sums.len()));
            }
            if unfinished.is_empty() {
                break;
            }
            level_start += level_len;
            level_len = sums.len();
            levels.push(table);
            items = sums;
            pending = unfinished;
        }
        let zero = level_start + level_len;
        let output = output
            .into_iter()
            .map(|r| r.unwrap_or(zero) as i64)
            .collect();
        Self { levels, output }
    }
}

// Only the cubecl backends route here; the tests run it on Flex.
#[cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]
#[cfg_attr(not(any(feature = "wgpu", feature = "cuda", test)), allow(dead_code))]
mod planned {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn::backend::tensor::{FloatTensor, IntTensor};
    use burn::backend::{Autodiff, Backend, TensorMetadata, backend_extension};
    use burn::tensor::{IndexingUpdateOp, Int, Shape, Tensor, TensorData, try_read_sync};

    use super::{FAN_IN, SumPlan};

    /// [`super::select_rows`] as one autodiff node with the planned backward.
    #[backend_extension(
        Flex: cfg(feature = "flex"),
        Cube: cfg(any(feature = "wgpu", feature = "cuda")),
        Autodiff
    )]
    pub trait SelectRowsOps: Backend {
        /// `values.select(0, rows)`.
        fn planned_select_rows(
            values: FloatTensor<Self>,
            rows: IntTensor<Self>,
        ) -> FloatTensor<Self> {
            Self::float_select(values, 0, rows)
        }
    }

    #[cfg(feature = "flex")]
    impl SelectRowsOps for burn::backend::Flex {}

    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    impl SelectRowsOps for burn::backend::Cube {}

    impl<B: Backend, C: CheckpointStrategy> SelectRowsOps for Autodiff<B, C> {
        fn planned_select_rows(values: FloatTensor<Self>, rows: IntTensor<B>) -> FloatTensor<Self> {
            match SelectRowsBackward
                .prepare::<C>([values.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let values = values.into_primitive();
                    let n_rows = values.shape()[0];
                    prep.finish((rows.clone(), n_rows), B::float_select(values, 0, rows))
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::float_select(values.into_primitive(), 0, rows))
                }
            }
        }
    }

    #[derive(Debug)]
    struct SelectRowsBackward;

    impl<B: Backend> Backward<B, 1> for SelectRowsBackward {
        type State = (IntTensor<B>, usize);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (rows, n_rows) = ops.state;
            unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                scatter_add_rows::<B>(grad, rows, n_rows)
            });
        }
    }

    /// `zeros([n_rows, d]).select_assign(0, rows, grad, Add)`, summed in the plan's order.
    /// Where the backend cannot read the indices synchronously it falls back to Burn's op.
    fn scatter_add_rows<B: Backend>(
        grad: FloatTensor<B>,
        rows: IntTensor<B>,
        n_rows: usize,
    ) -> FloatTensor<B> {
        let device = grad.device();
        let (dtype, index_dtype) = (grad.dtype(), rows.dtype());
        let width = grad.shape()[1];
        let indices = match try_read_sync(B::int_into_data(rows.clone())) {
            Some(Ok(data)) => data.convert::<i64>().try_into_vec::<i64>().ok(),
            _ => None,
        };
        let Some(indices) = indices else {
            let zeros = B::float_zeros([n_rows, width].into(), &device, dtype.into());
            return B::float_select_assign(zeros, 0, rows, grad, IndexingUpdateOp::Add);
        };
        let plan = SumPlan::new(&indices, n_rows);
        let index = |table: Vec<i64>| {
            let len = table.len();
            B::int_from_data(
                TensorData::new(table, [len]).convert_dtype(index_dtype),
                &device,
            )
        };
        let zero_row = || B::float_zeros([1, width].into(), &device, dtype.into());
        let mut pool = vec![grad.clone()];
        let mut previous = grad;
        for table in plan.levels {
            let chunks = table.len() / FAN_IN;
            let rows = B::float_cat(vec![previous, zero_row()], 0);
            let gathered = B::float_select(rows, 0, index(table));
            let gathered = B::float_reshape(gathered, Shape::new([chunks, FAN_IN, width]));
            previous = B::float_reshape(B::float_sum_dim(gathered, 1), Shape::new([chunks, width]));
            pool.push(previous.clone());
        }
        pool.push(zero_row());
        B::float_select(B::float_cat(pool, 0), 0, index(plan.output))
    }

    /// [`super::select_rows`] through the extension, on any backend it is routed for.
    pub(super) fn select_rows(values: Tensor<2>, rows: Tensor<1, Int>) -> Tensor<2> {
        use burn::backend::Dispatch;
        Tensor::from_dispatch(<Dispatch as SelectRowsOps>::planned_select_rows(
            values.into_dispatch(),
            rows.into_dispatch(),
        ))
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, Int, Tensor, TensorData, Tolerance};

    use super::{FAN_IN, SumPlan, planned};

    #[test]
    fn the_plan_adds_each_rows_contributions_in_index_order() {
        assert_eq!(FAN_IN, 4, "the tables below are written for chunks of 4");
        // Row 0 gets k = 1, 3, 4, 5, 6 (five: two chunks, then one sum of two), row 2 gets
        // k = 0, row 1 nothing; k = 2 is out of range. The gradient has 7 rows: the zero row is 7.
        let plan = SumPlan::new(&[2, 0, 7, 0, 0, 0, 0], 3);
        assert_eq!(
            plan.levels,
            vec![
                // Level 0: row 0's chunks [1 3 4 5] and [6 z z z]; row 2's one gradient row
                // needs no sum.
                vec![1, 3, 4, 5, 6, 7, 7, 7],
                // Level 1 (zero row 2): row 0's two chunk sums.
                vec![0, 1, 2, 2],
            ]
        );
        // The pool: 7 gradient rows, 2 level-1 sums, 1 level-2 sum, the zero row (10). Row 0
        // is the level-2 sum, row 1 reads the zero row, row 2 gradient row 0.
        assert_eq!(plan.output, vec![9, 10, 0]);
    }

    #[test]
    fn single_contributions_need_no_level() {
        let plan = SumPlan::new(&[1, 0], 3);
        assert!(plan.levels.is_empty());
        assert_eq!(plan.output, vec![1, 0, 2]);
    }

    fn rows(indices: &[i64], device: &Device) -> Tensor<1, Int> {
        Tensor::from_data(TensorData::new(indices.to_vec(), [indices.len()]), device)
    }

    #[test]
    fn forward_and_gradient_match_a_hand_computation() {
        let device = Device::flex().autodiff();
        let values =
            Tensor::<2>::from_data([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], &device).require_grad();
        let output = planned::select_rows(values.clone(), rows(&[2, 0, 2, 2, 0, 2, 2], &device));
        output.clone().inner().into_data().assert_eq(
            &TensorData::from([
                [5.0, 6.0],
                [1.0, 2.0],
                [5.0, 6.0],
                [5.0, 6.0],
                [1.0, 2.0],
                [5.0, 6.0],
                [5.0, 6.0],
            ]),
            false,
        );
        // Output row k weighted by (k + 1, 10·(k + 1)): row 0 gets k = 1, 4 (2 + 5 = 7), row 1
        // nothing, row 2 gets k = 0, 2, 3, 5, 6 (1 + 3 + 4 + 6 + 7 = 21).
        let weights = Tensor::<2>::from_data(
            TensorData::new(
                (1..=7).flat_map(|k| [k as f32, 10.0 * k as f32]).collect(),
                [7, 2],
            ),
            &device,
        );
        let grads = (output * weights).sum().backward();
        values
            .grad(&grads)
            .expect("values has a gradient")
            .into_data()
            .assert_eq(
                &TensorData::from([[7.0, 70.0], [0.0, 0.0], [21.0, 210.0]]),
                false,
            );
    }

    #[test]
    fn gradient_matches_burns_select_on_many_rows() {
        let device = Device::flex().autodiff();
        let (n_rows, n, width) = (50, 3000, 8);
        // Skewed indices: row 0 is hit by every third sample (as points outside a feature level
        // are in the deformable sampling), the rest spread over all rows.
        let indices: Vec<i64> = (0..n as i64)
            .map(|k| {
                if k % 3 == 0 {
                    0
                } else {
                    (k * 7919) % n_rows as i64
                }
            })
            .collect();
        let values = Tensor::<2>::random(
            [n_rows, width],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let weights = Tensor::<2>::random(
            [n, width],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let gradient = |planned_path: bool| {
            let values = values.clone().detach().require_grad();
            let index = rows(&indices, &device);
            let output = if planned_path {
                planned::select_rows(values.clone(), index)
            } else {
                values.clone().select(0, index)
            };
            let grads = (output * weights.clone()).sum().backward();
            values
                .grad(&grads)
                .expect("values has a gradient")
                .into_data()
        };
        gradient(true).assert_approx_eq::<f32>(&gradient(false), Tolerance::absolute(1e-4));
    }
}
