//! A forgetting run with dropout repeats itself: the masks come from the backend's random
//! stream, seeded per epoch from the run's seed, so the same seed gives the same numbers and a
//! run resumed after its first task ends where the uninterrupted one does. Its own test binary,
//! since the backend keeps one random stream per process, which concurrent trainings of other
//! tests would reseed.

use std::path::PathBuf;

use burn::tensor::Device;
use gs_lora_core::LoraConfig;
use gs_lora_models::VisionTransformer;
use gs_lora_models::weights::SeededInit;
use gs_lora_train::classification::data::{Dataset, SyntheticShapes, SyntheticShapesConfig};
use gs_lora_train::classification::{ClassifierDir, embedded_config, run_forgetting};
use gs_lora_train::image::{Normalization, Preprocess};
use gs_lora_train::{ForgetConfig, Replay, RunDir, TaskResult};

const PREPROCESS: Preprocess = Preprocess {
    image_size: 16,
    crop_pct: 1.0,
    channels: 3,
    norm: Normalization::HALF,
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gs-lora-dropout-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

fn dataset() -> Dataset {
    SyntheticShapes::generate(&SyntheticShapesConfig {
        image_size: 16,
        train_per_class: 6,
        val_per_class: 2,
        test_per_class: 1,
        seed: 1,
    })
}

/// Each task's accuracies and group norms (not its wall time).
fn numbers(run: &RunDir, config: &ForgetConfig, model: VisionTransformer) -> Vec<TaskResult> {
    let dataset = dataset();
    let device = Device::default().autodiff();
    let state = run_forgetting(model, &dataset, config, &PREPROCESS, run, &device).expect("run");
    state
        .results
        .into_iter()
        .map(|t| TaskResult {
            seconds: 0.0,
            peak_rss_mib: None,
            ..t
        })
        .collect()
}

#[test]
fn a_run_with_dropout_repeats_and_resumes_to_the_same_numbers() {
    let device = Device::default().autodiff();
    let lora = LoraConfig::new().with_rank(2);
    let model_config = gs_lora_models::VitConfig {
        image_size: 16,
        hidden_size: 16,
        depth: 2,
        num_heads: 2,
        mlp_hidden: 32,
        ..embedded_config(16, dataset().num_classes())
    };
    let model = || {
        VisionTransformer::load(&model_config, &mut SeededInit::new(0), &lora, 0, &device)
            .expect("model")
    };
    let config = ForgetConfig {
        tasks: 2,
        forget_per_task: 5,
        epochs: 2,
        batch_size: 16,
        lora: lora.clone(),
        replay: Replay::Fraction(0.5),
        dropout: Some(0.3),
        ..ForgetConfig::default()
    };
    let dirs = ["first", "again", "resumed", "none"].map(scratch);
    let first = numbers(&RunDir::new(&dirs[0]), &config, model());
    assert_eq!(
        first,
        numbers(&RunDir::new(&dirs[1]), &config, model()),
        "same seed"
    );

    let one_task = ForgetConfig {
        tasks: 1,
        ..config.clone()
    };
    numbers(&RunDir::new(&dirs[2]), &one_task, model());
    let resumed = numbers(&RunDir::new(&dirs[2]), &config, model());
    assert_eq!(first, resumed, "resumed after task 0");

    let without = ForgetConfig {
        dropout: None,
        ..config.clone()
    };
    let plain = numbers(&RunDir::new(&dirs[3]), &without, model());
    assert_ne!(
        first
            .iter()
            .map(|t| t.group_norms.clone())
            .collect::<Vec<_>>(),
        plain
            .iter()
            .map(|t| t.group_norms.clone())
            .collect::<Vec<_>>(),
        "dropout changes training"
    );
    // The checkpoint records the rate it trained with.
    let saved = ClassifierDir::new(dirs[0].join("checkpoints/task-1"));
    let text = std::fs::read_to_string(saved.path().join("config.json")).expect("config");
    assert!(
        text.contains("\"dropout\": 0.3") || text.contains("\"dropout\":0.3"),
        "{text}"
    );
    for dir in dirs {
        std::fs::remove_dir_all(dir).ok();
    }
}
