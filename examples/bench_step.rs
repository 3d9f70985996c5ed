//! Times one GS-LoRA training step and one inference forward, the workload of
//! `../shared/bench/torch_gslora_step.py` (and `tools/torch_gslora_step.py`), so that the two
//! run side by side:
//!
//! ViT-S/16 at 224×224 (depth 12, width 384, 6 heads, FFN 1536), a 100-way head, everything
//! frozen except LoRA rank 8, alpha 1 on `fc1` and `fc2` of every block. One step forwards a
//! remaining and a forget batch (`--batch` images each), takes
//! `CE(remain) + 0.2 · relu(105 − CE(forget))`, backpropagates, steps AdamW (lr 1e-2, weight
//! decay 0.05) on the adapters and applies the group proximal step of `α = 1e-4 · Σ_blocks
//! ‖group‖₂`, exactly as `gs-lora forget` does (it calls the same [`GsLora::loss_of`],
//! [`GsLora::observe`] and [`GsLora::proximal_step`]; the PyTorch reference puts the penalty in
//! the loss, as the official code). Inference forwards one batch without autodiff.
//!
//! Prints `train_step batch=8 median_ms=… min_ms=… max_ms=…`, the same for `inference`, and the
//! process's peak resident memory.
//!
//! ```sh
//! cargo run --release --example bench_step -- [--backend flex] [--batch 8] [--reps 5] [--warmup 1]
//! ```

use std::process::ExitCode;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Parser;
use gs_lora::cli::{CliError, DeviceArgs, clap_exit, exit_code};
use gs_lora::core::{LoraConfig, LoraInit};
use gs_lora::models::VisionTransformer;
use gs_lora::models::vit::{GlobalPool, HeadKind, PosResample, VitConfig, VitFormat};
use gs_lora::models::weights::SeededInit;
use gs_lora::train::ForgetConfig;
use gs_lora::train::classification::Batch;
use gs_lora::train::classification::ClassifierObjective;
use gs_lora::train::engine::{Pair, adamw, gradients};
use gs_lora::train::method::GsLora;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: gs_lora::allocator::Allocator = gs_lora::allocator::Allocator;

mod common;
use common::{print_peak_rss, standard_normal, time};

/// Times one GS-LoRA training step and one inference forward of ViT-S/16 at 224 px.
#[derive(Debug, Parser)]
struct Cli {
    /// Images per batch (the remaining and the forget batch each).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Timed repetitions.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    reps: u32,
    /// Untimed repetitions first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Seed of the weights and the batches.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// One figure alone, for profiling it.
    #[arg(long, value_parser = ["train_step", "inference"])]
    only: Option<String>,
    #[command(flatten)]
    device: DeviceArgs,
}

const CLASSES: usize = 100;
const IMAGE_SIZE: usize = 224;

/// timm `vit_small_patch16_224` with a 100-way head.
fn vit_small() -> VitConfig {
    VitConfig {
        format: VitFormat::Timm,
        image_size: IMAGE_SIZE,
        patch_size: 16,
        num_channels: 3,
        hidden_size: 384,
        depth: 12,
        num_heads: 6,
        mlp_hidden: 1536,
        qkv_bias: true,
        layer_norm_eps: 1e-6,
        class_token: true,
        global_pool: GlobalPool::Token,
        layer_scale: false,
        num_classes: Some(CLASSES),
        pos_resample: PosResample::BicubicAntialias,
        attention_scale: None,
        head: HeadKind::Linear,
        dropout: 0.0,
    }
}

/// A batch of standard-normal images with uniform labels, drawn from `rng`.
fn random_batch(batch: usize, rng: &mut ChaCha8Rng, device: &Device) -> Batch {
    let len = batch * 3 * IMAGE_SIZE * IMAGE_SIZE;
    let pixels = standard_normal(rng, len);
    let labels: Vec<usize> = (0..batch).map(|_| rng.random_range(0..CLASSES)).collect();
    let data = TensorData::new(pixels, [batch, 3, IMAGE_SIZE, IMAGE_SIZE]);
    let targets = labels.iter().map(|&l| l as i64).collect::<Vec<_>>();
    Batch {
        images: Tensor::from_data(data, device),
        targets: Tensor::<1, Int>::from_data(TensorData::new(targets, [batch]), device),
        labels,
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let device = cli.device.device()?.autodiff();
    let (batch, reps, warmup, seed) = (cli.batch as usize, cli.reps as usize, cli.warmup, cli.seed);
    let wanted = |name: &str| cli.only.as_deref().is_none_or(|only| only == name);

    let lora = LoraConfig::new()
        .with_rank(8)
        .with_lora_alpha(1.0)
        .with_init(LoraInit::first_task());
    let mut model = VisionTransformer::load(
        &vit_small(),
        &mut SeededInit::new(seed),
        &lora,
        seed,
        &device,
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let retain = random_batch(batch, &mut rng, &device);
    let forget = random_batch(batch, &mut rng, &device);
    // β 0.2, BND 105, α 1e-4: the first task's weights.
    let mut method = GsLora::new(&ForgetConfig::default());
    let mut optimizer = adamw(0.05);

    if wanted("train_step") {
        time("train_step", batch, (warmup, reps), || {
            let batches = Pair {
                retain: retain.clone(),
                forget: forget.clone(),
            };
            // The training loop's step (`engine::task::train_task`): loss, gradients, the
            // proximal step's second moments, AdamW, the proximal step.
            let terms = method.loss_of(&ClassifierObjective::default(), &model, batches, 0)?;
            let grads = gradients(&model, terms.total, &method.trainable_ids(&model));
            method.observe(&model, &grads)?;
            model = optimizer.step(1e-2, model.clone(), grads);
            method.proximal_step(&mut model, 1e-2, 0)?;
            Ok(())
        })?;
    }
    let plain = device.clone().without_autodiff();
    let images = retain.images.clone().inner().to_device(&plain);
    if wanted("inference") {
        time("inference", batch, (warmup, reps), || {
            let logits = model.valid().forward(images.clone())?.logits;
            if let Some(logits) = logits {
                logits.sum().into_scalar::<f32>();
            }
            Ok(())
        })?;
    }
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
