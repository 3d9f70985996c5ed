//! PEFT interoperability both ways, against real PEFT: adapters `PeftModel.save_pretrained`
//! wrote (`tools/make_peft_fixtures.py`) load and reproduce PEFT's outputs; adapters we save
//! load in `PeftModel.from_pretrained` and reproduce ours (that script's `--check`, run when
//! `GS_LORA_PEFT_PYTHON` names a Python with peft, timm and transformers; `.ci/run` sets it
//! when one is installed).

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use gs_lora_core::{LoraConfig, LoraModel};
use gs_lora_models::VisionTransformer;
use gs_lora_models::weights::{read_tensor, write_tensors};

use crate::common::{assert_parity, fixture};

fn base(name: &str) -> VisionTransformer {
    let dir = fixture(name);
    VisionTransformer::from_pretrained(
        dir.join("config.json"),
        dir.join("model.safetensors"),
        &LoraConfig::new(),
        3,
        &Device::default(),
    )
    .unwrap_or_else(|err| panic!("{name}: {err}"))
}

/// The model's outputs on `base`'s fixture input, under the reference's names.
fn outputs(model: &VisionTransformer, base: &str) -> Vec<(String, TensorData)> {
    let pixels =
        read_tensor(fixture(base).join("input.safetensors"), "pixel_values").expect("input");
    let output = model
        .forward(Tensor::<4>::from_data(pixels, &Device::default()))
        .expect("forward");
    let mut named = vec![(
        "last_hidden_state".to_string(),
        output.last_hidden_state.into_data(),
    )];
    named.extend(output.logits.map(|l| ("logits".to_string(), l.into_data())));
    named.extend(
        output
            .pooler_output
            .map(|p| ("pooler_output".to_string(), p.into_data())),
    );
    named
}

/// PEFT's own adapters: timm `fc1`/`fc2` with a per-module rank (`rank_pattern`), DINOv2
/// `mlp.fc1`/`mlp.fc2` with rsLoRA and a per-module alpha (`alpha_pattern`), and DINOv2 `fc1`
/// only (fc2 keeps a zero update). Each reproduces PEFT's outputs. Catches `rank_pattern`,
/// `alpha_pattern` or rsLoRA ignored, A and B transposed, the untargeted layers' adapters
/// left as they were.
#[test]
fn adapters_peft_saved_reproduce_peft() {
    for (adapters, base_name) in [
        ("peft_timm", "timm_token"),
        ("peft_dinov2", "hf_dinov2"),
        ("peft_dinov2_fc1", "hf_dinov2"),
    ] {
        let mut model = base(base_name);
        // Adapters already non-zero, so that an untargeted layer left as it was shows.
        for group in model.lora_groups_mut() {
            for layer in group.layers {
                let shape = layer.lora_b.shape();
                layer.lora_b = Param::from_tensor(Tensor::ones(shape, &Device::default()));
            }
        }
        model.load_adapters(fixture(adapters)).expect(adapters);
        let expected = fixture(adapters).join("output.safetensors");
        for (name, found) in outputs(&model, base_name) {
            let reference = read_tensor(&expected, &name).expect("reference");
            assert_parity(
                &format!("{adapters} {name}"),
                &found.try_to_vec::<f32>().expect("f32"),
                &reference.try_to_vec::<f32>().expect("f32"),
            );
        }
    }
}

/// Adapters we save, with a layer at another rank and scale (written as PEFT's
/// `rank_pattern` / `alpha_pattern`), for PEFT to load: our outputs beside them.
fn saved_for_peft(base_name: &str, dir: &Path) -> VisionTransformer {
    let mut model = base(base_name);
    let device = Device::default();
    for (g, group) in model.lora_groups_mut().into_iter().enumerate() {
        for (l, layer) in group.layers.into_iter().enumerate() {
            let rank = if (g, l) == (1, 1) { 3 } else { 8 };
            let (d_input, d_output) = (layer.d_input(), layer.d_output());
            let wave = |n: usize, phase: f32| -> Vec<f32> {
                (0..n)
                    .map(|i| (0.37 * i as f32 + phase).sin() * 0.3)
                    .collect()
            };
            layer.lora_a = Param::from_tensor(Tensor::from_data(
                TensorData::new(wave(d_input * rank, g as f32), [d_input, rank]),
                &device,
            ));
            layer.lora_b = Param::from_tensor(Tensor::from_data(
                TensorData::new(wave(rank * d_output, 1.0 + l as f32), [rank, d_output]),
                &device,
            ));
            layer.scale = if (g, l) == (0, 0) { 0.5 } else { 0.25 };
        }
    }
    model.save_adapters(dir).expect("save adapters");
    std::fs::write(dir.join("base.txt"), base_name).expect("base.txt");
    write_tensors(dir.join("output.safetensors"), outputs(&model, base_name)).expect("outputs");
    model
}

/// What we save reads back to the same model (ranks and scales per module included), and,
/// where a Python with PEFT is named, PEFT computes our outputs from it.
#[test]
fn adapters_we_save_load_in_peft() {
    for base_name in ["timm_token", "hf_dinov2"] {
        let scratch = tempfile::tempdir().expect("scratch");
        let dir = scratch.path().join(base_name);
        let saved = saved_for_peft(base_name, &dir);
        let mut reloaded = base(base_name);
        reloaded.load_adapters(&dir).expect("our own adapters");
        for ((name, a), (_, b)) in outputs(&saved, base_name)
            .into_iter()
            .zip(outputs(&reloaded, base_name))
        {
            assert_parity(
                &format!("{base_name} {name} reloaded"),
                &b.try_to_vec::<f32>().expect("f32"),
                &a.try_to_vec::<f32>().expect("f32"),
            );
        }
        match std::env::var_os("GS_LORA_PEFT_PYTHON") {
            Some(python) => {
                let script =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/make_peft_fixtures.py");
                let run = std::process::Command::new(PathBuf::from(python))
                    .arg(script)
                    .arg("--check")
                    .arg(&dir)
                    .env("HF_HUB_OFFLINE", "1")
                    .output()
                    .expect("python runs");
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&run.stdout),
                    String::from_utf8_lossy(&run.stderr)
                );
                eprintln!("PEFT on our {base_name} adapters:\n{text}");
                assert!(run.status.success(), "{base_name}: {text}");
            }
            None => eprintln!(
                "SKIPPED the PEFT side of {base_name}: set GS_LORA_PEFT_PYTHON to a Python with peft"
            ),
        }
    }
}
