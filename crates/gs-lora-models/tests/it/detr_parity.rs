//! Deformable DETR against Hugging Face's `DeformableDetrForObjectDetection` on the small random
//! checkpoint made by `tools/make_deform_fixtures.py` (its `config.json` and transformers-5
//! tensor names): `logits` and `pred_boxes` of two unpadded images and of a padded batch with a
//! pixel mask, one adapter group per encoder and decoder layer, both generations of tensor
//! names, tied heads written once (transformers ≥ 5.24) or under every name, and refused
//! configs.

use burn::tensor::{Bool, Device, Tensor, TensorData};
use gs_lora_core::{LoraConfig, LoraModel};
use gs_lora_models::ModelError;
use std::collections::BTreeSet;

use gs_lora_models::deformable::{
    DeformableDetr, DeformableDetrConfig, DetrKeys, DetrOutput, QuerySource,
};
use gs_lora_models::weights::{KeyMap, read_tensor, write_tensors};

use crate::common::{assert_parity, fixture, values};

/// The checkpoint of the fixture directory `name`.
fn load(name: &str, device: &Device) -> DeformableDetr {
    let dir = fixture(name);
    DeformableDetr::from_pretrained(
        dir.join("config.json"),
        dir.join("model.safetensors"),
        &LoraConfig::new(),
        0,
        device,
    )
    .expect("load")
}

/// `logits` and `pred_boxes` of `output` against those saved in `reference` (`what` names the
/// case in messages).
fn assert_matches_reference(
    what: &str,
    output: DetrOutput,
    reference: impl AsRef<std::path::Path>,
) {
    for (name, found) in [("logits", output.logits), ("pred_boxes", output.pred_boxes)] {
        let expected: Vec<f32> = read_tensor(reference.as_ref(), name)
            .expect(name)
            .try_to_vec()
            .expect("f32");
        assert_parity(&format!("{what} {name}"), &values(found), &expected);
    }
}

/// The model's outputs for the fixture's `input.safetensors` against its `output.safetensors`.
fn assert_fixture_output(model: &DeformableDetr, dir: &std::path::Path, device: &Device) {
    let pixels = read_tensor(dir.join("input.safetensors"), "pixel_values").expect("input");
    let output = model
        .forward(Tensor::from_data(pixels, device))
        .expect("forward");
    let what = dir.file_name().expect("fixture name").to_string_lossy();
    assert_matches_reference(&what, output, dir.join("output.safetensors"));
}

#[test]
fn logits_and_boxes_match_transformers() {
    let device = Device::default();
    let model = load("detr", &device);
    let dir = fixture("detr");
    assert_fixture_output(&model, &dir, &device);
}

/// Iterative box refinement: every decoder layer's box head moves the reference boxes of the
/// next (a second small random checkpoint, `with_box_refine` in its `config.json`).
#[test]
fn box_refinement_matches_transformers() {
    let device = Device::default();
    let dir = fixture("detr_refine");
    let model = load("detr_refine", &device);
    assert!(model.config.with_box_refine);
    assert_eq!(model.bbox_embed.len(), 2, "one box head per decoder layer");
    assert_fixture_output(&model, &dir, &device);
}

/// Two stages: encoder tokens propose boxes, the best five become the decoder's queries (a
/// third small random checkpoint, `two_stage` and `with_box_refine` in its `config.json`).
#[test]
fn two_stage_models_match_transformers() {
    let device = Device::default();
    let dir = fixture("detr_two_stage");
    let model = load("detr_two_stage", &device);
    assert!(model.config.two_stage && matches!(model.queries, QuerySource::Proposals(_)));
    assert_fixture_output(&model, &dir, &device);
    let error =
        DeformableDetrConfig::from_json(r#"{"model_type": "deformable_detr", "two_stage": true}"#)
            .expect_err("two stages without box refinement");
    assert!(error.to_string().contains("with_box_refine"), "{error}");
}

/// A padded batch with Hugging Face's `pixel_mask`: the second image's real part is 96×64 of
/// the 128×96 batch.
#[test]
fn padded_batches_match_transformers() {
    let device = Device::default();
    let model = load("detr", &device);
    let input = fixture("detr").join("input_padded.safetensors");
    let pixels = read_tensor(&input, "pixel_values").expect("pixels");
    let mask: Vec<bool> = read_tensor(&input, "pixel_mask")
        .expect("mask")
        .try_to_vec::<f32>()
        .expect("f32")
        .into_iter()
        .map(|v| v > 0.5)
        .collect();
    let mask = Tensor::<3, Bool>::from_data(TensorData::new(mask, [2, 128, 96]), &device);
    let output = model
        .forward_masked(Tensor::from_data(pixels, &device), Some(mask.clone()))
        .expect("forward");
    assert_matches_reference(
        "detr padded",
        output,
        fixture("detr").join("output_padded.safetensors"),
    );
    let error = model
        .forward_masked(
            Tensor::zeros([2, 3, 128, 96], &device),
            Some(mask.bool_not()),
        )
        .expect_err("padding at the top-left");
    assert!(
        error.to_string().contains("image 0 padded at its top-left"),
        "{error}"
    );
    let error = model
        .forward_masked(
            Tensor::zeros([2, 3, 128, 96], &device),
            Some(Tensor::<3, Bool>::from_data(
                TensorData::new(vec![true; 2 * 64 * 96], [2, 64, 96]),
                &device,
            )),
        )
        .expect_err("mask of another size");
    assert!(error.to_string().contains("[2, 128, 96]"), "{error}");
}

/// A tensor name of transformers 5 in the older generation's spelling (released checkpoints):
/// the backbone under `conv_encoder`, `fc1` / `fc2` without `mlp.`, `out_proj` for `o_proj`.
fn older_name(name: &str) -> String {
    name.replace(
        "model.backbone.model.",
        "model.backbone.conv_encoder.model.",
    )
    .replace(".mlp.fc1.", ".fc1.")
    .replace(".mlp.fc2.", ".fc2.")
    .replace(".self_attn.o_proj.", ".self_attn.out_proj.")
}

/// A checkpoint in the older generation of tensor names loads and runs to the same outputs as
/// the transformers-5 names: each fixture's weights renamed, written to a temporary file, and
/// the outputs compared with the fixture's reference. Catches a key map that reads a renamed
/// tensor from the wrong place (e.g. `fc2` read as `fc1`, or the legacy backbone prefix
/// applied to the heads), which the key-map test below cannot see.
#[test]
fn a_checkpoint_with_the_older_tensor_names_runs_like_the_new_one() {
    let device = Device::default();
    for name in ["detr", "detr_refine", "detr_two_stage"] {
        let dir = fixture(name);
        let bytes = std::fs::read(dir.join("model.safetensors")).expect("weights");
        let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let tensors: Vec<(String, safetensors::tensor::TensorView)> = file
            .tensors()
            .into_iter()
            .map(|(key, view)| (older_name(&key), view))
            .collect();
        let renamed = tensors
            .iter()
            .filter(|(key, _)| file.tensor(key).is_err())
            .count();
        for (old, new) in [
            (".backbone.conv_encoder.model.", ".backbone.model."),
            (".fc1.", ".mlp.fc1."),
            (".fc2.", ".mlp.fc2."),
            (".self_attn.out_proj.", ".self_attn.o_proj."),
        ] {
            assert!(
                tensors.iter().any(|(key, _)| key.contains(old))
                    && !tensors.iter().any(|(key, _)| key.contains(new)),
                "{name}: every `{new}` renamed to `{old}`"
            );
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let weights = tmp.path().join("model.safetensors");
        safetensors::serialize_to_file(tensors, None, &weights).expect("write renamed weights");
        let model = DeformableDetr::from_pretrained(
            dir.join("config.json"),
            &weights,
            &LoraConfig::new(),
            0,
            &device,
        )
        .unwrap_or_else(|err| panic!("{name} with the older names: {err}"));
        eprintln!("{name}: {renamed} tensors renamed to the older generation");
        assert_fixture_output(&model, &dir, &device);
    }
}

#[test]
fn every_layer_is_one_adapter_group_and_bad_inputs_are_refused() {
    let device = Device::default();
    let model = load("detr", &device);
    let names: Vec<String> = model.lora_groups().into_iter().map(|g| g.name).collect();
    assert_eq!(
        names,
        ["encoder.layers.0", "decoder.layers.0", "decoder.layers.1"]
    );
    let error = model
        .forward(Tensor::zeros([1, 1, 128, 128], &device))
        .expect_err("one channel");
    assert!(matches!(error, ModelError::Input { .. }), "{error}");
    let error = model
        .forward(Tensor::zeros([1, 3, 16, 16], &device))
        .expect_err("too small for four levels");
    assert!(error.to_string().contains("[1, 3, 16, 16]"), "{error}");
}

#[test]
fn the_config_is_read_from_config_json() {
    let config =
        DeformableDetrConfig::from_file(fixture("detr").join("config.json")).expect("config");
    assert_eq!(
        (
            config.d_model,
            config.encoder_layers,
            config.decoder_layers,
            config.num_queries
        ),
        (32, 1, 2, 5)
    );
    assert_eq!((config.num_labels, config.num_feature_levels), (3, 4));
    assert_eq!(config.backbone.widths, vec![8, 16, 32, 64]);
    assert_eq!(config.backbone.depths, vec![1, 1, 1, 1]);
    // The reference's defaults for what a config leaves out.
    let defaults =
        DeformableDetrConfig::from_json(r#"{"model_type": "deformable_detr"}"#).expect("defaults");
    assert_eq!(
        (
            defaults.d_model,
            defaults.num_queries,
            defaults.backbone.depths
        ),
        (256, 300, vec![3, 4, 6, 3])
    );
    for (json, says) in [
        (r#"{"model_type": "detr"}"#, "deformable_detr"),
        (
            r#"{"model_type": "deformable_detr", "backbone": "swin"}"#,
            "swin",
        ),
        (
            r#"{"model_type": "deformable_detr", "d_model": "wide"}"#,
            "d_model",
        ),
    ] {
        let error = DeformableDetrConfig::from_json(json).expect_err(json);
        assert!(error.to_string().contains(says), "{json}: {error}");
    }
}

#[test]
fn both_generations_of_tensor_names_are_read() {
    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    let two_layers = DeformableDetrConfig::from_json(
        r#"{"model_type": "deformable_detr", "decoder_layers": 2}"#,
    )
    .expect("config");
    // transformers 5: backbone under `model.backbone.model`, `mlp.fc1`, `o_proj`.
    let new = DetrKeys::new(
        &names(&[
            "model.backbone.model.conv1.weight",
            "model.encoder.layers.0.mlp.fc1.weight",
            "model.decoder.layers.0.self_attn.o_proj.weight",
        ]),
        &two_layers,
    );
    assert_eq!(
        new.file_keys("model.encoder.layers.0.fc1.weight"),
        ["model.encoder.layers.0.mlp.fc1.weight"]
    );
    assert_eq!(
        new.file_keys("model.decoder.layers.1.self_attn.out_proj.bias"),
        ["model.decoder.layers.1.self_attn.o_proj.bias"]
    );
    assert_eq!(
        new.file_keys("model.backbone.model.conv1.weight"),
        ["model.backbone.model.conv1.weight"]
    );
    // Released checkpoints: `conv_encoder`, `fc1`, `out_proj`.
    let old = DetrKeys::new(
        &names(&[
            "model.backbone.conv_encoder.model.conv1.weight",
            "model.encoder.layers.0.fc1.weight",
        ]),
        &two_layers,
    );
    assert_eq!(
        old.file_keys("model.backbone.model.layer1.0.conv1.weight"),
        ["model.backbone.conv_encoder.model.layer1.0.conv1.weight"]
    );
    assert_eq!(
        old.file_keys("model.encoder.layers.0.fc1.weight"),
        ["model.encoder.layers.0.fc1.weight"]
    );
    // The per-level copies of the heads other than the last may stay unread; the last may not.
    assert!(old.is_ignored("class_embed.0.weight") && old.is_ignored("bbox_embed.0.layers.2.bias"));
    assert!(!old.is_ignored("class_embed.1.weight") && !old.is_ignored("model.level_embed"));
    // With box refinement every level's box head is read, the decoder's alias of them is not.
    let refine = DetrKeys::new(
        &names(&["model.encoder.layers.0.fc1.weight"]),
        &DeformableDetrConfig {
            with_box_refine: true,
            ..two_layers
        },
    );
    assert!(!refine.is_ignored("bbox_embed.0.layers.2.bias"));
    assert!(refine.is_ignored("class_embed.0.weight"));
    assert!(refine.is_ignored("model.decoder.bbox_embed.0.layers.2.bias"));
}

/// A checkpoint's float tensors as `(name, f32 data)`, sorted by name (the batch norms'
/// integer `num_batches_tracked`, which the loader ignores, left out).
fn tensors_of(weights: &std::path::Path) -> Vec<(String, TensorData)> {
    let bytes = std::fs::read(weights).expect("weights");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut tensors: Vec<(String, TensorData)> = file
        .tensors()
        .into_iter()
        .filter(|(key, _)| !key.ends_with("num_batches_tracked"))
        .map(|(key, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{key}");
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (key, TensorData::new(values, view.shape().to_vec()))
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// The names of `tensors` that are detection heads (`[model.decoder.]{class,bbox}_embed.N`),
/// cut after the level: `class_embed.0`, `model.decoder.bbox_embed.1`, ….
fn head_names(tensors: &[(String, TensorData)]) -> BTreeSet<String> {
    tensors
        .iter()
        .filter_map(|(key, _)| {
            let tail = key.strip_prefix("model.decoder.").unwrap_or(key);
            let mut parts = tail.splitn(3, '.');
            let (kind, level) = (parts.next()?, parts.next()?);
            let prefix = &key[..key.len() - tail.len()];
            matches!(kind, "class_embed" | "bbox_embed").then(|| format!("{prefix}{kind}.{level}"))
        })
        .collect()
}

/// `tensors` written to a temporary checkpoint, loaded with the `config.json` of the fixture
/// `name`.
fn load_rewritten(
    name: &str,
    tensors: Vec<(String, TensorData)>,
    device: &Device,
) -> gs_lora_models::Result<DeformableDetr> {
    let tmp = tempfile::tempdir().expect("tmp");
    let weights = tmp.path().join("model.safetensors");
    write_tensors(&weights, tensors).expect("write weights");
    DeformableDetr::from_pretrained(
        fixture(name).join("config.json"),
        &weights,
        &LoraConfig::new(),
        0,
        device,
    )
}

/// transformers 5.24's `save_pretrained` on box-refining models (`detr_refine_tied/`,
/// `detr_two_stage_tied/`, written by transformers 5.24 itself): the per-level box heads only
/// under the decoder's names (`model.decoder.bbox_embed.N.*`), the class head once
/// (`class_embed.0.*`) in the single-stage model and only under the decoder's names in the
/// two-stage one. Both load and match transformers. Catches a loader that asks for the
/// top-level copies the older versions wrote (`detr_refine/`, `detr_two_stage/`).
#[test]
fn tied_heads_of_refining_models_load_as_transformers_5_24_writes_them() {
    let device = Device::default();
    for (name, expected) in [
        (
            "detr_refine_tied",
            vec![
                "class_embed.0",
                "model.decoder.bbox_embed.0",
                "model.decoder.bbox_embed.1",
            ],
        ),
        (
            "detr_two_stage_tied",
            vec![
                "model.decoder.bbox_embed.0",
                "model.decoder.bbox_embed.1",
                "model.decoder.bbox_embed.2",
                "model.decoder.class_embed.0",
                "model.decoder.class_embed.1",
                "model.decoder.class_embed.2",
            ],
        ),
    ] {
        let dir = fixture(name);
        let heads = head_names(&tensors_of(&dir.join("model.safetensors")));
        let expected: BTreeSet<String> = expected.into_iter().map(String::from).collect();
        assert_eq!(heads, expected, "{name} as transformers 5.24 writes it");
        let model = load(name, &device);
        assert!(model.config.with_box_refine);
        assert_fixture_output(&model, &dir, &device);
    }
}

/// transformers 5.24's `save_pretrained` writes each tied tensor once: without box refinement
/// the decoder levels' one class head and one box head are `class_embed.0.*` and
/// `bbox_embed.0.*` only (`detr_tied/`, written by transformers 5.24 itself, with the released
/// checkpoints' layer names). It loads and matches transformers; and the same weights with every
/// level's copy and the decoder's aliases written out (the older layout) give the same outputs,
/// as the older fixture `detr/` (every copy) does with its copies dropped.
#[test]
fn tied_heads_written_once_load_like_every_copy() {
    let device = Device::default();
    let dir = fixture("detr_tied");
    let tied = tensors_of(&dir.join("model.safetensors"));
    assert_eq!(
        head_names(&tied),
        BTreeSet::from(["bbox_embed.0".to_string(), "class_embed.0".to_string()]),
        "detr_tied/ holds each head once, as transformers 5.24 writes it"
    );
    let model = load("detr_tied", &device);
    assert!(!model.config.with_box_refine && model.config.decoder_layers == 2);
    assert_fixture_output(&model, &dir, &device);

    // Every copy: `class_embed.1`, `bbox_embed.1` and the decoder's aliases of both levels.
    let mut every = tied.clone();
    for (key, data) in &tied {
        if key.starts_with("class_embed.0.") || key.starts_with("bbox_embed.0.") {
            every.push((key.replacen(".0.", ".1.", 1), data.clone()));
            for level in ["0", "1"] {
                every.push((
                    format!(
                        "model.decoder.{}",
                        key.replacen(".0.", &format!(".{level}."), 1)
                    ),
                    data.clone(),
                ));
            }
        }
    }
    assert_eq!(head_names(&every).len(), 8);
    let full = load_rewritten("detr_tied", every, &device).expect("every copy");
    let pixels = read_tensor(dir.join("input.safetensors"), "pixel_values").expect("input");
    let [a, b] = [&model, &full].map(|m| {
        m.forward(Tensor::from_data(pixels.clone(), &device))
            .expect("forward")
    });
    assert_eq!(values(a.logits), values(b.logits), "same logits");
    assert_eq!(values(a.pred_boxes), values(b.pred_boxes), "same boxes");

    // The older fixture (every copy) with the copies dropped as transformers 5.24 drops them.
    let older = tensors_of(&fixture("detr").join("model.safetensors"));
    assert!(head_names(&older).contains("class_embed.1"));
    let once: Vec<_> = older
        .into_iter()
        .filter(|(key, _)| !key.starts_with("class_embed.1.") && !key.starts_with("bbox_embed.1."))
        .collect();
    let model = load_rewritten("detr", once, &device)
        .expect("detr/ with class_embed.0 and bbox_embed.0 only");
    assert_fixture_output(&model, &fixture("detr"), &device);
}

/// transformers 5.24 writes a box-refining model's box heads under the decoder's alias only
/// (`model.decoder.bbox_embed.N`) and its class heads, which it ties, as `class_embed.0`; a
/// two-stage model's heads (levels and proposals) under `model.decoder.*` only. The older
/// fixtures rewritten to those layouts run as before; a level without a box head is still
/// missing.
#[test]
fn refining_and_two_stage_heads_load_from_any_alias() {
    let device = Device::default();
    let refine = tensors_of(&fixture("detr_refine").join("model.safetensors"));
    let as_saved: Vec<_> = refine
        .iter()
        .filter(|(key, _)| !key.starts_with("bbox_embed.") && !key.starts_with("class_embed.1."))
        .cloned()
        .collect();
    assert_eq!(
        head_names(&as_saved),
        BTreeSet::from(
            [
                "class_embed.0",
                "model.decoder.bbox_embed.0",
                "model.decoder.bbox_embed.1"
            ]
            .map(String::from)
        )
    );
    let model = load_rewritten("detr_refine", as_saved.clone(), &device)
        .expect("refine as transformers 5.24 saves it");
    assert_eq!(model.bbox_embed.len(), 2);
    assert_fixture_output(&model, &fixture("detr_refine"), &device);

    // Box refinement needs every level's box head, under one name or the other.
    let without_level_0: Vec<_> = as_saved
        .into_iter()
        .filter(|(key, _)| !key.starts_with("model.decoder.bbox_embed.0."))
        .collect();
    let error = load_rewritten("detr_refine", without_level_0, &device)
        .expect_err("no box head for level 0");
    assert!(
        matches!(&error, ModelError::MissingTensor { key, .. } if key.starts_with("bbox_embed.0.")),
        "{error}"
    );

    let two_stage = tensors_of(&fixture("detr_two_stage").join("model.safetensors"));
    let as_saved: Vec<_> = two_stage
        .into_iter()
        .filter(|(key, _)| !key.starts_with("bbox_embed.") && !key.starts_with("class_embed."))
        .collect();
    assert_eq!(head_names(&as_saved).len(), 6, "three levels of both heads");
    let model = load_rewritten("detr_two_stage", as_saved, &device)
        .expect("two stages as transformers 5.24 saves them");
    assert_fixture_output(&model, &fixture("detr_two_stage"), &device);
}

/// Copies of one tied tensor that differ are refused, naming both: the file does not say which
/// the model was trained with.
#[test]
fn tied_copies_that_differ_are_refused() {
    let device = Device::default();
    let perturbed = |name: &str, victim: &str| {
        tensors_of(&fixture(name).join("model.safetensors"))
            .into_iter()
            .map(|(key, data)| match key == victim {
                true => {
                    let mut values: Vec<f32> = data.try_to_vec().expect("f32");
                    values[0] += 0.5;
                    (key, TensorData::new(values, data.shape().to_vec()))
                }
                false => (key, data),
            })
            .collect::<Vec<_>>()
    };
    for (name, read, victim) in [
        ("detr", "class_embed.1.weight", "class_embed.0.weight"),
        (
            "detr",
            "bbox_embed.1.layers.2.bias",
            "bbox_embed.0.layers.2.bias",
        ),
        (
            "detr_refine",
            "bbox_embed.1.layers.0.weight",
            "model.decoder.bbox_embed.1.layers.0.weight",
        ),
        (
            "detr_two_stage",
            "class_embed.2.bias",
            "model.decoder.class_embed.2.bias",
        ),
    ] {
        let error = load_rewritten(name, perturbed(name, victim), &device).expect_err(victim);
        let message = error.to_string();
        assert!(
            matches!(error, ModelError::TiedCopiesDiffer { .. })
                && message.contains(&format!("`{read}`"))
                && message.contains(&format!("`{victim}`"))
                && message.contains("model.safetensors"),
            "{name}: {message}"
        );
    }
    // With box refinement the class heads before the last are heads of their own (the
    // released checkpoints'): they may differ from the last, which alone is read.
    let model = load_rewritten(
        "detr_refine",
        perturbed("detr_refine", "class_embed.0.weight"),
        &device,
    )
    .expect("class_embed.0 unread");
    assert_fixture_output(&model, &fixture("detr_refine"), &device);
}

/// The key map's view of tied heads: whichever copy a file holds is read for the name the
/// model asks for, the model's own name first; the other copies may stay unread.
#[test]
fn the_key_map_reads_any_copy_of_a_tied_head() {
    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    let plain = DeformableDetrConfig::from_json(
        r#"{"model_type": "deformable_detr", "decoder_layers": 3}"#,
    )
    .expect("config");
    let once = DetrKeys::new(
        &names(&["class_embed.0.weight", "bbox_embed.0.layers.2.bias"]),
        &plain,
    );
    assert_eq!(
        once.file_keys("class_embed.2.weight"),
        ["class_embed.0.weight"]
    );
    assert_eq!(
        once.file_keys("bbox_embed.2.layers.2.bias"),
        ["bbox_embed.0.layers.2.bias"]
    );
    assert!(!once.is_ignored("class_embed.0.weight"));
    let every = DetrKeys::new(
        &names(&[
            "class_embed.0.weight",
            "class_embed.1.weight",
            "class_embed.2.weight",
            "model.decoder.class_embed.2.weight",
        ]),
        &plain,
    );
    assert_eq!(
        every.copies("class_embed.2.weight"),
        [
            "class_embed.2.weight",
            "class_embed.0.weight",
            "class_embed.1.weight",
            "model.decoder.class_embed.2.weight"
        ]
    );
    assert!(every.is_ignored("class_embed.0.weight") && !every.is_ignored("class_embed.2.weight"));
    assert!(every.copies("model.level_embed").is_empty());

    let refine = DeformableDetrConfig {
        with_box_refine: true,
        ..plain.clone()
    };
    let decoder_only = DetrKeys::new(
        &names(&[
            "class_embed.0.weight",
            "model.decoder.bbox_embed.0.layers.0.weight",
            "model.decoder.bbox_embed.1.layers.0.weight",
        ]),
        &refine,
    );
    // Each level's own box head, never another level's.
    assert_eq!(
        decoder_only.file_keys("bbox_embed.1.layers.0.weight"),
        ["model.decoder.bbox_embed.1.layers.0.weight"]
    );
    assert_eq!(
        decoder_only.file_keys("bbox_embed.2.layers.0.weight"),
        ["bbox_embed.2.layers.0.weight"],
        "missing, not read from another level"
    );
    assert_eq!(
        decoder_only.file_keys("class_embed.2.weight"),
        ["class_embed.0.weight"]
    );
    // A file with the last level's class head reads it and leaves the others unread.
    let per_level = DetrKeys::new(
        &names(&["class_embed.0.weight", "class_embed.2.weight"]),
        &refine,
    );
    assert_eq!(
        per_level.file_keys("class_embed.2.weight"),
        ["class_embed.2.weight"]
    );
    assert!(per_level.copies("class_embed.2.weight").len() == 1);
    assert!(per_level.is_ignored("class_embed.0.weight"));
    assert!(
        !per_level.is_ignored("bbox_embed.5.layers.0.weight"),
        "beyond the levels"
    );
}
