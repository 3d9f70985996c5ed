//! Group lasso: value, gradient, safety at zero, soft-thresholding, weight schedule, bad input.

use crate::common::*;
use burn::module::Module;
use gs_lora_core::{
    CoreError, GroupLassoConfig, LoraGroup, LoraLinear, LoraModel, adapter_param_ids,
    group_gradient_squares, group_lasso, group_norms, group_soft_threshold, merge_adapters,
};

/// `sqrt(Σ ‖A‖² + ‖B‖²)` of each block, on the host.
fn host_group_norms(model: &ToyModel) -> Vec<f64> {
    model
        .blocks
        .iter()
        .map(|b| {
            [&b.fc1, &b.fc2]
                .iter()
                .flat_map(|l| {
                    values(l.lora_a.val())
                        .into_iter()
                        .chain(values(l.lora_b.val()))
                })
                .map(|v| v * v)
                .sum::<f64>()
                .sqrt()
        })
        .collect()
}

#[test]
fn value_and_norms_match_the_formula_computed_by_hand() {
    let device = device();
    let mut model = ToyModel::new(&device, 1);
    model.perturb_adapters(2);
    let expected = host_group_norms(&model);
    assert_close(&group_norms(&model).expect("norms"), &expected, 1e-5);
    let total: f64 = expected.iter().sum();
    assert_close(
        &[scalar(group_lasso(&model).expect("value"))],
        &[total],
        1e-5,
    );
}

#[test]
fn gradient_is_each_factor_over_its_group_norm() {
    // ∂/∂p sqrt(Σ_{q∈g} ‖q‖²) = p / ‖g‖.
    let device = device().autodiff();
    let mut model = ToyModel::new(&device, 3);
    model.perturb_adapters(4);
    let norms = host_group_norms(&model);
    let grads = group_lasso(&model).expect("value").backward();
    for (block, norm) in model.blocks.iter().zip(norms) {
        for layer in [&block.fc1, &block.fc2] {
            for param in [&layer.lora_a, &layer.lora_b] {
                let expected: Vec<f64> = values(param.val()).iter().map(|p| p / norm).collect();
                let found = values(param.val().grad(&grads).expect("gradient"));
                assert_close(&found, &expected, 1e-5);
            }
        }
    }
}

#[test]
fn a_zero_group_has_zero_value_and_a_finite_zero_gradient() {
    let device = device().autodiff();
    let mut model = ToyModel::new(&device, 5);
    model.perturb_adapters(6);
    let norms = group_norms(&model).expect("norms");
    let zeroed =
        group_soft_threshold(&mut model, &vec![norms[0] + 1e-3; norms.len()]).expect("prox");
    assert!(zeroed[0]);

    let value = scalar(group_lasso(&model).expect("value"));
    let other = group_norms(&model).expect("norms")[1];
    assert!(
        (value - other).abs() < 1e-5,
        "zero group adds {}",
        value - other
    );
    let grads = group_lasso(&model).expect("value").backward();
    for layer in [&model.blocks[0].fc1, &model.blocks[0].fc2] {
        let grad = values(layer.lora_a.val().grad(&grads).expect("gradient"));
        assert!(grad.iter().all(|g| *g == 0.0), "gradient at zero: {grad:?}");
    }
}

#[test]
fn soft_threshold_zeroes_small_groups_exactly_and_shrinks_the_others() {
    let device = device();
    let mut model = ToyModel::new(&device, 7);
    model.perturb_adapters(8);
    let norms = group_norms(&model).expect("norms");
    let (small, large) = if norms[0] < norms[1] { (0, 1) } else { (1, 0) };
    let threshold = (norms[0] + norms[1]) / 2.0;
    let large_before = values(model.blocks[large].fc2.lora_b.val());

    let thresholds = vec![threshold; model.blocks.len()];
    let zeroed = group_soft_threshold(&mut model, &thresholds).expect("prox");
    assert!(zeroed[small]);
    assert!(!zeroed[large]);
    for layer in [&model.blocks[small].fc1, &model.blocks[small].fc2] {
        assert!(values(layer.lora_a.val()).iter().all(|&v| v == 0.0));
        assert!(values(layer.lora_b.val()).iter().all(|&v| v == 0.0));
    }
    let after = group_norms(&model).expect("norms");
    assert!((after[large] - (norms[large] - threshold)).abs() < 1e-5);
    let factor = 1.0 - threshold / norms[large];
    let expected: Vec<f64> = large_before.iter().map(|v| v * factor).collect();
    assert_close(
        &values(model.blocks[large].fc2.lora_b.val()),
        &expected,
        1e-5,
    );
}

#[test]
fn merging_after_zeroing_leaves_unselected_blocks_bit_identical() {
    let device = device();
    let mut model = ToyModel::new(&device, 9);
    model.perturb_adapters(10);
    // Block 1's update made larger than block 0's, so one threshold zeroes block 0 only.
    let larger = model.blocks[1].fc1.lora_b.val().mul_scalar(3.0);
    model.blocks[1].fc1.lora_b = burn::module::Param::from_tensor(larger);
    let weights_before = values(model.blocks[0].fc1.base_layer.weight.val());
    let other_before = values(model.blocks[1].fc1.base_layer.weight.val());
    let norms = group_norms(&model).expect("norms");
    // Zero block 0 only: a threshold just above its norm but below block 1's when possible.
    let threshold = norms[0] * (1.0 + 1e-6);
    let thresholds = vec![threshold; model.blocks.len()];
    group_soft_threshold(&mut model, &thresholds).expect("prox");
    merge_adapters(&mut model).expect("merge");
    assert_eq!(
        values(model.blocks[0].fc1.base_layer.weight.val()),
        weights_before
    );
    assert!(
        norms[1] > threshold,
        "block 1 must survive the threshold: {norms:?}"
    );
    assert_ne!(
        values(model.blocks[1].fc1.base_layer.weight.val()),
        other_before
    );
}

#[test]
fn warm_up_schedules_the_weight() {
    let plain = GroupLassoConfig::new();
    assert_eq!(plain.weight, 1e-4);
    assert_eq!(plain.weight_at(0), 1e-4);
    let warm = GroupLassoConfig::new()
        .with_warmup_epochs(2)
        .with_warmup_weight(Some(1e-2));
    assert_eq!(warm.weight_at(0), 0.0);
    assert_eq!(warm.weight_at(1), 0.0);
    assert_eq!(warm.weight_at(2), 1e-2);
    let warm_same = GroupLassoConfig::new().with_warmup_epochs(1);
    assert_eq!(warm_same.weight_at(0), 0.0);
    assert_eq!(warm_same.weight_at(5), 1e-4);
    assert!(
        GroupLassoConfig::new()
            .with_weight(-1.0)
            .validate()
            .is_err()
    );
    assert!(
        GroupLassoConfig::new()
            .with_warmup_weight(Some(f64::NAN))
            .validate()
            .is_err()
    );
}

#[test]
fn bad_input_is_a_typed_error() {
    let device = device();
    let mut model = ToyModel::new(&device, 11);
    assert!(matches!(
        group_soft_threshold(&mut model, &[-1.0, 0.0]),
        Err(CoreError::OutOfRange { .. })
    ));
    assert!(matches!(
        group_soft_threshold(&mut model, &[0.0, f64::NAN]),
        Err(CoreError::NonFinite { .. })
    ));

    let err = group_soft_threshold(&mut model, &[0.0]).expect_err("one threshold for two groups");
    assert!(err.to_string().contains("one per group"), "{err}");

    let mut empty = EmptyGroupModel {
        layer: ToyModel::new(&device, 12).blocks.remove(0).fc1,
        with_groups: true,
    };
    let err = group_lasso(&empty).expect_err("an empty group is refused");
    assert_eq!(
        err,
        CoreError::EmptyGroup {
            group: "empty".into()
        }
    );
    assert!(err.to_string().contains("`empty`"));
    empty.with_groups = false;
    assert_eq!(group_norms(&empty).err(), Some(CoreError::NoGroups));
    assert_eq!(merge_adapters(&mut empty).err(), Some(CoreError::NoGroups));
}

/// A model whose second group is empty (or that exposes no group at all).
#[derive(Module, Debug)]
struct EmptyGroupModel {
    layer: LoraLinear,
    with_groups: bool,
}

impl LoraModel for EmptyGroupModel {
    fn lora_groups(&self) -> Vec<LoraGroup<&LoraLinear>> {
        if !self.with_groups {
            return Vec::new();
        }
        vec![
            LoraGroup::new("full", vec![&self.layer]),
            LoraGroup::new("empty", vec![]),
        ]
    }

    fn lora_groups_mut(&mut self) -> Vec<LoraGroup<&mut LoraLinear>> {
        if !self.with_groups {
            return Vec::new();
        }
        vec![
            LoraGroup::new("full", vec![&mut self.layer]),
            LoraGroup::new("empty", vec![]),
        ]
    }
}

/// Each group is thresholded by its own value: the same norms with the thresholds swapped
/// zero the other group. Catches every group thresholded by the first (or the last) value.
#[test]
fn each_group_has_its_own_threshold() {
    let device = device();
    for (small, thresholds) in [(0, [f64::MAX, 0.0]), (1, [0.0, f64::MAX])] {
        let mut model = ToyModel::new(&device, 21);
        model.perturb_adapters(22);
        let norms = group_norms(&model).expect("norms");
        let zeroed = group_soft_threshold(&mut model, &thresholds).expect("prox");
        assert_eq!(zeroed, vec![small == 0, small == 1]);
        let after = group_norms(&model).expect("norms");
        assert_eq!(after[small], 0.0);
        assert!((after[1 - small] - norms[1 - small]).abs() < 1e-6);
    }
}

/// The per-group mean squared gradient entry, against the gradient of the sum of squares
/// (`∂/∂p Σ p² = 2p`) computed on the host; a group left out of the gradients reads 0.
/// Catches a sum instead of a mean, one group's statistic reported for another, and a group
/// without gradients taking the next group's value.
#[test]
fn group_gradient_squares_are_per_group_means() {
    let device = device().autodiff();
    let mut model = ToyModel::new(&device, 31);
    model.perturb_adapters(32);
    let loss = |model: &ToyModel| {
        let params = model.blocks.iter().flat_map(|b| [&b.fc1, &b.fc2]);
        params
            .flat_map(|l| [l.lora_a.val().square().sum(), l.lora_b.val().square().sum()])
            .reduce(|a, b| a + b)
            .expect("parameters")
    };
    let expected: Vec<f64> = model
        .blocks
        .iter()
        .map(|b| {
            let entries: Vec<f64> = [&b.fc1, &b.fc2]
                .iter()
                .flat_map(|l| {
                    values(l.lora_a.val())
                        .into_iter()
                        .chain(values(l.lora_b.val()))
                })
                .collect();
            entries.iter().map(|p| (2.0 * p).powi(2)).sum::<f64>() / entries.len() as f64
        })
        .collect();
    let all = adapter_param_ids(&model);
    let mut grads = loss(&model).backward();
    let grads = burn::optim::GradientsParams::from_params(&mut grads, &model, &all);
    assert_close(
        &group_gradient_squares(&model, &grads).expect("squares"),
        &expected,
        1e-5,
    );

    let second: Vec<_> = all[4..].to_vec();
    let mut grads = loss(&model).backward();
    let grads = burn::optim::GradientsParams::from_params(&mut grads, &model, &second);
    let found = group_gradient_squares(&model, &grads).expect("squares");
    assert_eq!(found[0], 0.0);
    assert_close(&found[1..], &expected[1..], 1e-5);
}
