//! Parity of the ViT family with the reference implementations (timm, Hugging Face
//! transformers), on fixtures made by `tools/make_vit_fixtures.py`, and with the real DINOv2-S
//! weights in `../shared/data/dinov2-small/`.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use gs_lora_core::{LoraConfig, LoraModel, group_norms};
use gs_lora_models::vit::{Head, PosResample, resample_grid};
use gs_lora_models::{ModelError, VisionTransformer, VitConfig};
use safetensors::SafeTensors;

use crate::common::{PARITY, assert_parity, fixture, parity_error, values};

/// `(shape, values)` of `key` in the f32 safetensors file at `path`.
fn read(path: &Path, key: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tensors = SafeTensors::deserialize(&bytes).expect("safetensors");
    let view = tensors
        .tensor(key)
        .unwrap_or_else(|_| panic!("{key} in {}", path.display()));
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (view.shape().to_vec(), values)
}

/// Loads `dir`'s checkpoint `weights` with the config `config`, runs its input and pairs every
/// output the fixture has with the reference: `(name, found, expected)`.
fn fixture_outputs(dir: &Path, config: &Path, weights: &str) -> Vec<(String, Vec<f32>, Vec<f32>)> {
    let device = Device::default();
    let model = VisionTransformer::from_pretrained(
        config,
        dir.join(weights),
        &LoraConfig::new(),
        0,
        &device,
    )
    .unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    let (shape, pixels) = read(&dir.join("input.safetensors"), "pixel_values");
    let pixels = Tensor::<4>::from_data(TensorData::new(pixels, shape), &device);
    let output = model.forward(pixels).expect("forward");
    let expected = dir.join("output.safetensors");
    let bytes = std::fs::read(&expected).expect("outputs");
    let names = SafeTensors::deserialize(&bytes)
        .expect("safetensors")
        .names()
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    let mut outputs = Vec::new();
    for name in names {
        let (shape, reference) = read(&expected, &name);
        let found = match name.as_str() {
            "last_hidden_state" => output.last_hidden_state.clone(),
            "logits" => output.logits.clone().expect("logits").unsqueeze(),
            "embedding" => output.embedding.clone().unsqueeze(),
            "logits_with_margin" => continue, // needs labels: see the face test
            "pooler_output" => output
                .pooler_output
                .clone()
                .expect("pooler_output")
                .unsqueeze(),
            other => panic!("unexpected fixture output {other}"),
        };
        let dims: Vec<usize> = found
            .dims()
            .into_iter()
            .filter(|&d| d != 1 || shape.contains(&1))
            .collect();
        assert_eq!(
            dims.iter().product::<usize>(),
            shape.iter().product::<usize>(),
            "{name} shape"
        );
        outputs.push((name, values(found), reference));
    }
    outputs
}

/// Loads `dir`'s checkpoint `weights`, runs its input and compares every output the fixture has.
fn check_weights(dir: &Path, weights: &str) {
    let name = dir.file_name().expect("fixture name").to_string_lossy();
    for (output, found, expected) in fixture_outputs(dir, &dir.join("config.json"), weights) {
        assert_parity(&format!("{name} {weights} {output}"), &found, &expected);
    }
}

/// Loads `dir`'s `model.safetensors`, runs its input and compares every output the fixture has.
fn check_fixture(dir: &Path) {
    check_weights(dir, "model.safetensors");
}

#[test]
fn timm_token_pooling_matches_timm() {
    check_fixture(&fixture("timm_token"));
}

#[test]
fn timm_avg_pooling_with_layer_scale_matches_timm() {
    check_fixture(&fixture("timm_avg_ls"));
}

#[test]
fn hf_vit_classifier_with_interpolated_positions_matches_transformers() {
    check_fixture(&fixture("hf_vit_classifier"));
}

#[test]
fn hf_vit_model_with_pooler_matches_transformers() {
    check_fixture(&fixture("hf_vit_pooler"));
}

#[test]
fn hf_dinov2_on_a_non_square_input_matches_transformers() {
    check_fixture(&fixture("hf_dinov2"));
}

/// The same DINOv2 saved by transformers 5.24 in three shards behind
/// `model.safetensors.index.json`. Catches shards other than the first left unread (missing
/// tensors) and the index's map ignored.
#[test]
fn hf_dinov2_in_shards_matches_transformers() {
    check_weights(
        &fixture("hf_dinov2_sharded"),
        "model.safetensors.index.json",
    );
}

/// The parity bound is tight enough to see a LayerNorm eps of 1e-5 instead of the checkpoint's
/// 1e-6 (issue 20: at the former bound of 1e-4 this mutation passed every parity test). The
/// same mutation in timm's config (`vit/timm.rs`, `layer_norm_eps: 1e-6` → `1e-5`) makes
/// `timm_token` fail at 5.4e-5 and `timm_avg_ls` at 1.2e-5.
#[test]
fn the_parity_bound_sees_a_wrong_layer_norm_eps() {
    let dir = fixture("hf_dinov2");
    let config = std::fs::read_to_string(dir.join("config.json")).expect("config");
    assert!(config.contains("\"layer_norm_eps\": 1e-06"), "{config}");
    let tmp = tempfile::tempdir().expect("tmp");
    let wrong = tmp.path().join("config.json");
    std::fs::write(
        &wrong,
        config.replace("\"layer_norm_eps\": 1e-06", "\"layer_norm_eps\": 1e-05"),
    )
    .expect("write");
    let outputs = fixture_outputs(&dir, &wrong, "model.safetensors");
    for (output, found, expected) in outputs {
        let (error, _) = parity_error(&output, &found, &expected);
        eprintln!("parity hf_dinov2 {output} with eps 1e-5: {error:.2e}");
        assert!(
            error > PARITY,
            "hf_dinov2 {output}: eps 1e-5 gives {error:e}, within the bound {PARITY:e}"
        );
    }
}

/// torchvision's `VisionTransformer` read from the `.pth` `torch.save` writes, under both
/// generations of its MLP names. Catches a wrong name map (a missing tensor), `in_proj`
/// split or transposed, the head read from the wrong token, and big-endian or f16 handling of
/// the PyTorch reader's bytes.
#[test]
fn torchvision_vit_from_pth_matches_torchvision() {
    let dir = fixture("torchvision_vit");
    check_weights(&dir, "model.pth");
    check_weights(&dir, "model_legacy.pth");
}

/// Cutting the head to some classes keeps exactly those logit columns, in the order asked
/// (the official ImageNet-1k → 100 cut). Catches rows taken from the wrong axis of Burn's
/// `[in, out]` Linear weight, the bias left uncut, and the order ignored.
#[test]
fn a_head_cut_to_some_classes_keeps_their_logits() {
    let dir = fixture("torchvision_vit");
    let device = Device::default();
    let load = || {
        VisionTransformer::from_pretrained(
            dir.join("config.json"),
            dir.join("model.pth"),
            &LoraConfig::new(),
            0,
            &device,
        )
        .expect("load")
    };
    let (shape, pixels) = read(&dir.join("input.safetensors"), "pixel_values");
    let pixels = Tensor::<4>::from_data(TensorData::new(pixels, shape), &device);
    let full = values(
        load()
            .forward(pixels.clone())
            .expect("forward")
            .logits
            .expect("logits"),
    );
    let cut = load().select_classes(&[3, 0, 4]).expect("cut");
    assert_eq!(cut.config.num_classes, Some(3));
    let found = values(
        cut.forward(pixels)
            .expect("forward")
            .logits
            .expect("logits"),
    );
    let expected: Vec<f32> = (0..2)
        .flat_map(|b| [3, 0, 4].map(|c| full[b * 5 + c]))
        .collect();
    assert_parity("cut head", &found, &expected);
    let err = load().select_classes(&[1, 5]).expect_err("row 5 of 5");
    assert!(err.to_string().contains("row 5"), "{err}");
}

/// A PyTorch checkpoint cut short is refused naming the file, not read as zeros.
#[test]
fn a_truncated_pth_is_refused_by_name() {
    let dir = fixture("torchvision_vit");
    let bytes = std::fs::read(dir.join("model.pth")).expect("pth");
    let scratch = tempfile::tempdir().expect("tmp");
    let tmp = scratch.path().join("gs-lora-cut.pth");
    std::fs::write(&tmp, &bytes[..bytes.len() / 2]).expect("write");
    let err = VisionTransformer::from_pretrained(
        dir.join("config.json"),
        &tmp,
        &LoraConfig::new(),
        0,
        &Device::default(),
    )
    .expect_err("a truncated checkpoint");
    assert!(matches!(err, ModelError::Pytorch { .. }), "{err}");
    assert!(err.to_string().contains("gs-lora-cut.pth"), "{err}");
}

#[test]
fn gslora_face_transformer_with_merged_adapters_matches_the_official_code() {
    let dir = fixture("gslora_face");
    check_fixture(&dir);
    // The official trainer's `Backbone_VIT_Epoch_*.pth` layout: the same state dict pickled.
    check_weights(&dir, "model.pth");

    // The training logits s·(cos − m·onehot(y)), which GS-LoRA's evaluation also reports.
    let device = Device::default();
    let model = VisionTransformer::from_pretrained(
        dir.join("config.json"),
        dir.join("model.safetensors"),
        &LoraConfig::new(),
        0,
        &device,
    )
    .expect("load");
    let (shape, pixels) = read(&dir.join("input.safetensors"), "pixel_values");
    let (_, labels) = read(&dir.join("input.safetensors"), "labels");
    let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    let output = model
        .forward(Tensor::from_data(TensorData::new(pixels, shape), &device))
        .expect("forward");
    let Some(Head::CosFace(cosface)) = &model.head else {
        panic!("the face Transformer has a CosFace head");
    };
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [2]), &device);
    let margin = cosface.forward_with_margin(output.embedding, labels);
    let (_, expected) = read(&dir.join("output.safetensors"), "logits_with_margin");
    assert_parity("face logits with margin", &values(margin), &expected);
}

#[test]
fn position_grid_resampling_matches_pytorch_bicubic() {
    let path = fixture("resample.safetensors");
    let (_, grid) = read(&path, "grid");
    for (h, w) in [(4, 5), (9, 11), (7, 7)] {
        for (name, kind) in [
            ("plain", PosResample::Bicubic),
            ("aa", PosResample::BicubicAntialias),
        ] {
            let (_, expected) = read(&path, &format!("{name}_{h}x{w}"));
            let found = resample_grid(&grid, (7, 7), (h, w), 3, kind);
            assert_parity(&format!("{name} 7x7 -> {h}x{w}"), &found, &expected);
        }
    }
}

#[test]
fn every_block_is_one_adapter_group() {
    let dir = fixture("timm_token");
    let model = VisionTransformer::from_pretrained(
        dir.join("config.json"),
        dir.join("model.safetensors"),
        &LoraConfig::new(),
        0,
        &Device::default(),
    )
    .expect("load");
    let groups = model.lora_groups();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1].name, "blocks.1");
    assert_eq!(groups[0].layers[0].d_output(), 192);
    assert!(group_norms(&model).expect("norms").iter().all(|n| *n > 0.0));
}

/// The shared data directory holding `entry`: `$GS_LORA_DATA`, else `../shared/data` beside the
/// repository. Without it the test `test` is skipped, saying so, unless `GS_LORA_REQUIRE_DATA=1`
/// (set by CI, where the data is present): then its absence fails the test.
fn shared_data(entry: &str, test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("GS_LORA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    if dir.join(entry).is_dir() {
        return Some(dir);
    }
    let message = format!(
        "{test}: no {} (set GS_LORA_DATA to the folder holding {entry}/)",
        dir.join(entry).display()
    );
    assert!(
        std::env::var("GS_LORA_REQUIRE_DATA").as_deref() != Ok("1"),
        "GS_LORA_REQUIRE_DATA=1 but {message}"
    );
    eprintln!("SKIPPED {message}");
    None
}

#[test]
fn real_dinov2_small_reproduces_transformers() {
    let Some(data) = shared_data("dinov2-small", "real_dinov2_small_reproduces_transformers")
    else {
        return;
    };
    let dir = data.join("dinov2-small");
    let device = Device::default();
    let model = VisionTransformer::from_pretrained(
        dir.join("config.json"),
        dir.join("model.safetensors"),
        &LoraConfig::new(),
        0,
        &device,
    )
    .expect("real DINOv2-S loads");
    let reference = dir.join("reference_224.safetensors");
    let (shape, pixels) = read(&reference, "pixel_values");
    let output = model
        .forward(Tensor::from_data(TensorData::new(pixels, shape), &device))
        .expect("forward");
    let (_, hidden) = read(&reference, "last_hidden_state");
    let (_, pooled) = read(&reference, "pooler_output");
    assert_eq!(output.last_hidden_state.dims(), [2, 257, 384]);
    assert_parity(
        "DINOv2-S last_hidden_state",
        &values(output.last_hidden_state),
        &hidden,
    );
    assert_parity(
        "DINOv2-S pooler_output",
        &values(output.pooler_output.expect("pooler")),
        &pooled,
    );
}

#[test]
fn bad_checkpoints_and_inputs_are_clear_errors() {
    let device = Device::default();
    let dir = fixture("timm_token");
    let scratch = tempfile::tempdir().expect("tmp");
    let tmp = scratch.path();
    let load = |config: &Path, weights: &Path| {
        VisionTransformer::from_pretrained(config, weights, &LoraConfig::new(), 0, &device)
    };

    // Truncated weights.
    let bytes = std::fs::read(dir.join("model.safetensors")).expect("weights");
    let truncated = tmp.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let err = load(&dir.join("config.json"), &truncated).expect_err("truncated file");
    assert!(matches!(err, ModelError::Safetensors { .. }), "{err}");

    // A config that does not match the weights: wider model.
    let config = std::fs::read_to_string(dir.join("config.json")).expect("config");
    let wider = tmp.join("wider.json");
    std::fs::write(
        &wider,
        config.replace("\"embed_dim\": 48", "\"embed_dim\": 96"),
    )
    .expect("write");
    let err = load(&wider, &dir.join("model.safetensors")).expect_err("mis-shaped");
    let message = err.to_string();
    assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{message}");
    assert!(
        message.contains("patch_embed.proj.weight") && message.contains("96"),
        "{message}"
    );

    // Fewer classes than the head: the head is mis-shaped.
    let fewer = tmp.join("fewer.json");
    std::fs::write(
        &fewer,
        config.replace("\"num_classes\": 5", "\"num_classes\": 3"),
    )
    .expect("write");
    let err = load(&fewer, &dir.join("model.safetensors")).expect_err("head");
    assert!(err.to_string().contains("head.weight"), "{err}");

    // A shallower config leaves block 1 unread: unexpected tensors.
    let shallow = tmp.join("shallow.json");
    std::fs::write(&shallow, config.replace("\"depth\": 2", "\"depth\": 1")).expect("write");
    let err = load(&shallow, &dir.join("model.safetensors")).expect_err("unexpected");
    assert!(matches!(err, ModelError::UnexpectedTensors { .. }), "{err}");
    assert!(err.to_string().contains("blocks.1."), "{err}");

    // A deeper config asks for a block the weights lack.
    let deep = tmp.join("deep.json");
    std::fs::write(&deep, config.replace("\"depth\": 2", "\"depth\": 3")).expect("write");
    let err = load(&deep, &dir.join("model.safetensors")).expect_err("missing");
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{err}");
    assert!(err.to_string().contains("blocks.2."), "{err}");

    // Unknown timm preset.
    let err =
        VitConfig::from_json(r#"{"architecture": "vit_huge_patch99_1"}"#).expect_err("preset");
    assert!(err.to_string().contains("vit_huge_patch99_1"), "{err}");

    // An input whose size is not a multiple of the patch.
    let model = load(&dir.join("config.json"), &dir.join("model.safetensors")).expect("load");
    let err = model
        .forward(Tensor::zeros([1, 3, 30, 32], &device))
        .expect_err("30 is not a multiple of 8");
    assert!(err.to_string().contains("30x32"), "{err}");
    let err = model
        .forward(Tensor::zeros([1, 1, 32, 32], &device))
        .expect_err("one channel");
    assert!(err.to_string().contains("3 input channels"), "{err}");
}
