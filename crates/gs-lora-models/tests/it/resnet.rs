//! The ResNet backbone against timm (eval mode, so batch norm uses its running statistics) on
//! the fixture made by `tools/make_deform_fixtures.py`: every stage's output, including a stage
//! of two blocks and the projection shortcuts.

use burn::tensor::{Device, Tensor};
use gs_lora_models::resnet::{ResNet, ResNetConfig};
use gs_lora_models::weights::{CheckpointSource, IdentityKeys, Weights, read_tensor};

use crate::common::{assert_parity, fixture, values};

#[test]
fn stage_outputs_match_timm() {
    let device = Device::default();
    let path = fixture("resnet.safetensors");
    let mut source = CheckpointSource::open(&path, IdentityKeys).expect("fixture");
    let config = ResNetConfig {
        in_channels: 3,
        stem_width: 64,
        widths: vec![8, 16, 32, 64],
        depths: vec![1, 2, 1, 1],
    };
    assert_eq!(config.stage_channels(), vec![32, 64, 128, 256]);
    let mut weights = Weights::new(&mut source, &device);
    let model = ResNet::load(weights.pp("backbone"), &config).expect("load");
    let pixels = Tensor::<4>::from_data(
        read_tensor(&path, "pixel_values").expect("valid input"),
        &device,
    );
    let features = model.forward(pixels);
    assert_eq!(features.len(), 4);
    for (stage, feature) in features.into_iter().enumerate() {
        let expected = read_tensor(&path, &format!("stage{stage}")).expect("valid input");
        assert_eq!(
            feature.dims().to_vec(),
            expected.shape().to_vec(),
            "stage {stage} shape"
        );
        let expected: Vec<f32> = expected.try_to_vec().expect("valid input");
        assert_parity(&format!("stage {stage}"), &values(feature), &expected);
    }
}

#[test]
fn a_config_without_matching_stages_is_refused() {
    let path = fixture("resnet.safetensors");
    let mut source = CheckpointSource::open(&path, IdentityKeys).expect("fixture");
    let config = ResNetConfig {
        widths: vec![8, 16],
        depths: vec![1],
        ..ResNetConfig::resnet50()
    };
    let device = Device::default();
    let mut weights = Weights::new(&mut source, &device);
    let error = ResNet::load(weights.pp("backbone"), &config).expect_err("refused");
    assert!(error.to_string().contains("[8, 16]"), "{error}");
    // The real ResNet-50 shapes do not fit the small fixture: the error names the tensor.
    let error =
        ResNet::load(weights.pp("backbone"), &ResNetConfig::resnet50()).expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("backbone.layer1.0.downsample.0.weight"),
        "{error}"
    );
}
