//! The main job: continual forgetting with GS-LoRA.
//!
//! With no arguments it runs on the embedded default: a generated dataset of 60 fine-grained
//! classes and a small ViT pretrained on it (on first use, then cached), then four tasks that
//! each erase 10 classes, and prints the results table.
//!
//! With `--data PATH/CUB_200_2011 --weights MODEL.safetensors [--model-config CONFIG.json]` it runs
//! the paper's CUB-200 setting: the first 100 classes, a linear-probed head on the pretrained
//! backbone (cached), then 100-20 / 80-20 / 60-20 / 40-20 with the reference hyper-parameters.
//!
//! Result files go to `--out` (default `runs/forget_cub`); running again with the same `--out`
//! resumes. Every flag of `gs-lora forget` is accepted. With `--methods` (and `--seeds`) it
//! compares methods instead, as `gs-lora compare` (OUT/METHOD/seed-S, OUT/comparison.md; on
//! the embedded default each seed draws its own data and pretrained model).
//!
//! ```sh
//! cargo run --release --example forget_cub
//! cargo run --release --example forget_cub -- --methods gs-lora,lora,salun --out runs/compare
//! # the few-shot loop; its targets hold on real data, not on this small model (docs/results.md)
//! cargo run --release --example forget_cub -- --method gs-lora++ --few-shot 4 --out runs/fs
//! cargo run --release --example forget_cub -- --data CUB_200_2011 --weights vit-b16/model.safetensors
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::tensor::Device;
use clap::Parser;
use gs_lora::cli::{
    CliError, CompareArgs, DataArgs, DeviceArgs, ForgetArgs, clap_exit, exit_code,
    forget_defaults_help, forget_load_options, open_dataset,
};
use gs_lora::core::{GroupLassoConfig, LoraConfig};
use gs_lora::models::VisionTransformer;
use gs_lora::models::weights::CheckpointFiles;
use gs_lora::train::classification::PretrainConfig;
use gs_lora::train::classification::data::{Dataset, LoadOptions};
use gs_lora::train::classification::{ClassifierDir, ClassifierInfo, run_forgetting};
use gs_lora::train::classification::{EMBEDDED_PREPROCESS, embedded_dataset, load_or_pretrain};
use gs_lora::train::classification::{
    ProbeConfig, checkpoint_preprocess, linear_probe, load_backbone,
};
use gs_lora::train::compare::{compare, official_full_model_lr};
use gs_lora::train::image::Preprocess;
use gs_lora::train::io::ensure_disjoint;
use gs_lora::train::report::{ComparisonRow, comparison_table, results_table};
use gs_lora::train::{ForgetConfig, Replay, RunDir};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: gs_lora::allocator::Allocator = gs_lora::allocator::Allocator;

/// The main job: continual forgetting with GS-LoRA on the embedded default, or on CUB-200 with
/// --data and --weights.
#[derive(Debug, Parser)]
#[command(after_long_help = forget_defaults_help(&embedded_defaults()))]
struct Cli {
    /// The run directory (results, curves, plots, checkpoints; the cached pretrained model).
    #[arg(long, value_name = "DIR", default_value = "runs/forget_cub")]
    out: PathBuf,
    /// CUB_200_2011: the paper's setting on its first 100 classes.
    #[arg(long, value_name = "CUB_200_2011", requires = "weights")]
    data: Option<PathBuf>,
    /// The pretrained backbone for CUB: a weights file, a model folder or a Hugging Face repo
    /// id (owner/name[@revision]) in the local cache.
    #[arg(long, value_name = "MODEL", requires = "data")]
    weights: Option<PathBuf>,
    /// The checkpoint's config.json (default: the one found with the weights).
    #[arg(long, value_name = "CONFIG.json", requires = "weights")]
    model_config: Option<PathBuf>,
    /// Input side for CUB.
    #[arg(long, default_value_t = 224, requires = "weights")]
    image_size: usize,
    /// Epochs of the embedded model's pretraining.
    #[arg(long, conflicts_with = "data")]
    pretrain_epochs: Option<usize>,
    /// With --methods: compare methods instead of running one (OUT/METHOD/seed-S).
    #[command(flatten)]
    compare: CompareArgs,
    #[command(flatten)]
    forget: ForgetArgs,
    #[command(flatten)]
    data_args: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// The embedded default's forgetting settings: the official protocol and hyper-parameters
/// (replay share drawn over the remaining classes, β 0.2 / 0.25 / 0.25 / 0.2, lr 1e-2 cosine
/// to 1e-5) and the library's forget draw (every training image of the classes to erase),
/// except four, each measured in docs/results.md.
/// - The forgetting bound holds each forget sample, not the batch mean, at BND = 5: a sample
///   whose cross-entropy exceeds ln C (ln 60 = 4.09 here) has a true-class probability below
///   1/C, so some other class scores higher and the sample is no longer recognised; 5 pushes
///   each one just past that and then leaves it alone. The official bound (105 on the batch
///   mean) suits a CosFace head (logits `64·cos θ`); on a linear head the batch mean is reached
///   by a few samples pushed far while others are still recognised, and the far ones keep
///   moving the features the remaining classes share: with BND 15 on the batch mean, 2 of the
///   10 runs met the targets (acc_f up to 10.5%, acc_r down 4.9 points); per sample at 5, all
///   (docs/results.md).
/// - Half of the remaining images are replayed, not 10%: the embedded classes have 120
///   training images (10% would be 12 per class), and they are siblings that share two of
///   three attributes.
/// - 10 epochs per task instead of 100: the CPU budget of the main job.
/// - The paper's sparsity warm-up, as the official few-shot and open runs use it (α = 0 for
///   the first epochs, then a larger α; PROTOCOL §1 E5, E7): α = 0 for 5 of the 10 epochs, then
///   0.03 through the proximal step, which switches off the blocks the task does not need.
fn embedded_defaults() -> ForgetConfig {
    ForgetConfig {
        tasks: 4,
        forget_per_task: 10,
        epochs: 10,
        replay: Replay::Fraction(0.5),
        bnd: Some(5.0),
        bnd_per_sample: true,
        group_lasso: GroupLassoConfig::new()
            .with_warmup_epochs(5)
            .with_warmup_weight(Some(0.03)),
        ..ForgetConfig::default()
    }
}

/// The CUB model: the backbone with a linear-probed head of the data's classes, cached in `cache`.
fn cub_model(
    cache: &ClassifierDir,
    (config, weights): (&Path, &Path),
    dataset: &Dataset,
    preprocess: &Preprocess,
    lora: &LoraConfig,
    seed: u64,
    device: &Device,
) -> Result<VisionTransformer, CliError> {
    if !cache.exists() {
        let backbone = load_backbone(config, weights, preprocess, lora, seed, device)?;
        let probe = ProbeConfig {
            seed,
            ..ProbeConfig::default()
        };
        let (model, accuracy) = linear_probe(backbone, dataset, preprocess, &probe, device)?;
        eprintln!("linear probe: validation accuracy {accuracy:.2}%");
        let info = ClassifierInfo {
            class_names: dataset.class_names.clone(),
            preprocess: *preprocess,
            forgotten: Vec::new(),
            split_seed: dataset.split_seed,
            val_fraction: Some(dataset.val_fraction),
        };
        cache.save(&model, &info)?;
    }
    cache.info()?.check_data(dataset)?;
    Ok(cache.load(lora, seed, device)?)
}

fn run(cli: Cli) -> Result<(), CliError> {
    let out = cli.out;
    let devices = cli.device.data_parallel()?;
    let device = devices.primary().clone();
    let cache = ClassifierDir::new(out.join("pretrained"));

    match (cli.data, cli.weights) {
        (Some(data), Some(weights)) => {
            let CheckpointFiles {
                config: model_config,
                weights,
            } = CheckpointFiles::locate(&weights, cli.model_config)?;
            let config = cli.forget.config(ForgetConfig::default())?;
            config.validate()?;
            ensure_disjoint(
                &[("--out", &out)],
                &[
                    ("--data", &data),
                    ("--weights", &weights),
                    ("--model-config", &model_config),
                ],
            )?;
            let preprocess = checkpoint_preprocess(&model_config, Some(cli.image_size), None)?;
            let mut options = cli.data_args.options(forget_load_options(
                &config,
                LoadOptions {
                    max_side: Some(preprocess.resize_side()),
                    ..LoadOptions::default()
                },
            ));
            options.max_classes = options.max_classes.or(Some(100));
            let dataset = open_dataset(&data, &options)?;
            let lora = config.lora.clone();
            let model = cub_model(
                &cache,
                (&model_config, &weights),
                &dataset,
                &preprocess,
                &lora,
                config.seed,
                &device,
            )?;
            match cli.compare.comparison(&config, official_full_model_lr())? {
                Some(settings) => report(compare(&out, &settings, "acc", |config, run| {
                    let model = cache.load(&config.lora, config.seed, &device)?;
                    run_forgetting(model, &dataset, config, &preprocess, run, devices.clone())
                })?),
                None => {
                    let state = run_forgetting(
                        model,
                        &dataset,
                        &config,
                        &preprocess,
                        &RunDir::new(&out),
                        devices.clone(),
                    )?;
                    println!("\n{}", results_table(&state.results, "acc"));
                }
            }
        }
        _ => {
            if cli.data_args != DataArgs::default() {
                return Err(CliError::Usage(
                    "the embedded data has fixed splits and classes: the data flags apply to \
                     --data"
                        .into(),
                ));
            }
            let config = cli.forget.config(embedded_defaults())?;
            config.validate()?;
            // Each seed draws its own embedded data and pretrains its own model on it.
            let embedded = |config: &ForgetConfig, cache: &ClassifierDir| {
                let pretrain = PretrainConfig {
                    epochs: cli
                        .pretrain_epochs
                        .unwrap_or(PretrainConfig::default().epochs),
                    seed: config.seed,
                    ..PretrainConfig::default()
                };
                let dataset = embedded_dataset(config.seed);
                let model = load_or_pretrain(cache, &dataset, &pretrain, &config.lora, &devices)?;
                Ok::<_, gs_lora::train::TrainError>((dataset, model))
            };
            match cli.compare.comparison(&config, official_full_model_lr())? {
                Some(settings) => report(compare(&out, &settings, "acc", |config, run| {
                    let cache =
                        ClassifierDir::new(out.join(format!("pretrained-seed-{}", config.seed)));
                    let (dataset, model) = embedded(config, &cache)?;
                    run_forgetting(
                        model,
                        &dataset,
                        config,
                        &EMBEDDED_PREPROCESS,
                        run,
                        devices.clone(),
                    )
                })?),
                None => {
                    let (dataset, model) = embedded(&config, &cache)?;
                    let state = run_forgetting(
                        model,
                        &dataset,
                        &config,
                        &EMBEDDED_PREPROCESS,
                        &RunDir::new(&out),
                        devices.clone(),
                    )?;
                    println!("\n{}", results_table(&state.results, "acc"));
                }
            }
        }
    }
    println!("results, curves and plots in {}", out.display());
    Ok(())
}

/// Prints a comparison's table.
fn report(rows: Vec<ComparisonRow>) {
    println!("\n{}", comparison_table(&rows, "acc"));
}

fn main() -> ExitCode {
    #[cfg(feature = "mimalloc")]
    gs_lora::allocator::keep_freed_memory();
    match Cli::try_parse() {
        Ok(cli) => exit_code(run(cli)),
        Err(err) => clap_exit(&err),
    }
}
