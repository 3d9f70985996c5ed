//! Deformable DETR against Hugging Face's `DeformableDetrForObjectDetection` on the small random
//! checkpoint made by `tools/make_deform_fixtures.py`: `logits` and `pred_boxes` of two unpadded
//! images, and one adapter group per encoder and decoder layer.

use burn::tensor::{Device, Tensor};
use gs_lora_core::{LoraConfig, LoraModel};
use gs_lora_models::ModelError;
use gs_lora_models::deformable::{DeformableDetr, DeformableDetrConfig};
use gs_lora_models::resnet::ResNetConfig;
use gs_lora_models::weights::{IdentityKeys, SafetensorsSource, read_tensor};

mod common;
use common::{assert_parity, fixture, values};

fn config() -> DeformableDetrConfig {
    DeformableDetrConfig {
        d_model: 32,
        encoder_layers: 1,
        decoder_layers: 2,
        encoder_heads: 2,
        decoder_heads: 2,
        encoder_ffn_dim: 24,
        decoder_ffn_dim: 24,
        num_queries: 5,
        num_feature_levels: 4,
        encoder_points: 2,
        decoder_points: 2,
        num_labels: 3,
        backbone: ResNetConfig {
            in_channels: 3,
            stem_width: 64,
            widths: vec![8, 16, 32, 64],
            depths: vec![1, 1, 1, 1],
        },
    }
}

fn load(device: &Device) -> DeformableDetr {
    let dir = fixture("detr");
    let mut source =
        SafetensorsSource::open(dir.join("model.safetensors"), IdentityKeys).expect("fixture");
    DeformableDetr::load(&config(), &mut source, &LoraConfig::new(), 0, device).expect("load")
}

#[test]
fn logits_and_boxes_match_transformers() {
    let device = Device::default();
    let model = load(&device);
    let dir = fixture("detr");
    let pixels = read_tensor(dir.join("input.safetensors"), "pixel_values").expect("input");
    let output = model
        .forward(Tensor::from_data(pixels, &device))
        .expect("forward");
    for (name, found) in [("logits", output.logits), ("pred_boxes", output.pred_boxes)] {
        let expected: Vec<f32> = read_tensor(dir.join("output.safetensors"), name)
            .expect(name)
            .try_to_vec()
            .expect("f32");
        assert_parity(name, &values(found), &expected);
    }
}

#[test]
fn every_layer_is_one_adapter_group_and_bad_inputs_are_refused() {
    let device = Device::default();
    let model = load(&device);
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
