//! Data parallelism (`--devices`): a run with its batches split across devices ends where the
//! one-device run ends. Two or three copies of the CPU device stand in for several GPUs: the
//! split, the replicas, the gather and the gradients' way back are the same code.

use std::path::Path;

use burn::tensor::Device;
use gs_lora_core::{DataParallel, LoraConfig};
use gs_lora_models::VisionTransformer;
use gs_lora_models::weights::SeededInit;
use gs_lora_train::classification::data::Dataset;
use gs_lora_train::classification::{ClassifierDir, PretrainConfig, pretrain, run_forgetting};
use gs_lora_train::engine::path_params;
use gs_lora_train::image::{Normalization, Preprocess};
use gs_lora_train::{ForgetConfig, MethodKind, Replay, RunDir, TaskResult};

use crate::common::{scratch, tiny_shapes, tiny_vit};

const PREPROCESS: Preprocess = Preprocess {
    image_size: 16,
    crop_pct: 1.0,
    channels: 3,
    norm: Normalization::HALF,
};

/// A tiny ViT pretrained for two epochs with its batches split across `devices`.
fn pretrained(dataset: &Dataset, devices: &DataParallel) -> VisionTransformer {
    let config = tiny_vit(dataset.num_classes());
    let lora = LoraConfig::new().with_rank(2);
    let device = devices.primary();
    let model =
        VisionTransformer::load(&config, &mut SeededInit::new(0), &lora, 0, device).expect("model");
    let settings = PretrainConfig {
        epochs: 2,
        batch_size: 13,
        ..PretrainConfig::default()
    };
    let (model, _) =
        pretrain(model, dataset, &settings, &PREPROCESS, devices.clone()).expect("pretrain");
    model
}

/// Every parameter of the checkpoint in `dir`, flattened, by path.
fn weights(dir: &Path, device: &Device) -> Vec<(String, Vec<f32>)> {
    let model = ClassifierDir::new(dir)
        .load(&LoraConfig::new().with_rank(2), 0, device)
        .expect("checkpoint");
    path_params(&model)
        .into_iter()
        .map(|p| (p.path, p.value.try_into_vec_as::<f32>().expect("floats")))
        .collect()
}

fn results(run: &Path) -> Vec<TaskResult> {
    let text = std::fs::read_to_string(run.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("json")
}

/// GS-LoRA++ (its prototype bound and the batch-mean forgetting bound are not sums over
/// samples) with batches of 7, split over two and over three copies of the CPU device (shards
/// of 4 + 3 and 3 + 2 + 2, and a last batch smaller than the device count), after a pretraining
/// split the same ways: the same accuracies and group norms, and every weight of the last
/// checkpoint within 1e-5 of the one-device run. Catches a shard's gradient lost (a replica
/// that is detached), counted twice, shards gathered out of order, a bound taken per shard, or
/// a pretraining that ignores the split.
#[test]
fn a_run_split_across_devices_ends_where_the_one_device_run_ends() {
    let device = Device::default().autodiff();
    let data = tiny_shapes(3);
    let config = ForgetConfig {
        method: MethodKind::GsLoraPlusPlus,
        tasks: 2,
        forget_per_task: 5,
        epochs: 2,
        batch_size: 7,
        bnd_per_sample: false,
        lora: LoraConfig::new().with_rank(2),
        replay: Replay::Stratified(0.5),
        ..ForgetConfig::default()
    };
    let base = scratch("data-parallel");
    let run = |copies: usize| {
        let devices = DataParallel::new(vec![device.clone(); copies]).expect("devices");
        let dir = base.join(format!("devices-{copies}"));
        let model = pretrained(&data, &devices);
        run_forgetting(
            model,
            &data,
            &config,
            &PREPROCESS,
            &RunDir::new(&dir),
            devices,
        )
        .expect("run");
        dir
    };
    let one = run(1);
    for copies in [2, 3] {
        let split = run(copies);
        for (a, b) in results(&one).iter().zip(&results(&split)) {
            assert_eq!(
                (a.forget_after, a.retain_after),
                (b.forget_after, b.retain_after),
                "{copies} devices, task {}",
                a.task
            );
            for (x, y) in a.group_norms.iter().zip(&b.group_norms) {
                assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{x} vs {y}");
            }
        }
        let last = |dir: &Path| weights(&dir.join("checkpoints/task-1"), &device);
        for ((path, a), (_, b)) in last(&one).iter().zip(&last(&split)) {
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(worst <= 1e-5, "{copies} devices: {path} differs by {worst}");
        }
    }
}
