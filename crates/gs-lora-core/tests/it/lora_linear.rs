//! `LoraLinear`: forward formula, merge/unmerge, reset, initialisation, gradients, frozen base.

use crate::common::*;
use burn::module::Param;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Tensor;
use gs_lora_core::{
    CoreError, LoraConfig, LoraInit, LoraLinear, adapter_param_ids, merge_adapters, reset_adapters,
};

const D_IN: usize = 5;
const D_OUT: usize = 4;
const RANK: usize = 2;
const ALPHA: f64 = 3.0;

/// A 5→4 layer with rank-2 adapters whose `B` is non-zero.
fn adapted_layer(device: &burn::tensor::Device) -> LoraLinear {
    let config = LoraConfig::new().with_rank(RANK).with_lora_alpha(ALPHA);
    let mut layer = config
        .init(linear(D_IN, D_OUT, 1, device), 2)
        .expect("valid");
    layer.lora_b = Param::from_tensor(random_tensor(RANK, D_OUT, 3, device));
    layer
}

/// `x W + b + s (x A) B` on the host.
fn host_forward(layer: &LoraLinear, x: &[f64], batch: usize) -> Vec<f64> {
    let w = values(layer.base_layer.weight.val());
    let b = values(layer.base_layer.bias.as_ref().expect("bias").val());
    let a = values(layer.lora_a.val());
    let lb = values(layer.lora_b.val());
    let base = host_matmul(x, &w, batch, D_IN, D_OUT);
    let down = host_matmul(x, &a, batch, D_IN, RANK);
    let up = host_matmul(&down, &lb, batch, RANK, D_OUT);
    let s = ALPHA / RANK as f64;
    (0..batch * D_OUT)
        .map(|i| base[i] + b[i % D_OUT] + s * up[i])
        .collect()
}

#[test]
fn forward_matches_the_formula_computed_by_hand() {
    let device = device();
    let layer = adapted_layer(&device);
    let x = random_tensor(3, D_IN, 4, &device);
    let expected = host_forward(&layer, &values(x.clone()), 3);
    assert_close(&values(layer.forward(x)), &expected, 1e-5);
    assert_eq!(layer.scale, 1.5);
}

#[test]
fn forward_accepts_any_leading_axes() {
    let device = device();
    let layer = adapted_layer(&device);
    let x = random_tensor(6, D_IN, 5, &device);
    let flat = layer.forward(x.clone());
    let batched = layer.forward(x.reshape([2, 3, D_IN]));
    assert_eq!(batched.dims(), [2, 3, D_OUT]);
    assert_close(&values(batched), &values(flat), 1e-6);
}

#[test]
fn merged_forward_equals_adapted_forward_and_unmerge_restores_the_weight() {
    let device = device();
    let mut layer = adapted_layer(&device);
    let x = random_tensor(3, D_IN, 6, &device);
    let adapted = values(layer.forward(x.clone()));
    let weight_before = values(layer.base_layer.weight.val());
    let delta = host_matmul(
        &values(layer.lora_a.val()),
        &values(layer.lora_b.val()),
        D_IN,
        RANK,
        D_OUT,
    );

    layer.merge().expect("first merge");
    assert!(layer.is_merged());
    let expected_weight: Vec<f64> = weight_before
        .iter()
        .zip(&delta)
        .map(|(w, d)| w + ALPHA / RANK as f64 * d)
        .collect();
    assert_close(
        &values(layer.base_layer.weight.val()),
        &expected_weight,
        1e-6,
    );
    assert_close(&values(layer.forward(x.clone())), &adapted, 1e-5);
    assert_eq!(layer.merge(), Err(CoreError::AlreadyMerged));

    layer.unmerge().expect("unmerge");
    assert_close(&values(layer.base_layer.weight.val()), &weight_before, 1e-6);
    assert_close(&values(layer.forward(x)), &adapted, 1e-5);
    assert_eq!(layer.unmerge(), Err(CoreError::NotMerged));
}

#[test]
fn reset_gives_a_zero_update_with_a_fresh_a() {
    let device = device();
    let mut layer = adapted_layer(&device);
    let x = random_tensor(3, D_IN, 7, &device);
    let old_a = values(layer.lora_a.val());
    let base_only = values(layer.base_layer.forward(x.clone()));

    layer.reset(LoraInit::later_task(), 99);
    assert!(values(layer.delta_weight()).iter().all(|&v| v == 0.0));
    assert!(values(layer.lora_b.val()).iter().all(|&v| v == 0.0));
    assert_eq!(values(layer.forward(x)), base_only);
    let new_a = values(layer.lora_a.val());
    assert_ne!(new_a, old_a);
    let bound = LoraInit::later_task().bound(D_IN);
    assert!(new_a.iter().all(|v| v.abs() <= bound + 1e-7));
}

/// A frozen model (as pretraining returns it) gets trainable adapters from `reset`; without
/// that, the next task's loss is untracked and `backward` panics inside Burn.
#[test]
fn reset_makes_the_fresh_adapter_trainable_on_autodiff() {
    use burn::module::Module;
    let device = device().autodiff();
    let mut layer = adapted_layer(&device).no_grad();
    assert!(!layer.lora_a.val().is_require_grad());
    layer.reset(LoraInit::later_task(), 4);
    assert!(layer.lora_a.val().is_require_grad());
    assert!(layer.lora_b.val().is_require_grad());
    let loss = layer.forward(random_tensor(2, D_IN, 9, &device)).sum();
    let grads = loss.backward();
    assert!(
        layer.lora_b.val().grad(&grads).is_some(),
        "B receives a gradient"
    );
    // Without autodiff there is nothing to track, and nothing panics.
    let plain_device = device.clone().without_autodiff();
    let mut plain = adapted_layer(&plain_device).no_grad();
    plain.reset(LoraInit::later_task(), 4);
    assert_eq!(
        plain
            .forward(random_tensor(2, D_IN, 9, &plain_device))
            .dims(),
        [2, D_OUT]
    );
}

#[test]
fn reset_after_merge_keeps_the_merged_update() {
    let device = device();
    let mut layer = adapted_layer(&device);
    let x = random_tensor(3, D_IN, 8, &device);
    let adapted = values(layer.forward(x.clone()));
    layer.merge().expect("merge");
    layer.reset(LoraInit::later_task(), 5);
    assert!(!layer.is_merged());
    assert_close(&values(layer.forward(x)), &adapted, 1e-5);
}

#[test]
fn initialisation_bounds_follow_kaiming_uniform() {
    // gain = sqrt(2 / (1 + a²)), bound = gain · sqrt(3 / fan_in).
    let first = LoraInit::first_task().bound(384);
    assert!((first - 1.0 / 384f64.sqrt()).abs() < 1e-12);
    let later = LoraInit::later_task().bound(384);
    assert!((later - (2.0f64 / 51.0).sqrt() * (3.0f64 / 384.0).sqrt()).abs() < 1e-12);
    let ratio = first / later;
    assert!((ratio - 2.915).abs() < 1e-3, "ratio {ratio}");

    let device = device();
    let config = LoraConfig::new().with_rank(8);
    let layer = config.init(linear(384, 64, 1, &device), 11).expect("valid");
    let a = values(layer.lora_a.val());
    assert_eq!(layer.lora_a.val().dims(), [384, 8]);
    let max = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        max <= first + 1e-7 && max > 0.95 * first,
        "max |A| {max}, bound {first}"
    );
    let mean = a.iter().sum::<f64>() / a.len() as f64;
    assert!(mean.abs() < 0.1 * first, "mean {mean}");
    assert_eq!(layer.lora_b.val().dims(), [8, 64]);
    assert!(values(layer.lora_b.val()).iter().all(|&v| v == 0.0));
}

#[test]
fn the_same_seed_gives_the_same_adapter() {
    let device = device();
    let config = LoraConfig::new().with_rank(4);
    let make = |seed| {
        let layer = config
            .init(linear(16, 16, 1, &device), seed)
            .expect("valid");
        values(layer.lora_a.val())
    };
    assert_eq!(make(3), make(3));
    assert_ne!(make(3), make(4));
}

#[test]
fn bad_configurations_are_typed_errors() {
    let device = device();
    let base = || linear(4, 6, 1, &device);
    assert_eq!(
        LoraConfig::new().with_rank(0).init(base(), 0).err(),
        Some(CoreError::ZeroRank)
    );
    assert_eq!(
        LoraConfig::new().with_rank(5).init(base(), 0).err(),
        Some(CoreError::RankTooLarge {
            rank: 5,
            d_input: 4,
            d_output: 6
        })
    );
    let err = LoraConfig::new()
        .with_rank(2)
        .with_lora_alpha(f64::NAN)
        .init(base(), 0)
        .expect_err("NaN alpha is refused");
    assert!(err.to_string().contains("LoRA alpha"), "{err}");
    let err = LoraConfig::new()
        .with_rank(2)
        .with_lora_alpha(f64::INFINITY)
        .init(base(), 0)
        .expect_err("infinite alpha is refused");
    assert!(matches!(err, CoreError::NonFinite { .. }));
}

#[test]
fn gradients_of_the_adapter_match_the_hand_derivation() {
    // L = Σ y ∘ G with y = x W + b + s (x A) B:
    //   ∂L/∂A = s · xᵀ G Bᵀ,   ∂L/∂B = s · (x A)ᵀ G,   ∂L/∂W = none (frozen).
    let device = device().autodiff();
    let layer = adapted_layer(&device);
    let batch = 3;
    let x = random_tensor(batch, D_IN, 9, &device);
    let g = random_tensor(batch, D_OUT, 10, &device);
    let loss = layer.forward(x.clone()).mul(g.clone()).sum();
    let grads = loss.backward();

    let s = ALPHA / RANK as f64;
    let (xh, gh) = (values(x), values(g));
    let ah = values(layer.lora_a.val());
    let bh = values(layer.lora_b.val());
    let transpose = |m: &[f64], rows: usize, cols: usize| -> Vec<f64> {
        (0..cols * rows)
            .map(|i| m[(i % rows) * cols + i / rows])
            .collect()
    };
    let xt = transpose(&xh, batch, D_IN);
    let bt = transpose(&bh, RANK, D_OUT);
    let xt_g = host_matmul(&xt, &gh, D_IN, batch, D_OUT);
    let grad_a: Vec<f64> = host_matmul(&xt_g, &bt, D_IN, D_OUT, RANK)
        .iter()
        .map(|v| s * v)
        .collect();
    let xa = host_matmul(&xh, &ah, batch, D_IN, RANK);
    let grad_b: Vec<f64> = host_matmul(&transpose(&xa, batch, RANK), &gh, RANK, batch, D_OUT)
        .iter()
        .map(|v| s * v)
        .collect();

    let found_a = layer.lora_a.val().grad(&grads).expect("A has a gradient");
    let found_b = layer.lora_b.val().grad(&grads).expect("B has a gradient");
    assert_close(&values(found_a), &grad_a, 1e-5);
    assert_close(&values(found_b), &grad_b, 1e-5);
    assert!(layer.base_layer.weight.val().grad(&grads).is_none());
}

#[test]
fn an_optimiser_step_moves_adapters_only() {
    let device = device().autodiff();
    let mut model = ToyModel::new(&device, 1);
    let frozen_before: Vec<Vec<f64>> = model
        .blocks
        .iter()
        .flat_map(|b| [&b.fc1, &b.fc2])
        .flat_map(|l| {
            [
                values(l.base_layer.weight.val()),
                values(l.base_layer.bias.as_ref().expect("bias").val()),
            ]
        })
        .chain([values(model.head.weight.val())])
        .collect();
    let b_before = values(model.blocks[0].fc1.lora_b.val());

    let x = random_tensor(4, 6, 3, &device);
    let loss = model.forward(x).square().mean();
    let mut grads = loss.backward();
    let ids = adapter_param_ids(&model);
    assert_eq!(ids.len(), 8);
    let grads = GradientsParams::from_params(&mut grads, &model, &ids);
    let mut optim = AdamWConfig::new().with_weight_decay(0.05).init();
    model = optim.step(1e-2, model, grads);

    let frozen_after: Vec<Vec<f64>> = model
        .blocks
        .iter()
        .flat_map(|b| [&b.fc1, &b.fc2])
        .flat_map(|l| {
            [
                values(l.base_layer.weight.val()),
                values(l.base_layer.bias.as_ref().expect("bias").val()),
            ]
        })
        .chain([values(model.head.weight.val())])
        .collect();
    assert_eq!(frozen_before, frozen_after, "a frozen parameter moved");
    assert_ne!(
        b_before,
        values(model.blocks[0].fc1.lora_b.val()),
        "B did not move"
    );
}

#[test]
fn merging_and_resetting_a_whole_model() {
    let device = device();
    let mut model = ToyModel::new(&device, 2);
    model.perturb_adapters(3);
    let x = random_tensor(4, 6, 4, &device);
    let adapted = values(model.forward(x.clone()));

    merge_adapters(&mut model).expect("merge");
    assert_close(&values(model.forward(x.clone())), &adapted, 1e-5);
    assert_eq!(merge_adapters(&mut model), Err(CoreError::AlreadyMerged));

    reset_adapters(&mut model, LoraInit::later_task(), 7).expect("reset");
    assert_close(&values(model.forward(x)), &adapted, 1e-5);
    let a0 = values(model.blocks[0].fc1.lora_a.val());
    let a1 = values(model.blocks[1].fc1.lora_a.val());
    assert_ne!(a0, a1, "layers must draw independent adapters");

    let mut again = ToyModel::new(&device, 2);
    reset_adapters(&mut again, LoraInit::later_task(), 7).expect("reset");
    assert_eq!(
        values(again.blocks[1].fc2.lora_a.val()),
        values(model.blocks[1].fc2.lora_a.val())
    );
}

#[test]
fn merged_update_of_a_zero_adapter_leaves_the_weight_bit_identical() {
    let device = device();
    let mut layer = adapted_layer(&device);
    layer.lora_b = Param::from_tensor(Tensor::zeros([RANK, D_OUT], &device));
    let before = values(layer.base_layer.weight.val());
    layer.merge().expect("merge");
    assert_eq!(values(layer.base_layer.weight.val()), before);
}
