//! Saving merged models in their own layout and adapters in PEFT's, and reading both back.

use std::collections::BTreeSet;
use std::path::Path;

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use gs_lora_core::{LoraConfig, LoraModel, merge_adapters};
use gs_lora_models::VisionTransformer;
use gs_lora_models::weights::read_tensor;
use safetensors::SafeTensors;

use crate::common::{assert_parity, fixture, values};

/// A scratch directory, removed when dropped (when a test fails too).
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("scratch dir")
}

fn load(config: &Path, weights: &Path) -> VisionTransformer {
    VisionTransformer::from_pretrained(config, weights, &LoraConfig::new(), 3, &Device::default())
        .unwrap_or_else(|err| panic!("{err}"))
}

/// Sets every `B` to deterministic non-zero values so the adapters change the output.
fn perturb_adapters(model: &mut VisionTransformer) {
    let device = Device::default();
    for (g, group) in model.lora_groups_mut().into_iter().enumerate() {
        for (l, layer) in group.layers.into_iter().enumerate() {
            let [rank, d_output] = layer.lora_b.shape().dims();
            let values = (0..rank * d_output)
                .map(|i| (0.37 * (i + 13 * g + 5 * l) as f32).sin() * 0.5)
                .collect();
            let value = Tensor::from_data(TensorData::new(values, [rank, d_output]), &device);
            layer.lora_b = Param::from_tensor(value);
        }
    }
}

fn embedding(model: &VisionTransformer, dir: &Path) -> Vec<f32> {
    let pixels = read_tensor(dir.join("input.safetensors"), "pixel_values").expect("input");
    let pixels = Tensor::<4>::from_data(pixels, &Device::default());
    let output = model.forward(pixels).expect("forward");
    values(output.embedding)
}

fn keys(path: &Path) -> BTreeSet<String> {
    let bytes = std::fs::read(path).expect("weights");
    SafeTensors::deserialize(&bytes)
        .expect("safetensors")
        .names()
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn merged_models_round_trip_in_their_own_layout() {
    for name in [
        "timm_token",
        "timm_avg_ls",
        "hf_vit_classifier",
        "hf_vit_pooler",
        "hf_dinov2",
        "gslora_face",
    ] {
        let dir = fixture(name);
        let mut model = load(&dir.join("config.json"), &dir.join("model.safetensors"));
        perturb_adapters(&mut model);
        let adapted = embedding(&model, &dir);
        let unadapted = embedding(
            &load(&dir.join("config.json"), &dir.join("model.safetensors")),
            &dir,
        );
        assert!(
            adapted
                .iter()
                .zip(&unadapted)
                .any(|(a, b)| (a - b).abs() > 1e-3),
            "{name}: the adapters must change the output for this test to mean anything"
        );

        let out_dir = scratch();
        let out = out_dir.path();
        model.save_pretrained(out).expect("save");
        let original: BTreeSet<String> = keys(&dir.join("model.safetensors"))
            .into_iter()
            .filter(|key| !key.ends_with("mask_token") && !key.contains("lora_"))
            .collect();
        assert_eq!(
            keys(&out.join("model.safetensors")),
            original,
            "{name}: key layout"
        );

        // Reloaded with the original config (same layout) and with the saved one.
        let reloaded = load(&dir.join("config.json"), &out.join("model.safetensors"));
        assert_parity(
            &format!("{name} merged, original config"),
            &embedding(&reloaded, &dir),
            &adapted,
        );
        let reloaded = load(&out.join("config.json"), &out.join("model.safetensors"));
        assert_parity(
            &format!("{name} merged, saved config"),
            &embedding(&reloaded, &dir),
            &adapted,
        );
    }
}

#[test]
fn saving_after_merge_does_not_apply_the_update_twice() {
    let dir = fixture("hf_dinov2");
    let mut model = load(&dir.join("config.json"), &dir.join("model.safetensors"));
    perturb_adapters(&mut model);
    let adapted = embedding(&model, &dir);
    merge_adapters(&mut model).expect("merge");
    let out_dir = scratch();
    let out = out_dir.path();
    model.save_pretrained(out).expect("save");
    let reloaded = load(&out.join("config.json"), &out.join("model.safetensors"));
    assert_parity("merged then saved", &embedding(&reloaded, &dir), &adapted);
}

#[test]
fn adapters_round_trip_in_peft_layout() {
    for name in ["timm_token", "hf_vit_classifier", "gslora_face"] {
        let dir = fixture(name);
        let mut model = load(&dir.join("config.json"), &dir.join("model.safetensors"));
        perturb_adapters(&mut model);
        let adapted = embedding(&model, &dir);
        let out_dir = scratch();
        let out = out_dir.path();
        model.save_adapters(out).expect("save adapters");

        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("adapter_config.json")).expect("adapter config"),
        )
        .expect("json");
        assert_eq!(config["peft_type"], "LORA");
        assert_eq!(config["r"], 8);
        assert_eq!(config["lora_alpha"], 1.0);
        let adapter_keys = keys(&out.join("adapter_model.safetensors"));
        assert_eq!(
            adapter_keys.len(),
            2 * 2 * 2,
            "{name}: 2 blocks × 2 layers × (A, B)"
        );
        assert!(
            adapter_keys
                .iter()
                .all(|k| k.starts_with("base_model.model.")),
            "{adapter_keys:?}"
        );
        let first = adapter_keys
            .iter()
            .find(|k| k.ends_with("lora_A.weight"))
            .expect("an A");
        let a = read_tensor(out.join("adapter_model.safetensors"), first).expect("A");
        assert_eq!(a.shape()[0], 8, "{first}: PEFT's lora_A is [r, in]");

        let mut fresh = load(&dir.join("config.json"), &dir.join("model.safetensors"));
        fresh.load_adapters(out).expect("load adapters");
        assert_parity(
            &format!("{name} PEFT adapters"),
            &embedding(&fresh, &dir),
            &adapted,
        );
    }
}

#[test]
fn adapters_of_another_shape_are_refused() {
    let dir = fixture("timm_token");
    let model = load(&dir.join("config.json"), &dir.join("model.safetensors"));
    let out_dir = scratch();
    let out = out_dir.path();
    model.save_adapters(out).expect("save");
    let config = std::fs::read_to_string(out.join("adapter_config.json")).expect("config");
    std::fs::write(
        out.join("adapter_config.json"),
        config.replace("\"r\": 8", "\"r\": 4"),
    )
    .expect("write");
    let mut model = model;
    let err = model
        .load_adapters(out)
        .expect_err("rank 4 does not match the stored rank 8");
    assert!(err.to_string().contains("lora_A"), "{err}");
}
