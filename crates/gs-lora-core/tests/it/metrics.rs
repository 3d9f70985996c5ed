//! Accuracy per class set and the harmonic mean H.

use crate::common::*;
use burn::tensor::{Tensor, TensorData};
use gs_lora_core::{ClassAccuracy, CoreError, TaskMetrics, h_mean};

#[test]
fn accuracy_over_class_sets_counts_samples() {
    let mut acc = ClassAccuracy::new(4);
    // class 0: 2/2, class 1: 1/3, class 2: 0/1, class 3: none.
    acc.update(&[0, 0, 1, 2, 3, 0], &[0, 0, 1, 1, 1, 2])
        .expect("update");
    assert_eq!(acc.accuracy(&[0]), Some(100.0));
    assert_eq!(acc.accuracy(&[0, 1]), Some(60.0));
    assert_eq!(acc.accuracy(&[0, 1, 2]), Some(50.0));
    assert_eq!(acc.accuracy(&[3]), None);
    assert_eq!(acc.accuracy(&[]), None);
}

#[test]
fn mistakes_say_where_each_class_went() {
    let mut acc = ClassAccuracy::new(4);
    // class 0: 0, 0, 2 → one mistake into 2; class 1: 2, 2, 3, 1 → two into 2, one into 3;
    // class 2: 2; class 3: 0 → one into 0.
    acc.update(&[0, 0, 2, 2, 2, 3, 1, 2, 0], &[0, 0, 0, 1, 1, 1, 1, 2, 3])
        .expect("update");
    assert_eq!(
        acc.mistakes(),
        vec![(1, 2, 2), (0, 2, 1), (1, 3, 1), (3, 0, 1)]
    );
    assert_eq!(acc.images(&[0, 1]), 7);
    assert_eq!(acc.images(&[7]), 0);
    assert_eq!((acc.correct(&[0, 1]), acc.correct(&[2, 3])), (3, 1));
    // Remaining {0, 1} into forgotten {2, 3}: 1 + 2 + 1.
    assert_eq!(acc.predicted_as(&[0, 1], &[2, 3]), 4);
    // Into the group itself: its correct images and its mistakes inside it (none here).
    assert_eq!(acc.predicted_as(&[0, 1], &[0, 1]), 3);
    // Every image goes somewhere.
    assert_eq!(acc.predicted_as(&[0, 1, 2, 3], &[0, 1, 2, 3]), 9);
    // Classes outside the range count nothing.
    assert_eq!(acc.predicted_as(&[9], &[0, 9]), 0);
}

#[test]
fn logits_are_scored_top_1() {
    let device = device();
    let logits = Tensor::<2>::from_data(
        TensorData::new(vec![0.1f32, 2.0, -1.0, 3.0, 0.0, 0.5], [2, 3]),
        &device,
    );
    let mut acc = ClassAccuracy::new(3);
    acc.update_logits(logits.clone(), &[1, 2]).expect("update");
    assert_eq!(acc.accuracy(&[1]), Some(100.0));
    assert_eq!(acc.accuracy(&[2]), Some(0.0));
    let mut wrong = ClassAccuracy::new(4);
    assert!(matches!(
        wrong.update_logits(logits, &[1, 2]),
        Err(CoreError::ShapeMismatch { .. })
    ));
}

#[test]
fn bad_predictions_are_typed_errors() {
    let mut acc = ClassAccuracy::new(2);
    assert!(matches!(
        acc.update(&[0], &[0, 1]),
        Err(CoreError::ShapeMismatch { .. })
    ));
    assert_eq!(
        acc.update(&[0], &[2]),
        Err(CoreError::LabelOutOfRange {
            label: 2,
            num_classes: 2
        })
    );
    assert_eq!(
        acc.update(&[3], &[1]),
        Err(CoreError::LabelOutOfRange {
            label: 3,
            num_classes: 2
        })
    );
    assert_eq!(acc, ClassAccuracy::new(2), "a refused batch counts nothing");
}

#[test]
fn harmonic_mean_follows_the_paper() {
    // D = 80 − 5 = 75, H = 2·75·70 / 145.
    let h = h_mean(80.0, 5.0, 70.0);
    assert!((h - 2.0 * 75.0 * 70.0 / 145.0).abs() < 1e-12);
    assert_eq!(h_mean(10.0, 10.0, 0.0), 0.0);
    let metrics = TaskMetrics::new(80.0, 5.0, 70.0, Some(1.0));
    assert_eq!(metrics.h_mean, h);
    assert_eq!(metrics.acc_o, Some(1.0));
}
