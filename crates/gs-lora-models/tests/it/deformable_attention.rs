//! Multi-scale deformable attention against the references, on fixtures made by
//! `tools/make_deform_fixtures.py`: the sampling core against PyTorch `grid_sample` per level
//! (output and the gradients with respect to values, locations and weights, with points inside,
//! across the border of and outside the levels), and the whole attention module against Hugging
//! Face's `DeformableDetrMultiscaleDeformableAttention`, and one encoder and one decoder layer
//! against `DeformableDetrEncoderLayer` / `DeformableDetrDecoderLayer`.

use burn::tensor::{Bool, Device, Tensor, TensorData};
use gs_lora_core::LoraConfig;
use gs_lora_models::ModelError;
use gs_lora_models::deformable::{
    DecoderLayer, DeformableAttentionConfig, EncoderLayer, LayerConfig,
    MultiScaleDeformableAttention, multi_scale_deformable_sampling, sine_position_embedding,
};
use gs_lora_models::weights::{CheckpointSource, IdentityKeys, Weights, read_tensor};

use crate::common::{assert_parity, fixture, values};

fn load<const D: usize>(key: &str, device: &Device) -> Tensor<D> {
    let data = read_tensor(fixture("deform_sampling.safetensors"), key).expect(key);
    Tensor::from_data(data, device).require_grad()
}

fn expected(key: &str) -> Vec<f32> {
    let data = read_tensor(fixture("deform_sampling.safetensors"), key).expect(key);
    data.try_to_vec::<f32>().expect("f32")
}

fn spatial_shapes() -> Vec<(usize, usize)> {
    expected("spatial_shapes")
        .chunks(2)
        .map(|hw| (hw[0] as usize, hw[1] as usize))
        .collect()
}

#[test]
fn sampling_and_its_gradients_match_pytorch_grid_sample() {
    let device = Device::default().autodiff();
    let value: Tensor<4> = load("value", &device);
    let locations: Tensor<6> = load("locations", &device);
    let weights: Tensor<5> = load("weights", &device);
    let cotangent: Tensor<3> = load("cotangent", &device);

    let output = multi_scale_deformable_sampling(
        value.clone(),
        &spatial_shapes(),
        locations.clone(),
        weights.clone(),
    )
    .expect("sampling");
    assert_parity("output", &values(output.clone()), &expected("output"));

    let grads = (output * cotangent).sum().backward();
    for (name, grad) in [
        ("grad_value", value.grad(&grads).map(values)),
        ("grad_locations", locations.grad(&grads).map(values)),
        ("grad_weights", weights.grad(&grads).map(values)),
    ] {
        assert_parity(name, &grad.expect(name), &expected(name));
    }
}

#[test]
fn a_point_between_four_pixels_mixes_them_bilinearly() {
    // One 2×2 level with values 1, 2, 3, 4; the point (0.5, 0.75) is pixel (0.5, 1.0) with
    // align_corners = false, so the two bottom pixels are read half and half: (3 + 4) / 2.
    // A second point at (1.25, 0.5) lies half a pixel outside on the right, where padding
    // reads zeros: pixel (2.0, 0.5) mixes only the zero column.
    let device = Device::default();
    let value = Tensor::<4>::from_data(
        TensorData::new(vec![1.0f32, 2., 3., 4.], [1, 4, 1, 1]),
        &device,
    );
    let locations = Tensor::<6>::from_data(
        TensorData::new(vec![0.5f32, 0.75, 1.25, 0.5], [1, 1, 1, 1, 2, 2]),
        &device,
    );
    let weights =
        Tensor::<5>::from_data(TensorData::new(vec![1.0f32, 1.0], [1, 1, 1, 1, 2]), &device);
    let out =
        multi_scale_deformable_sampling(value, &[(2, 2)], locations, weights).expect("sampling");
    assert_parity("bilinear", &values(out), &[3.5]);
}

#[test]
fn mismatched_shapes_are_refused_with_both_shapes() {
    let device = Device::default();
    let value = Tensor::<4>::zeros([1, 10, 2, 4], &device);
    let locations = Tensor::<6>::zeros([1, 3, 2, 1, 4, 2], &device);
    let weights = Tensor::<5>::zeros([1, 3, 2, 1, 4], &device);
    let error = multi_scale_deformable_sampling(
        value.clone(),
        &[(3, 3)],
        locations.clone(),
        weights.clone(),
    )
    .expect_err("9 tokens expected, 10 given");
    assert!(matches!(error, ModelError::Input { .. }), "{error}");
    assert!(error.to_string().contains("[1, 10, 2, 4]"), "{error}");

    let wrong_weights = Tensor::<5>::zeros([1, 3, 2, 1, 5], &device);
    let error = multi_scale_deformable_sampling(
        Tensor::zeros([1, 9, 2, 4], &device),
        &[(3, 3)],
        locations,
        wrong_weights,
    )
    .expect_err("P = 4 in locations, 5 in weights");
    assert!(error.to_string().contains("[1, 3, 2, 1, 5]"), "{error}");
    let error = multi_scale_deformable_sampling(
        value,
        &[],
        Tensor::zeros([1, 3, 2, 0, 4, 2], &device),
        weights,
    )
    .expect_err("no levels");
    assert!(error.to_string().contains("feature level"), "{error}");
}

#[test]
fn the_attention_module_matches_transformers_for_points_and_boxes() {
    let device = Device::default();
    let path = fixture("deform_attention.safetensors");
    let mut source = CheckpointSource::open(&path, IdentityKeys).expect("fixture");
    let config = DeformableAttentionConfig {
        d_model: 16,
        num_heads: 2,
        num_levels: 3,
        num_points: 2,
    };
    let attention =
        MultiScaleDeformableAttention::load(Weights::new(&mut source, &device).pp("attn"), config)
            .expect("load");
    let input = |key: &str| read_tensor(&path, key).expect(key);
    let queries = Tensor::<3>::from_data(input("queries"), &device);
    let position = Tensor::<3>::from_data(input("position"), &device);
    let memory = Tensor::<3>::from_data(input("values"), &device);
    let mask: Tensor<2, Bool> = Tensor::<2>::from_data(input("mask"), &device).greater_elem(0.5);
    let shapes = [(5, 7), (3, 4), (2, 2)];
    for name in ["points", "boxes"] {
        let output = attention
            .forward(
                queries.clone(),
                Some(position.clone()),
                memory.clone(),
                Some(mask.clone()),
                Tensor::from_data(input(name), &device),
                &shapes,
            )
            .expect("forward");
        let expected: Vec<f32> = input(&format!("output_{name}")).try_to_vec().expect("f32");
        assert_parity(
            &format!("attention with {name}"),
            &values(output),
            &expected,
        );
    }
    let error = attention
        .forward(
            queries.clone(),
            None,
            memory,
            None,
            Tensor::zeros([2, 5, 3, 3], &device),
            &shapes,
        )
        .expect_err("three coordinates");
    assert!(error.to_string().contains("[2, 5, 3, 3]"), "{error}");
}

#[test]
fn encoder_and_decoder_layers_match_transformers() {
    let device = Device::default();
    let path = fixture("deform_layers.safetensors");
    let mut source = CheckpointSource::open(&path, IdentityKeys).expect("fixture");
    let config = LayerConfig {
        d_model: 16,
        num_heads: 2,
        ffn_dim: 24,
        num_levels: 3,
        num_points: 2,
        dropout: 0.0,
        activation_dropout: 0.0,
        attention_dropout: 0.0,
    };
    let lora = LoraConfig::new().with_rank(4);
    let mut weights = Weights::new(&mut source, &device);
    let encoder = EncoderLayer::load(weights.pp("encoder"), &config, &lora, 0).expect("encoder");
    let decoder = DecoderLayer::load(weights.pp("decoder"), &config, &lora, 0).expect("decoder");
    let input = |key: &str| read_tensor(&path, key).expect(key);
    let tensor3 = |key: &str| Tensor::<3>::from_data(input(key), &device);
    let tensor4 = |key: &str| Tensor::<4>::from_data(input(key), &device);
    let mask: Tensor<2, Bool> = Tensor::<2>::from_data(input("mask"), &device).greater_elem(0.5);
    let shapes = [(5, 7), (3, 4), (2, 2)];

    let encoded = encoder
        .forward(
            tensor3("x"),
            tensor3("position"),
            Some(mask.clone()),
            tensor4("encoder_points"),
            &shapes,
        )
        .expect("encoder forward");
    let expected: Vec<f32> = input("encoded").try_to_vec().expect("f32");
    assert_parity("encoder layer", &values(encoded.clone()), &expected);

    let decoded = decoder
        .forward(
            tensor3("queries"),
            tensor3("query_position"),
            tensor4("decoder_points"),
            encoded,
            Some(mask),
            &shapes,
        )
        .expect("decoder forward");
    let expected: Vec<f32> = input("decoded").try_to_vec().expect("f32");
    assert_parity("decoder layer", &values(decoded), &expected);

    // The parity above holds with LoRA on both FFN Linears: a fresh adapter (B = 0) adds nothing.
    assert_eq!(encoder.ffn.fc1.rank(), 4);
    assert!(!encoder.ffn.fc2.is_merged());
}

#[test]
fn sine_position_embedding_with_padding_matches_transformers() {
    let path = fixture("position.safetensors");
    let mask: Vec<bool> = read_tensor(&path, "mask")
        .expect("valid input")
        .try_to_vec::<f32>()
        .expect("valid input")
        .iter()
        .map(|&m| m > 0.5)
        .collect();
    let found =
        sine_position_embedding(&mask, [2, 5, 7], 8, &Device::default()).expect("valid input");
    assert_eq!(found.dims(), [2, 16, 5, 7]);
    let expected: Vec<f32> = read_tensor(&path, "position")
        .expect("valid input")
        .try_to_vec()
        .expect("valid input");
    // Compare at valid pixels: at padding the reference divides by 1e-6 and takes the sine of
    // ~1e6, a value no consumer reads (padded values are masked) and no two libms agree on.
    let valid_only = |all: Vec<f32>| -> Vec<f32> {
        all.into_iter()
            .enumerate()
            .filter(|(i, _)| mask[(i / (16 * 35)) * 35 + i % 35])
            .map(|(_, v)| v)
            .collect()
    };
    assert_parity(
        "sine position embedding",
        &valid_only(values(found)),
        &valid_only(expected),
    );
    assert!(sine_position_embedding(&mask, [2, 5, 6], 8, &Device::default()).is_err());
    assert!(sine_position_embedding(&mask, [2, 5, 7], 7, &Device::default()).is_err());
}
