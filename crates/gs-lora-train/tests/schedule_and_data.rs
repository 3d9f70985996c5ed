//! Task schedule, run settings and the embedded dataset.

use gs_lora_train::config::{ForgetConfig, Replay};
use gs_lora_train::data::{SyntheticShapes, SyntheticShapesConfig};
use gs_lora_train::{TaskSchedule, TrainError};

#[test]
fn tasks_cut_the_shuffled_order_from_the_end() {
    let schedule = TaskSchedule::new(10, 3, 2, 7).expect("valid");
    let order = &schedule.order;
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..10).collect::<Vec<_>>(),
        "the order is a permutation"
    );
    assert_ne!(order, &sorted, "seed 7 shuffles");
    for (i, task) in schedule.tasks.iter().enumerate() {
        let end = 10 - 2 * i;
        assert_eq!(task.index, i);
        assert_eq!(task.forget, order[end - 2..end].to_vec());
        assert_eq!(task.retain, order[..end - 2].to_vec());
        assert_eq!(task.old, order[end..].to_vec());
    }
    assert_eq!(schedule, TaskSchedule::new(10, 3, 2, 7).expect("valid"));
    assert_ne!(
        schedule.order,
        TaskSchedule::new(10, 3, 2, 8).expect("valid").order
    );
}

#[test]
fn impossible_schedules_are_refused() {
    let message = |r: Result<TaskSchedule, TrainError>| r.expect_err("refused").to_string();
    assert!(message(TaskSchedule::new(10, 0, 2, 0)).contains("--tasks"));
    assert!(message(TaskSchedule::new(10, 2, 0, 0)).contains("--forget-per-task"));
    let err = message(TaskSchedule::new(10, 5, 2, 0));
    assert!(
        err.contains("10 forgotten classes") && err.contains("has 10"),
        "{err}"
    );
}

#[test]
fn settings_follow_the_reference_and_refuse_bad_values() {
    let config = ForgetConfig {
        epochs: 5,
        ..ForgetConfig::default()
    };
    assert_eq!(config.lr_at(0), 1e-2);
    assert!((config.lr_at(4) - 1e-5).abs() < 1e-15);
    let mid = 1e-5 + 0.5 * (1e-2 - 1e-5);
    assert!((config.lr_at(2) - mid).abs() < 1e-12);
    assert_eq!(config.beta_for(0), 0.2);
    assert_eq!(config.beta_for(1), 0.25);
    assert_eq!(config.beta_for(9), 0.2);
    assert!(config.validate().is_ok());

    let bad = [
        ForgetConfig {
            epochs: 0,
            ..ForgetConfig::default()
        },
        ForgetConfig {
            replay: Replay::Fraction(0.0),
            ..ForgetConfig::default()
        },
        ForgetConfig {
            replay: Replay::FewShot(0),
            ..ForgetConfig::default()
        },
        ForgetConfig {
            bnd: f64::NAN,
            ..ForgetConfig::default()
        },
        ForgetConfig {
            beta: vec![],
            ..ForgetConfig::default()
        },
    ];
    for config in bad {
        assert!(config.validate().is_err(), "{config:?}");
    }
    assert!("gs-lora+".parse::<gs_lora_train::Method>().is_err());
}

#[test]
fn the_embedded_dataset_is_deterministic_and_fine_grained() {
    let config = SyntheticShapesConfig {
        image_size: 16,
        train_per_class: 2,
        val_per_class: 1,
        test_per_class: 1,
        seed: 3,
    };
    let data = SyntheticShapes::generate(&config);
    assert_eq!(data.num_classes(), 60);
    let mut names = data.class_names.clone();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 60, "class names are unique");
    assert_eq!(
        (data.train.len(), data.val.len(), data.test.len()),
        (120, 60, 60)
    );
    assert_eq!(data.train.image_len(), 3 * 16 * 16);
    assert!(data.train.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(
        data,
        SyntheticShapes::generate(&config),
        "same seed, same data"
    );
    let other = SyntheticShapes::generate(&SyntheticShapesConfig { seed: 4, ..config });
    assert_ne!(data.train.pixels, other.train.pixels);
    assert_ne!(
        data.train.image(0),
        data.val.image(0),
        "splits are drawn independently"
    );
}

#[test]
fn augmentation_flips_and_shifts_deterministically_and_keeps_labels() {
    use gs_lora_train::batch::augmented;
    let data = SyntheticShapes::generate(&SyntheticShapesConfig {
        image_size: 8,
        train_per_class: 1,
        val_per_class: 1,
        test_per_class: 1,
        seed: 0,
    });
    let indices = [3, 17, 42];
    let (a, positions) = augmented(&data.train, &indices, 2, 5);
    assert_eq!(positions, vec![0, 1, 2]);
    assert_eq!(a.labels, vec![3, 17, 42]);
    assert_eq!(
        a,
        augmented(&data.train, &indices, 2, 5).0,
        "same seed, same images"
    );
    assert_ne!(a, augmented(&data.train, &indices, 2, 6).0);
    // Without shift, an image is either itself or its mirror.
    let (plain, _) = augmented(&data.train, &[3], 0, 9);
    let source = data.train.image(3);
    let mirrored: Vec<f32> = (0..3 * 8 * 8)
        .map(|i| source[(i / 8) * 8 + 7 - i % 8])
        .collect();
    assert!(plain.image(0) == source || plain.image(0) == mirrored.as_slice());
}
