//! A whole forgetting run on a tiny model: result files, metrics, determinism and resume.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use gs_lora_core::LoraConfig;
use gs_lora_models::VisionTransformer;
use gs_lora_models::vit::VitConfig;
use gs_lora_models::weights::SeededInit;
use gs_lora_train::batch::{Normalization, Preprocess};
use gs_lora_train::data::{Dataset, SyntheticShapes, SyntheticShapesConfig};
use gs_lora_train::embedded::embedded_model_config;
use gs_lora_train::pretrain::{PretrainConfig, pretrain};
use gs_lora_train::{
    ForgetConfig, Method, ModelDir, Replay, RunDir, TaskResult, TrainError, run_forgetting,
};

const PREPROCESS: Preprocess = Preprocess {
    image_size: 16,
    crop_pct: 1.0,
    channels: 3,
    norm: Normalization::HALF,
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gs-lora-run-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

fn tiny_setup() -> (Dataset, VitConfig, ForgetConfig) {
    let dataset = SyntheticShapes::generate(&SyntheticShapesConfig {
        image_size: 16,
        train_per_class: 6,
        val_per_class: 2,
        test_per_class: 1,
        seed: 1,
    });
    let model = VitConfig {
        image_size: 16,
        patch_size: 8,
        hidden_size: 16,
        depth: 2,
        num_heads: 2,
        mlp_hidden: 32,
        ..embedded_model_config(16, dataset.num_classes())
    };
    let forget = ForgetConfig {
        tasks: 2,
        forget_per_task: 5,
        epochs: 2,
        batch_size: 16,
        rank: 2,
        replay: Replay::Fraction(0.5),
        ..ForgetConfig::default()
    };
    (dataset, model, forget)
}

fn pretrained(dataset: &Dataset, config: &VitConfig, device: &Device, dir: &Path) -> PathBuf {
    let lora = LoraConfig::new().with_rank(2);
    let model =
        VisionTransformer::load(config, &mut SeededInit::new(0), &lora, 0, device).expect("model");
    let settings = PretrainConfig {
        epochs: 2,
        batch_size: 32,
        ..PretrainConfig::default()
    };
    let (model, _) = pretrain(model, dataset, &settings, &PREPROCESS, device).expect("pretrain");
    let path = dir.join("pretrained");
    model.save_pretrained(&path).expect("save");
    path
}

fn load(path: &Path, device: &Device) -> VisionTransformer {
    VisionTransformer::from_pretrained(
        path.join("config.json"),
        path.join("model.safetensors"),
        &LoraConfig::new().with_rank(2),
        0,
        device,
    )
    .expect("load")
}

fn read_results(dir: &std::path::Path) -> Vec<TaskResult> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).expect("results.json"))
        .expect("json")
}

#[test]
fn a_run_writes_its_results_and_resumes_to_the_same_numbers() {
    let device = Device::default().autodiff();
    let (dataset, model_config, config) = tiny_setup();
    let base = scratch("base");
    let pretrained_path = pretrained(&dataset, &model_config, &device, &base);

    let run = base.join("run");
    let state = run_forgetting(
        load(&pretrained_path, &device),
        &dataset,
        &config,
        &PREPROCESS,
        &RunDir::new(&run),
        &device,
    )
    .expect("run");
    assert_eq!(state.results.len(), 2);
    for file in [
        "config.json",
        "schedule.json",
        "results.json",
        "curves.csv",
        "accuracy.svg",
        "group_norms.svg",
        "state.json",
    ] {
        assert!(run.join(file).is_file(), "{file} is written");
    }
    let results = read_results(&run);
    // Every checkpoint is a model directory that knows its classes and what it forgot.
    for (task, result) in results.iter().enumerate() {
        let checkpoint = ModelDir::new(run.join(format!("checkpoints/task-{task}")));
        assert!(checkpoint.exists());
        let info = checkpoint.info().expect("gs_lora.json");
        assert_eq!(info.class_names, dataset.class_names);
        assert_eq!(info.preprocess, PREPROCESS);
        let mut forgotten: Vec<usize> = results[..=task]
            .iter()
            .flat_map(|r| r.forget_classes.clone())
            .collect();
        forgotten.sort_unstable();
        let mut recorded = info.forgotten.clone();
        recorded.sort_unstable();
        assert_eq!(recorded, forgotten, "task {task}");
        assert!(
            result
                .forget_classes
                .iter()
                .all(|c| info.forgotten.contains(c))
        );
    }
    let info = ModelDir::new(run.join("checkpoints/task-0"))
        .info()
        .expect("info");
    let mut renamed = dataset.clone();
    renamed.class_names[3] = "purple-hexagon".into();
    let err = info.check_classes(&renamed).expect_err("other classes");
    assert!(err.to_string().contains("purple-hexagon"), "{err}");
    let mut fewer = dataset.clone();
    fewer.class_names.truncate(10);
    let err = info.check_classes(&fewer).expect_err("fewer classes");
    assert!(
        err.to_string().contains("60 classes but the data has 10"),
        "{err}"
    );
    assert_eq!(results, state.results);
    let first = &results[0];
    assert_eq!(first.forget_classes.len(), 5);
    assert_eq!(first.acc_o, None);
    assert!(results[1].acc_o.is_some());
    assert_eq!(first.group_norms.len(), 2);
    let expected_h = gs_lora_core::h_mean(first.acc_f_before, first.acc_f, first.acc_r);
    assert_eq!(first.h_mean, expected_h);
    let csv = std::fs::read_to_string(run.join("curves.csv")).expect("csv");
    assert_eq!(
        csv.lines().count(),
        1 + 2 * 2,
        "a header and one row per task and epoch"
    );

    // Same seed, fresh directory: the same numbers.
    let again = base.join("again");
    run_forgetting(
        load(&pretrained_path, &device),
        &dataset,
        &config,
        &PREPROCESS,
        &RunDir::new(&again),
        &device,
    )
    .expect("run again");
    let strip = |r: Vec<TaskResult>| {
        r.into_iter()
            .map(|t| TaskResult { seconds: 0.0, ..t })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(read_results(&again)), strip(results.clone()));

    // A run killed after task 0: only task 0's state survives; the rerun resumes there.
    let killed = base.join("killed");
    let one_task = ForgetConfig {
        tasks: 1,
        ..config.clone()
    };
    run_forgetting(
        load(&pretrained_path, &device),
        &dataset,
        &one_task,
        &PREPROCESS,
        &RunDir::new(&killed),
        &device,
    )
    .expect("first task");
    let resumed = run_forgetting(
        load(&pretrained_path, &device),
        &dataset,
        &config,
        &PREPROCESS,
        &RunDir::new(&killed),
        &device,
    )
    .expect("resume");
    assert_eq!(strip(resumed.results), strip(results));
    std::fs::remove_dir_all(&base).ok();
}

#[test]
fn gs_lora_plus_plus_and_few_shot_run() {
    let device = Device::default().autodiff();
    let (dataset, model_config, config) = tiny_setup();
    let base = scratch("plusplus");
    let pretrained_path = pretrained(&dataset, &model_config, &device, &base);
    let config = ForgetConfig {
        tasks: 1,
        epochs: 1,
        method: Method::GsLoraPlusPlus,
        replay: Replay::FewShot(2),
        ..config
    };
    let state = run_forgetting(
        load(&pretrained_path, &device),
        &dataset,
        &config,
        &PREPROCESS,
        &RunDir::new(base.join("run")),
        &device,
    )
    .expect("run");
    assert_eq!(state.results.len(), 1);
    assert!(
        state.curves[0].prototype > 0.0,
        "the prototype loss is active"
    );
    std::fs::remove_dir_all(&base).ok();
}

#[test]
fn a_non_finite_loss_stops_the_task_and_keeps_the_last_checkpoint() {
    let device = Device::default().autodiff();
    let (dataset, model_config, config) = tiny_setup();
    let base = scratch("nan");
    let pretrained_path = pretrained(&dataset, &model_config, &device, &base);
    // β = 1e300 on task 1 makes its very first loss infinite.
    let config = ForgetConfig {
        epochs: 1,
        beta: vec![0.2, 1e300],
        ..config
    };
    let run = base.join("run");
    let err = run_forgetting(
        load(&pretrained_path, &device),
        &dataset,
        &config,
        &PREPROCESS,
        &RunDir::new(&run),
        &device,
    )
    .expect_err("task 1 diverges");
    assert!(
        matches!(
            err,
            TrainError::NonFiniteLoss {
                task: 1,
                epoch: 0,
                step: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("checkpoint is kept"), "{err}");
    let state = RunDir::new(&run).load_state().expect("state");
    assert_eq!(state.results.len(), 1, "task 0 stays finished");
    assert!(ModelDir::new(run.join("checkpoints/task-0")).exists());
    assert!(!run.join("checkpoints/task-1").exists());
    std::fs::remove_dir_all(&base).ok();
}
