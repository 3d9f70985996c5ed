//! Multi-scale deformable sampling against the PyTorch reference (`grid_sample` per level), on
//! the fixture made by `tools/make_deform_fixtures.py`: output and the gradients with respect
//! to values, locations and weights, with points inside, across the border of and outside the
//! levels.

use burn::tensor::{Device, Tensor, TensorData};
use gs_lora_models::ModelError;
use gs_lora_models::deformable::multi_scale_deformable_sampling;
use gs_lora_models::weights::read_tensor;

mod common;
use common::{assert_parity, fixture, values};

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
