//! Times multi-scale deformable sampling, forward and forward + backward, at Deformable DETR's
//! default sizes, the workload of `tools/torch_deform_sampling.py`:
//!
//! 8 heads of width 32, 4 levels, 4 points per level and head, the feature maps of an
//! 800×1088 input (strides 8 to 64: 100×136, 50×68, 25×34, 13×17), `--batch` images (2, as the
//! reference trains) and `--queries` queries (300, the decoder's cross-attention; the encoder's
//! self-attention has one query per token, 17 821). The backward computes the gradients of
//! `sum(output)` with respect to values, locations and weights.
//!
//! `--impl gather` (default) times [`multi_scale_deformable_sampling`]; `--impl grid-sample`
//! times the reference formulation with Burn's `grid_sample_2d` per level, for comparison.
//!
//! ```sh
//! cargo run --release --example bench_deform -- [--backend flex] [--batch 2] [--queries 300] [--reps 5] [--impl gather]
//! ```

use std::process::ExitCode;

use burn::tensor::ops::{GridSampleOptions, GridSamplePaddingMode, InterpolateMode};
use burn::tensor::{Device, Tensor, TensorData};
use gs_lora::cli::{CliError, Flags, compute_device, exit_code};
use gs_lora::models::deformable::{SpatialShapes, multi_scale_deformable_sampling};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: gs_lora::allocator::Allocator = gs_lora::allocator::Allocator;

mod common;
use common::{print_peak_rss, standard_normal, time};

const USAGE: &str = "usage: bench_deform [--backend B] [--fused on|off] [--batch 2] [--queries 300] [--reps 5] \
                     [--warmup 1] [--impl gather|grid-sample] [--seed 0]";

const SHAPES: [(usize, usize); 4] = [(100, 136), (50, 68), (25, 34), (13, 17)];
const HEADS: usize = 8;
const HEAD_DIM: usize = 32;
const POINTS: usize = 4;

/// The reference formulation: per level, `grid_sample_2d` (bilinear, zeros, align_corners
/// false) at `2 · location − 1`, weighted and summed. Same shapes as the library function.
fn grid_sample_reference(
    value: Tensor<4>,
    shapes: &SpatialShapes,
    locations: Tensor<6>,
    weights: Tensor<5>,
) -> Tensor<3> {
    let [n, _, m, dh] = value.dims();
    let [_, lq, _, levels, points, _] = locations.dims();
    let grids = locations.mul_scalar(2.0).sub_scalar(1.0);
    let options = GridSampleOptions::new(InterpolateMode::Bilinear)
        .with_padding_mode(GridSamplePaddingMode::Zeros)
        .with_align_corners(false);
    let mut start = 0;
    let sampled: Vec<Tensor<4>> = shapes
        .iter()
        .enumerate()
        .map(|(level, &(h, w))| {
            let level_value = value
                .clone()
                .narrow(1, start, h * w)
                .permute([0, 2, 3, 1])
                .reshape([n * m, dh, h, w]);
            start += h * w;
            let grid = grids
                .clone()
                .narrow(3, level, 1)
                .reshape([n, lq, m, points, 2])
                .swap_dims(1, 2)
                .reshape([n * m, lq, points, 2]);
            level_value.grid_sample_2d(grid, options.clone())
        })
        .collect();
    let attention = weights
        .swap_dims(1, 2)
        .reshape([n * m, 1, lq, levels * points]);
    Tensor::cat(sampled, 3)
        .mul(attention)
        .sum_dim(3)
        .reshape([n, m * dh, lq])
        .swap_dims(1, 2)
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device).require_grad()
}

fn run() -> Result<(), CliError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mut flags) = Flags::parse(&args, &[], USAGE)? else {
        return Ok(());
    };
    let device = compute_device(&mut flags)?.autodiff();
    let batch: usize = flags.number("batch", 2)?;
    let queries: usize = flags.number("queries", 300)?;
    let reps: usize = flags.number("reps", 5)?;
    let warmup: usize = flags.number("warmup", 1)?;
    let seed: u64 = flags.number("seed", 0)?;
    let reference = match flags.take("impl").as_deref() {
        None | Some("gather") => false,
        Some("grid-sample") => true,
        Some(other) => {
            return Err(CliError::Usage(format!(
                "unknown --impl `{other}`; expected gather or grid-sample\n\n{USAGE}"
            )));
        }
    };
    flags.finish()?;
    if batch == 0 || queries == 0 || reps == 0 {
        return Err(CliError::Usage(format!(
            "--batch, --queries and --reps must be at least 1\n\n{USAGE}"
        )));
    }

    let levels = SHAPES.len();
    let tokens: usize = SHAPES.iter().map(|(h, w)| h * w).sum();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let value_shape = [batch, tokens, HEADS, HEAD_DIM];
    let value = tensor(
        standard_normal(&mut rng, value_shape.iter().product()),
        value_shape,
        &device,
    );
    let location_shape = [batch, queries, HEADS, levels, POINTS, 2];
    let uniform = (0..location_shape.iter().product())
        .map(|_| rng.random::<f32>())
        .collect();
    let locations = tensor(uniform, location_shape, &device);
    let weight_shape = [batch, queries, HEADS, levels, POINTS];
    let weights = tensor(
        standard_normal(&mut rng, weight_shape.iter().product()),
        weight_shape,
        &device,
    );
    let weights = burn::tensor::activation::softmax(
        weights.reshape([batch, queries, HEADS, levels * POINTS]),
        3,
    )
    .reshape(weight_shape)
    .detach()
    .require_grad();

    let sample = |value: Tensor<4>, locations: Tensor<6>, weights: Tensor<5>| match reference {
        true => Ok(grid_sample_reference(value, &SHAPES, locations, weights)),
        false => multi_scale_deformable_sampling(value, &SHAPES, locations, weights),
    };
    time("deform_sampling_fwd_bwd", batch, (warmup, reps), || {
        let output: Tensor<3> = sample(value.clone(), locations.clone(), weights.clone())?;
        let grads = output.sum().backward();
        for grad in [
            value.grad(&grads).map(|g| g.sum()),
            locations.grad(&grads).map(|g| g.sum()),
            weights.grad(&grads).map(|g| g.sum()),
        ] {
            grad.map(|g| g.into_scalar::<f32>());
        }
        Ok(())
    })?;
    // Forward only, without autodiff, as PyTorch's `no_grad`.
    let (value, locations, weights) = (value.inner(), locations.inner(), weights.inner());
    time("deform_sampling_fwd", batch, (warmup, reps), || {
        let output: Tensor<3> = sample(value.clone(), locations.clone(), weights.clone())?;
        output.sum().into_scalar::<f32>();
        Ok(())
    })?;
    print_peak_rss();
    Ok(())
}

fn main() -> ExitCode {
    #[cfg(feature = "mimalloc")]
    gs_lora::allocator::keep_freed_memory();
    exit_code(run())
}
