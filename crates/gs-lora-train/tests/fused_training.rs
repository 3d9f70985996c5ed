//! The embedded ViT trains through the same numbers with the fused ops as with Burn's: a
//! GS-LoRA step's loss and every adapter gradient (which flow back through each block's
//! softmax and GELU) agree to rounding. Its own test binary, since it switches the fused path
//! off for the whole process.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Gradients;
use burn::tensor::{Device, Int, Tensor, TensorData};
use gs_lora_core::{GroupLassoConfig, LoraConfig, LoraInit, fused};
use gs_lora_models::VisionTransformer;
use gs_lora_models::weights::SeededInit;
use gs_lora_train::ForgetConfig;
use gs_lora_train::classification::Batch;
use gs_lora_train::classification::ClassifierObjective;
use gs_lora_train::classification::embedded_config;
use gs_lora_train::engine::Pair;
use gs_lora_train::method::GsLora;

const CLASSES: usize = 60;

/// `n` deterministic 32×32 images in `[-1, 1)` with labels spread over the classes.
fn batch(n: usize, seed: usize, device: &Device) -> Batch {
    let pixels: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + seed) % CLASSES).collect();
    let targets: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Batch {
        images: Tensor::from_data(TensorData::new(pixels, [n, 3, 32, 32]), device),
        targets: Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), device),
        labels,
    }
}

/// Every gradient the step produced, in visiting order.
struct Collect<'a> {
    grads: &'a Gradients,
    found: Vec<Vec<f32>>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = param.val().grad(self.grads) {
            self.found
                .push(grad.to_data().try_to_vec::<f32>().expect("f32 gradient"));
        }
    }
}

/// The GS-LoRA loss of one step and its adapter gradients.
fn step(model: &VisionTransformer, device: &Device) -> (f32, Vec<Vec<f32>>) {
    // β 0.2, BND 105, α 1e-4 on the first task, the penalty in the loss (as the official code;
    // with the proximal step it is not, and every `lora_a` would get a zero gradient while
    // B = 0).
    let batches = Pair {
        retain: batch(12, 1, device),
        forget: batch(12, 2, device),
    };
    let config = ForgetConfig {
        group_lasso: GroupLassoConfig::new().with_proximal(false),
        ..ForgetConfig::default()
    };
    let terms = GsLora::new(&config)
        .loss_of(&ClassifierObjective::default(), model, batches, 0)
        .expect("loss terms");
    let loss = terms.total.clone().into_scalar::<f32>();
    let grads = terms.total.backward();
    let mut collect = Collect {
        grads: &grads,
        found: Vec::new(),
    };
    model.visit(&mut collect);
    (loss, collect.found)
}

#[test]
fn fused_and_burn_ops_give_the_same_loss_and_adapter_gradients() {
    let device = Device::default().autodiff();
    let lora = LoraConfig::new()
        .with_rank(8)
        .with_lora_alpha(1.0)
        .with_init(LoraInit::first_task());
    let config = embedded_config(32, CLASSES);
    let model = VisionTransformer::load(&config, &mut SeededInit::new(0), &lora, 0, &device)
        .expect("embedded ViT");

    let fused_on = fused::available(&device);
    let (loss, grads) = step(&model, &device);
    fused::set_enabled(false);
    assert!(!fused::available(&device));
    let (reference_loss, reference) = step(&model, &device);
    fused::set_enabled(true);
    assert_eq!(fused::available(&device), fused_on);

    assert!(
        (loss - reference_loss).abs() <= 1e-5 * reference_loss.abs(),
        "{loss} vs {reference_loss}"
    );
    // lora_a and lora_b of fc1 and fc2 in each of the 6 blocks (lora_a through the penalty).
    assert_eq!(grads.len(), reference.len());
    assert!(grads.len() >= 12, "only {} gradients", grads.len());
    for (i, (found, expected)) in grads.iter().zip(&reference).enumerate() {
        let diff: f32 = found
            .iter()
            .zip(expected)
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        let norm: f32 = expected.iter().map(|b| b * b).sum();
        assert!(norm > 0.0, "gradient {i} is zero");
        assert!(
            diff.sqrt() <= 1e-5 * norm.sqrt(),
            "gradient {i}: relative difference {}",
            (diff / norm).sqrt()
        );
    }
}
