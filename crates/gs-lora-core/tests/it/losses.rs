//! Retention, forgetting and prototype losses against formulas computed by hand.

use crate::common::*;
use burn::tensor::{Int, Tensor, TensorData};
use gs_lora_core::CoreError;
use gs_lora_core::loss::{
    PrototypeAccumulator, PrototypeLossConfig, cross_entropy, forget_loss, forget_loss_log_odds,
    forget_loss_per_sample, forget_loss_unlikelihood, prototype_kl, prototypes, retain_loss,
};

fn labels(values: &[i64], device: &burn::tensor::Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

/// `−mean_b (z_b[y_b] − log Σ_c exp z_b[c])` on the host.
fn host_cross_entropy(logits: &[f64], labels: &[i64], classes: usize) -> f64 {
    let total: f64 = logits
        .chunks(classes)
        .zip(labels)
        .map(|(row, &y)| {
            let max = row.iter().cloned().fold(f64::MIN, f64::max);
            let lse = max + row.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
            lse - row[y as usize]
        })
        .sum();
    total / labels.len() as f64
}

/// `Σ_d p log(p / q)` averaged over rows, `p = softmax(proto)`, `q = softmax(emb)`.
fn host_kl(embeddings: &[f64], prototypes: &[f64], dim: usize) -> f64 {
    let softmax = |row: &[f64]| -> Vec<f64> {
        let max = row.iter().cloned().fold(f64::MIN, f64::max);
        let exp: Vec<f64> = row.iter().map(|z| (z - max).exp()).collect();
        let sum: f64 = exp.iter().sum();
        exp.iter().map(|e| e / sum).collect()
    };
    let rows = embeddings.len() / dim;
    let total: f64 = embeddings
        .chunks(dim)
        .zip(prototypes.chunks(dim))
        .map(|(e, p)| {
            let (q, p) = (softmax(e), softmax(p));
            p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f64>()
        })
        .sum();
    total / rows as f64
}

#[test]
fn cross_entropy_and_retention_match_log_sum_exp_by_hand() {
    let device = device();
    let logits = random_tensor(5, 7, 1, &device).mul_scalar(4.0);
    let y = [0, 6, 3, 3, 1];
    let expected = host_cross_entropy(&values(logits.clone()), &y, 7);
    let ce = scalar(cross_entropy(logits.clone(), labels(&y, &device)).expect("ce"));
    assert!((ce - expected).abs() < 1e-5, "{ce} vs {expected}");
    // Against the hand value, not against `cross_entropy` (its alias would agree with itself).
    let retain = scalar(retain_loss(logits, labels(&y, &device)).expect("retain"));
    assert!((retain - expected).abs() < 1e-5, "{retain} vs {expected}");
}

#[test]
fn forgetting_loss_is_the_bounded_negative_cross_entropy() {
    let device = device().autodiff();
    let logits = random_tensor(4, 5, 2, &device)
        .mul_scalar(3.0)
        .require_grad();
    let y = [1, 2, 4, 0];
    let ce = host_cross_entropy(&values(logits.clone()), &y, 5);

    // Below the bound: BND − CE, and the gradient is −∂CE.
    let loss = forget_loss(logits.clone(), labels(&y, &device), 105.0).expect("loss");
    assert!((scalar(loss.clone()) - (105.0 - ce)).abs() < 1e-4);
    let grad_f = values(logits.grad(&loss.backward()).expect("gradient"));
    let ce_loss = cross_entropy(logits.clone(), labels(&y, &device)).expect("ce");
    let grad_ce = values(logits.grad(&ce_loss.backward()).expect("gradient"));
    let negated: Vec<f64> = grad_ce.iter().map(|g| -g).collect();
    assert_close(&grad_f, &negated, 1e-6);

    // Above the bound: zero, with zero gradient.
    let loss = forget_loss(logits.clone(), labels(&y, &device), ce - 0.5).expect("loss");
    assert_eq!(scalar(loss.clone()), 0.0);
    let grad = values(logits.grad(&loss.backward()).expect("gradient"));
    assert!(grad.iter().all(|g| *g == 0.0));
}

/// The per-sample bound: `(1/B) Σ_b max(0, BND − CE_b)` by hand, with a bound between the
/// samples' cross-entropies so that some are past it and some not; a sample past the bound
/// gets no gradient, one below it `−∂CE_b/B`. Catches the bound applied to the mean (the
/// value then differs), the sum instead of the mean, and the ReLU left out.
#[test]
fn the_per_sample_forgetting_loss_bounds_each_sample() {
    let device = device().autodiff();
    let logits = random_tensor(4, 5, 2, &device)
        .mul_scalar(3.0)
        .require_grad();
    let y = [1, 2, 4, 0];
    let host = values(logits.clone());
    let ce: Vec<f64> = (0..4)
        .map(|b| host_cross_entropy(&host[b * 5..(b + 1) * 5], &y[b..=b], 5))
        .collect();
    let mut sorted = ce.clone();
    sorted.sort_by(f64::total_cmp);
    let bound = (sorted[1] + sorted[2]) / 2.0;
    let expected: f64 = ce.iter().map(|c| (bound - c).max(0.0)).sum::<f64>() / 4.0;
    let mean_ce = ce.iter().sum::<f64>() / 4.0;
    assert!(
        (expected - (bound - mean_ce).max(0.0)).abs() > 1e-3,
        "the two bounds differ here"
    );

    let loss = forget_loss_per_sample(logits.clone(), labels(&y, &device), bound).expect("loss");
    assert!((scalar(loss.clone()) - expected).abs() < 1e-4);
    let grad = values(logits.grad(&loss.backward()).expect("gradient"));
    for (b, row) in grad.chunks(5).enumerate() {
        let single = logits.clone().slice_dim(0, b..b + 1);
        let ce_b = cross_entropy(single.clone(), labels(&y[b..=b], &device)).expect("ce");
        let grad_ce = values(logits.grad(&ce_b.backward()).expect("gradient"));
        let expected: Vec<f64> = grad_ce[b * 5..(b + 1) * 5]
            .iter()
            .map(|g| if ce[b] < bound { -g / 4.0 } else { 0.0 })
            .collect();
        assert_close(row, &expected, 1e-6);
    }
    assert!(forget_loss_per_sample(logits, labels(&y, &device), f64::NAN).is_err());
}

/// The unlikelihood term by hand: logits `(0, ln 3)` give `p = (¼, ¾)`; at the bound `ln 2`
/// (stop at `p_y ≤ ½`) the sample of class 1 costs `−ln(1 − ¾) + ln(1 − ½) = ln 2` and the
/// sample of class 0 (`p_y = ¼`, past the bound) nothing: the mean is `½ ln 2`. The gradient
/// on a sample's true logit is `p_y/B` (`∂(−ln(1 − p_y))/∂z_y = p_y`) and `−p_y p_c /
/// ((1 − p_y) B)` on each other logit. A sample the model is sure of (`z_y − z_c = 20`) keeps a
/// gradient near `1/B` where the cross-entropy's is `e^{−20}`, and its loss is finite. Catches
/// the cross-entropy's gradient, `ln(1 − p)` computed as `ln` of a rounded `1 − p` (infinite
/// at the sure sample), the bound's constant left out or taken as `bound`, and a sum for the
/// mean.
#[test]
fn the_unlikelihood_forgetting_loss_pushes_the_sure_samples() {
    let device = device().autodiff();
    let ln3 = 3f32.ln();
    let logits = Tensor::<2>::from_data(TensorData::new(vec![0.0, ln3, 0.0, ln3], [2, 2]), &device)
        .require_grad();
    let loss = forget_loss_unlikelihood(logits.clone(), labels(&[1, 0], &device), 2f64.ln())
        .expect("loss");
    let ln2 = 2f64.ln();
    assert!((scalar(loss.clone()) - ln2 / 2.0).abs() < 1e-6);
    let grad = values(logits.grad(&loss.backward()).expect("gradient"));
    // Sample 0 (class 1, p_y = ¾): ∂/∂z_1 = ¾/2, ∂/∂z_0 = −(¾·¼/¼)/2; sample 1 is past the bound.
    assert_close(&grad, &[-0.375, 0.375, 0.0, 0.0], 1e-6);

    let sure = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 20.0, 0.0], [1, 3]), &device)
        .require_grad();
    let y = labels(&[1], &device);
    let bound = 3f64.ln() + 1.0;
    let loss = forget_loss_unlikelihood(sure.clone(), y.clone(), bound).expect("loss");
    // −ln(1 − p_y) = ln(1 + e^{20}/2) and the bound's −ln(1 − e^{−bound}).
    let expected = (1.0 + 20f64.exp() / 2.0).ln() + (1.0 - (-bound).exp()).ln();
    assert!((scalar(loss.clone()) - expected).abs() < 1e-4, "{expected}");
    let grad = values(sure.grad(&loss.backward()).expect("gradient"));
    assert!((grad[1] - 1.0).abs() < 1e-6, "{grad:?}");
    let ce = forget_loss_per_sample(sure.clone(), y, bound).expect("ce");
    let grad_ce = values(sure.grad(&ce.backward()).expect("gradient"));
    assert!(grad_ce[1].abs() < 1e-8, "{grad_ce:?}");

    let one_class = Tensor::<2>::zeros([2, 1], &device);
    assert!(matches!(
        forget_loss_unlikelihood(one_class, labels(&[0, 0], &device), 1.0),
        Err(CoreError::ShapeMismatch { .. })
    ));
    assert!(forget_loss_unlikelihood(logits.clone(), labels(&[1, 0], &device), f64::NAN).is_err());
    assert!(forget_loss_unlikelihood(logits, labels(&[2, 0], &device), 1.0).is_err());
}

/// The log-odds term by hand: logits `(0, ln 3)` give `p = (¼, ¾)`; at the bound `ln 2` (stop
/// at `p_y ≤ ½`, log-odds 0) the sample of class 1 costs `ln 3` and the one of class 0 (log-odds
/// `−ln 3`) nothing; the gradient is `1/B` on the true logit and `−p_c/((1 − p_y) B)` on the
/// others, and stays `1` on a sure sample. With every sample inside the bound it is the sum of
/// the cross-entropy and unlikelihood forms. Catches the bound's logit taken as `−bound`, a sign
/// flipped, and the margin taken over the largest other logit instead of their LSE.
#[test]
fn the_log_odds_forgetting_loss_pushes_at_a_constant_rate() {
    let device = device().autodiff();
    let ln3 = 3f32.ln();
    let logits = Tensor::<2>::from_data(TensorData::new(vec![0.0, ln3, 0.0, ln3], [2, 2]), &device)
        .require_grad();
    let loss =
        forget_loss_log_odds(logits.clone(), labels(&[1, 0], &device), 2f64.ln()).expect("loss");
    assert!((scalar(loss.clone()) - 3f64.ln() / 2.0).abs() < 1e-6);
    let grad = values(logits.grad(&loss.backward()).expect("gradient"));
    assert_close(&grad, &[-0.5, 0.5, 0.0, 0.0], 1e-6);

    let sure = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 20.0, 0.0], [1, 3]), &device)
        .require_grad();
    let bound = 3f64.ln() + 1.0;
    let loss = forget_loss_log_odds(sure.clone(), labels(&[1], &device), bound).expect("loss");
    let expected = 20.0 - 2f64.ln() + bound + (1.0 - (-bound).exp()).ln();
    assert!((scalar(loss.clone()) - expected).abs() < 1e-4, "{expected}");
    let grad = values(sure.grad(&loss.backward()).expect("gradient"));
    assert_close(&grad, &[-0.5, 1.0, -0.5], 1e-6);

    let random = random_tensor(4, 5, 7, &device).mul_scalar(3.0);
    let y = labels(&[1, 2, 4, 0], &device);
    let sum = scalar(forget_loss_per_sample(random.clone(), y.clone(), 30.0).expect("ce"))
        + scalar(forget_loss_unlikelihood(random.clone(), y.clone(), 30.0).expect("ul"));
    let log_odds = scalar(forget_loss_log_odds(random, y, 30.0).expect("log-odds"));
    assert!((log_odds - sum).abs() < 1e-3, "{log_odds} vs {sum}");
}

#[test]
fn bad_logits_and_labels_are_typed_errors() {
    let device = device();
    let logits = random_tensor(3, 4, 3, &device);
    assert_eq!(
        cross_entropy(logits.clone(), labels(&[0, 1], &device)).err(),
        Some(CoreError::ShapeMismatch {
            what: "labels for logits [B, C]",
            expected: vec![3],
            found: vec![2]
        })
    );
    assert_eq!(
        cross_entropy(logits.clone(), labels(&[0, 4, 1], &device)).err(),
        Some(CoreError::LabelOutOfRange {
            label: 4,
            num_classes: 4
        })
    );
    assert_eq!(
        cross_entropy(logits.clone(), labels(&[0, -1, 1], &device)).err(),
        Some(CoreError::LabelOutOfRange {
            label: -1,
            num_classes: 4
        })
    );
    assert!(matches!(
        forget_loss(logits, labels(&[0, 1, 2], &device), f64::NAN),
        Err(CoreError::NonFinite { .. })
    ));
    let empty = Tensor::<2>::zeros([0, 4], &device);
    assert_eq!(
        cross_entropy(empty, labels(&[], &device)).err(),
        Some(CoreError::EmptyBatch { what: "logits" })
    );
}

#[test]
fn prototypes_are_class_means_and_batching_does_not_change_them() {
    let device = device();
    let embeddings = random_tensor(6, 3, 4, &device);
    let e = values(embeddings.clone());
    let y = [2, 0, 2, 1, 0, 2];
    let protos = prototypes(embeddings.clone(), &y, &[0, 2]).expect("prototypes");
    assert_eq!(protos.classes(), &[0, 2]);
    let mean = |rows: &[usize]| -> Vec<f64> {
        (0..3)
            .map(|d| rows.iter().map(|r| e[r * 3 + d]).sum::<f64>() / rows.len() as f64)
            .collect()
    };
    let expected: Vec<f64> = mean(&[1, 4]).into_iter().chain(mean(&[0, 2, 5])).collect();
    assert_close(&values(protos.values()), &expected, 1e-6);

    let picked = protos.for_labels(&[2, 0, 2]).expect("lookup");
    let expected: Vec<f64> = mean(&[0, 2, 5])
        .into_iter()
        .chain(mean(&[1, 4]))
        .chain(mean(&[0, 2, 5]))
        .collect();
    assert_close(&values(picked), &expected, 1e-6);
    assert_eq!(
        protos.for_labels(&[1]).err(),
        Some(CoreError::EmptyClass { class: 1 })
    );

    let mut accumulator = PrototypeAccumulator::new(3, 3);
    accumulator
        .add(embeddings.clone().slice([0..4, 0..3]), &y[..4])
        .expect("first batch");
    accumulator
        .add(embeddings.slice([4..6, 0..3]), &y[4..])
        .expect("second batch");
    let batched = accumulator.finish(&[0, 1, 2], &device).expect("finish");
    let mut expected = mean(&[1, 4]);
    expected.extend(mean(&[3]));
    expected.extend(mean(&[0, 2, 5]));
    assert_close(&values(batched.values()), &expected, 1e-6);
}

#[test]
fn prototypes_of_a_class_without_samples_is_an_error() {
    let device = device();
    let embeddings = random_tensor(2, 3, 5, &device);
    assert_eq!(
        prototypes(embeddings.clone(), &[0, 0], &[0, 1]).err(),
        Some(CoreError::EmptyClass { class: 1 })
    );
    let mut accumulator = PrototypeAccumulator::new(2, 3);
    assert!(matches!(
        accumulator.add(embeddings.clone(), &[0, 2]),
        Err(CoreError::LabelOutOfRange { label: 2, .. })
    ));
    assert!(matches!(
        accumulator.add(embeddings, &[0]),
        Err(CoreError::ShapeMismatch { .. })
    ));
}

#[test]
fn prototype_kl_and_loss_match_the_formula_by_hand() {
    let device = device();
    let (emb_f, pro_f) = (
        random_tensor(3, 5, 6, &device),
        random_tensor(3, 5, 7, &device),
    );
    let (emb_r, pro_r) = (
        random_tensor(2, 5, 8, &device),
        random_tensor(2, 5, 9, &device),
    );
    let kl_f = host_kl(&values(emb_f.clone()), &values(pro_f.clone()), 5);
    let kl_r = host_kl(&values(emb_r.clone()), &values(pro_r.clone()), 5);
    let found = scalar(prototype_kl(emb_f.clone(), pro_f.clone()).expect("kl"));
    assert!((found - kl_f).abs() < 1e-6, "{found} vs {kl_f}");
    assert!(kl_f > 0.0);

    let config = PrototypeLossConfig::new();
    assert_eq!(
        (config.bound, config.forget_weight, config.retain_weight),
        (18.0, 0.01, 0.0)
    );
    let config = config.with_retain_weight(0.5);
    let loss = config
        .loss(
            (emb_f.clone(), pro_f.clone()),
            (emb_r.clone(), pro_r.clone()),
        )
        .expect("loss");
    let expected = 0.01 * (18.0 - kl_f).max(0.0) + 0.5 * kl_r;
    assert!((scalar(loss) - expected).abs() < 1e-6);

    let capped = PrototypeLossConfig::new().with_bound(kl_f / 2.0);
    let loss = capped.loss((emb_f, pro_f), (emb_r, pro_r)).expect("loss");
    assert_eq!(scalar(loss), 0.0);
}

#[test]
fn prototype_kl_refuses_mismatched_shapes_and_bad_weights() {
    let device = device();
    let a = random_tensor(3, 5, 1, &device);
    let b = random_tensor(2, 5, 2, &device);
    assert!(matches!(
        prototype_kl(a.clone(), b.clone()),
        Err(CoreError::ShapeMismatch { .. })
    ));
    let bad = PrototypeLossConfig::new().with_forget_weight(-0.1);
    assert!(bad.loss((a.clone(), a.clone()), (b.clone(), b)).is_err());
}
