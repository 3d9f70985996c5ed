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
use clap::Parser;
use gs_lora::cli::{CliError, DeviceArgs, clap_exit, exit_code};
use gs_lora::models::deformable::{SpatialShapes, multi_scale_deformable_sampling};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: gs_lora::allocator::Allocator = gs_lora::allocator::Allocator;

mod common;
use common::{print_peak_rss, standard_normal, time};

/// Times multi-scale deformable attention sampling, forward and backward.
#[derive(Debug, Parser)]
struct Cli {
    /// Images per batch.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Queries per image.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    queries: u32,
    /// Timed repetitions.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    reps: u32,
    /// Untimed repetitions first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Seed of the inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The library's gather kernel, or the grid-sample reference.
    #[arg(long = "impl", value_parser = ["gather", "grid-sample"], default_value = "gather")]
    implementation: String,
    #[command(flatten)]
    device: DeviceArgs,
}

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

fn run(cli: Cli) -> Result<(), CliError> {
    let device = cli.device.device()?.autodiff();
    let (batch, queries, reps) = (cli.batch as usize, cli.queries as usize, cli.reps as usize);
    let (warmup, seed) = (cli.warmup, cli.seed);
    let reference = cli.implementation == "grid-sample";

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
    match Cli::try_parse() {
        Ok(cli) => exit_code(run(cli)),
        Err(err) => clap_exit(&err),
    }
}
