//! Dropout in the models: read from the configs, placed where the reference models place it,
//! active while training only. The only tests of this binary that draw from the backend's
//! random stream.

use burn::module::Module;
use burn::tensor::activation::{gelu, relu, softmax};
use burn::tensor::{Device, Distribution, Tensor};
use gs_lora_core::{LoraConfig, fused, seed_dropout};
use gs_lora_models::deformable::{DeformableDetr, DeformableDetrConfig};
use gs_lora_models::resnet::ResNetConfig;
use gs_lora_models::weights::SeededInit;
use gs_lora_models::{VisionTransformer, VitConfig};

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f64> {
    tensor.try_into_vec_as::<f64>().expect("f64 values")
}

const FACE: &str = r#"{"model_type": "vit_face", "image_size": 16, "patch_size": 8, "dim": 16,
    "depth": 2, "heads": 2, "dim_head": 8, "mlp_dim": 32, "num_class": 3}"#;

/// `x ⊙ mask / (1 − p)` with the next mask of the backend's stream, as dropout draws it.
fn masked<const D: usize>(x: Tensor<D>, p: f64) -> Tensor<D> {
    let keep = 1.0 - p;
    x.clone()
        * x.random_like(Distribution::Bernoulli(keep))
            .div_scalar(keep)
}

fn assert_near(found: Vec<f64>, expected: Vec<f64>, what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}");
    for (i, (f, e)) in found.iter().zip(&expected).enumerate() {
        assert!(
            (f - e).abs() <= 1e-5 * (1.0 + e.abs()),
            "{what}[{i}]: {f} vs {e}"
        );
    }
}

fn face_vit(dropout: f64, device: &Device) -> VisionTransformer {
    let config = VitConfig::from_json(FACE).expect("config");
    let model = VisionTransformer::load(
        &config,
        &mut SeededInit::new(0),
        &LoraConfig::new(),
        0,
        device,
    )
    .expect("model");
    model.with_dropout(dropout).expect("rate")
}

/// The face config reads the official `ViT_face(dropout=0.1, emb_dropout=0.1)`, torchvision
/// its `dropout`, and rates outside [0, 1) or two different face rates are refused.
#[test]
fn configs_read_their_dropout_rates() {
    assert_eq!(VitConfig::from_json(FACE).expect("face").dropout, 0.1);
    let set = FACE.replace(
        "\"num_class\": 3",
        "\"num_class\": 3, \"dropout\": 0.2, \"emb_dropout\": 0.2",
    );
    assert_eq!(VitConfig::from_json(&set).expect("face").dropout, 0.2);
    let two = FACE.replace("\"num_class\": 3", "\"num_class\": 3, \"emb_dropout\": 0.0");
    let err = VitConfig::from_json(&two).expect_err("two rates");
    assert!(err.to_string().contains("emb_dropout 0"), "{err}");
    let bad = FACE.replace(
        "\"num_class\": 3",
        "\"num_class\": 3, \"dropout\": 1.0, \"emb_dropout\": 1.0",
    );
    let err = VitConfig::from_json(&bad).expect_err("rate 1");
    assert!(
        err.to_string()
            .contains("dropout must be a probability in [0, 1), found 1"),
        "{err}"
    );
    let tv =
        VitConfig::from_json(r#"{"model_type": "torchvision_vit", "dropout": 0.1}"#).expect("tv");
    assert_eq!(tv.dropout, 0.1);
    let err =
        VitConfig::from_json(r#"{"model_type": "torchvision_vit", "attention_dropout": 0.1}"#)
            .expect_err("attention dropout");
    assert!(err.to_string().contains("attention_dropout 0.1"), "{err}");
    let hf = DeformableDetrConfig::from_json(r#"{"model_type": "deformable_detr"}"#).expect("detr");
    assert_eq!(
        (hf.dropout, hf.activation_dropout, hf.attention_dropout),
        (0.1, 0.0, 0.0)
    );
    let err = face_vit(0.0, &Device::default())
        .with_dropout(-0.5)
        .expect_err("negative");
    assert!(err.to_string().contains("found -0.5"), "{err}");
}

/// The face ViT's FFN drops after the GELU and after `fc2`, its attention after `proj`, its
/// embedding after the position embedding: each checked against the same ops composed by hand
/// with the masks drawn in that order. Evaluation (`valid()`) ignores the rate. Catches a
/// dropout left out, moved, or applied at evaluation.
#[test]
fn the_vit_drops_where_the_face_vit_does_while_training_only() {
    let p = 0.5;
    let device = Device::default().autodiff();
    let model = face_vit(p, &device);
    let devices = [device.clone()];
    let x = Tensor::<3>::random([2, 5, 16], Distribution::Uniform(-1.0, 1.0), &device);

    let mlp = &model.blocks[0].mlp;
    seed_dropout(&devices, 3);
    let found = values(mlp.forward(x.clone()));
    seed_dropout(&devices, 3);
    let hidden = masked(gelu(mlp.fc1.forward(x.clone())), p);
    let expected = values(masked(mlp.fc2.forward(hidden), p));
    assert_near(found, expected, "mlp");

    let attn = &model.blocks[0].attn;
    seed_dropout(&devices, 4);
    let found = values(attn.forward(x.clone()));
    seed_dropout(&devices, 4);
    let heads = fused::qkv_attention(attn.qkv.forward(x.clone()), attn.num_heads, attn.scale);
    let expected = values(masked(attn.proj.forward(heads), p));
    assert_near(found, expected, "attention");

    let pixels = Tensor::<4>::random([2, 3, 16, 16], Distribution::Uniform(0.0, 1.0), &device);
    let logits = |model: &VisionTransformer, pixels: Tensor<4>| {
        values(
            model
                .forward(pixels)
                .expect("forward")
                .logits
                .expect("head"),
        )
    };
    seed_dropout(&devices, 5);
    let training = logits(&model, pixels.clone());
    seed_dropout(&devices, 5);
    assert_eq!(
        training,
        logits(&model, pixels.clone()),
        "a seed repeats its masks"
    );
    let plain = face_vit(0.0, &device);
    let evaluation = logits(&model.valid(), pixels.clone().inner());
    assert_eq!(
        evaluation,
        logits(&plain.valid(), pixels.clone().inner()),
        "evaluation"
    );
    // The autodiff forward rounds differently, nothing more.
    assert_near(
        logits(&plain, pixels),
        evaluation.clone(),
        "rate 0 while training",
    );
    let moved = training
        .iter()
        .zip(&evaluation)
        .map(|(t, e)| (t - e).abs())
        .fold(0.0, f64::max);
    assert!(moved > 0.1, "training drops: logits moved by {moved}");
}

fn tiny_detr(device: &Device) -> DeformableDetr {
    let config = DeformableDetrConfig {
        d_model: 32,
        encoder_layers: 1,
        decoder_layers: 1,
        encoder_heads: 2,
        decoder_heads: 2,
        encoder_ffn_dim: 32,
        decoder_ffn_dim: 32,
        num_queries: 4,
        num_feature_levels: 3,
        encoder_points: 2,
        decoder_points: 2,
        num_labels: 3,
        with_box_refine: false,
        two_stage: false,
        two_stage_num_proposals: 0,
        dropout: 0.1,
        activation_dropout: 0.0,
        attention_dropout: 0.0,
        backbone: ResNetConfig {
            in_channels: 3,
            stem_width: 8,
            widths: vec![8, 8, 16, 16],
            depths: vec![1, 1, 1, 1],
        },
    };
    DeformableDetr::init(&config, &LoraConfig::new(), 0, device).expect("detector")
}

/// Deformable DETR's FFN drops after the ReLU (`activation_dropout`) and after `fc2`
/// (`dropout`), the decoder's self-attention its weights (`attention_dropout`); `with_dropout`
/// sets all three in every layer, as the official training's one rate. Checked against the
/// same ops composed by hand with the masks drawn in order.
#[test]
fn deformable_detr_drops_where_the_reference_does() {
    let device = Device::default().autodiff();
    let devices = [device.clone()];
    let model = tiny_detr(&device);
    let (ffn, attn) = (&model.decoder[0].ffn, &model.decoder[0].self_attn);
    assert_eq!(
        (ffn.activation_dropout, ffn.dropout, attn.attention_dropout),
        (0.0, 0.1, 0.0)
    );
    let p = 0.4;
    let model = model.with_dropout(p).expect("rate");
    for layer in &model.encoder {
        assert_eq!(
            (
                layer.dropout,
                layer.ffn.dropout,
                layer.ffn.activation_dropout
            ),
            (p, p, p)
        );
    }
    let layer = &model.decoder[0];
    assert_eq!((layer.dropout, layer.self_attn.attention_dropout), (p, p));
    assert_eq!(model.config.attention_dropout, p);

    let x = Tensor::<3>::random([2, 4, 32], Distribution::Uniform(-1.0, 1.0), &device);
    seed_dropout(&devices, 6);
    let found = values(layer.ffn.forward(x.clone()));
    seed_dropout(&devices, 6);
    let hidden = masked(relu(layer.ffn.fc1.forward(x.clone())), p);
    assert_near(
        found,
        values(masked(layer.ffn.fc2.forward(hidden), p)),
        "ffn",
    );

    let attn = &layer.self_attn;
    seed_dropout(&devices, 7);
    let found = values(attn.forward(x.clone(), None));
    seed_dropout(&devices, 7);
    let heads = |t: Tensor<3>| t.reshape([2, 4, 2, 16]).swap_dims(1, 2);
    let (q, k, v) = (
        heads(attn.q_proj.forward(x.clone())),
        heads(attn.k_proj.forward(x.clone())),
        heads(attn.v_proj.forward(x)),
    );
    let weights = masked(softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(0.25), 3), p);
    let out = weights.matmul(v).swap_dims(1, 2).reshape([2, 4, 32]);
    assert_near(found, values(attn.out_proj.forward(out)), "self-attention");
}
