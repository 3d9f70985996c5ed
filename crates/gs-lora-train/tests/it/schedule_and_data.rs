//! Task schedule, run settings and the embedded dataset.

use gs_lora_train::classification::data::{SyntheticShapes, SyntheticShapesConfig};
use gs_lora_train::config::{ForgetConfig, Replay};
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
    assert!(message(TaskSchedule::new(10, 0, 2, 0)).contains("`tasks`"));
    assert!(message(TaskSchedule::new(10, 2, 0, 0)).contains("`forget_per_task`"));
    let err = message(TaskSchedule::new(10, 5, 2, 0));
    assert!(
        err.contains("10 forgotten classes") && err.contains("has 10"),
        "{err}"
    );
}

/// The per-task schedule against PROTOCOL §0.4 (timm's cosine, stepped before each epoch):
/// `lr_e = min_lr + ½(lr − min_lr)(1 + cos(π·e/E))`, by hand for four epochs and by formula for
/// every epoch of other lengths. Catches a linear decay, the progress `e/(E − 1)` (which ends
/// at `min_lr`; the official last epoch does not), and a schedule over the whole run.
#[test]
fn the_learning_rate_is_the_official_cosine_at_every_epoch() {
    let four = ForgetConfig {
        epochs: 4,
        ..ForgetConfig::default()
    };
    let by_hand = [
        0.01,
        0.008_536_998_372_026_804,
        0.005_005,
        0.001_473_001_627_973_195_6,
    ];
    for (epoch, expected) in by_hand.iter().enumerate() {
        let lr = four.lr_at(epoch);
        assert!((lr - expected).abs() < 1e-15, "epoch {epoch}: {lr}");
    }
    for epochs in [1, 2, 5, 7, 10, 100] {
        let config = ForgetConfig {
            epochs,
            ..ForgetConfig::default()
        };
        for epoch in 0..epochs {
            let t = epoch as f64 / epochs as f64;
            let expected = 1e-5 + 0.5 * (1e-2 - 1e-5) * (1.0 + (std::f64::consts::PI * t).cos());
            let lr = config.lr_at(epoch);
            assert!(
                (lr - expected).abs() < 1e-15,
                "{epochs} epochs, epoch {epoch}: {lr}"
            );
        }
    }
}

#[test]
fn settings_follow_the_reference_and_refuse_bad_values() {
    let config = ForgetConfig {
        epochs: 5,
        ..ForgetConfig::default()
    };
    assert_eq!(config.lr_at(0), 1e-2);
    assert!((config.lr_at(2) - 0.006_548_539_886_902_863).abs() < 1e-15);
    assert!((config.lr_at(4) - 0.000_963_960_113_097_138_1).abs() < 1e-15);
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
            bnd: Some(f64::NAN),
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
    assert!("gs-lora+".parse::<gs_lora_train::MethodKind>().is_err());

    // config.json names the method as the flag does, and still reads the earlier spelling.
    let method = gs_lora_train::MethodKind::GsLoraPlusPlus;
    assert_eq!(
        serde_json::to_string(&method).expect("valid input"),
        "\"gs-lora++\""
    );
    assert_eq!(
        "gs-lora++"
            .parse::<gs_lora_train::MethodKind>()
            .expect("valid input"),
        method
    );
    for json in ["\"gs-lora++\"", "\"gs-lora-plus-plus\""] {
        assert_eq!(
            serde_json::from_str::<gs_lora_train::MethodKind>(json).expect("valid input"),
            method
        );
    }
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
    let image = &data.train.images[0];
    assert_eq!(
        (image.width(), image.height(), image.channels()),
        (16, 16, 3)
    );
    assert_eq!(
        data,
        SyntheticShapes::generate(&config),
        "same seed, same data"
    );
    let other = SyntheticShapes::generate(&SyntheticShapesConfig { seed: 4, ..config });
    assert_ne!(data.train.images, other.train.images);
    assert_ne!(
        data.train.images[0], data.val.images[0],
        "splits are drawn independently"
    );
}

/// A batch's values on the host.
fn values(batch: &gs_lora_train::classification::Batch) -> Vec<f32> {
    batch
        .images
        .clone()
        .try_into_vec_as::<f32>()
        .expect("readable")
}

#[test]
fn preprocessing_resizes_crops_matches_channels_and_normalises() {
    use gs_lora_train::classification::data::ImageSet;
    use gs_lora_train::classification::make_batch;
    use gs_lora_train::image::Image;
    use gs_lora_train::image::{Normalization, Preprocess};
    let device = burn::tensor::Device::default();
    // A 6×4 grey image whose columns are 0, 50, 100, 150, 200, 250.
    let pixels: Vec<u8> = (0..4).flat_map(|_| (0..6).map(|x| 50 * x)).collect();
    let mut set = ImageSet::default();
    set.push(Image::new(6, 4, 1, pixels).expect("image"), 7);
    let norm = Normalization {
        mean: [0.5, 0.25, 0.0],
        std: [0.5, 0.25, 1.0],
    };
    // Shorter side already 4: no resize; centre crop keeps columns 1..5; grey goes to 3 channels.
    let batch = make_batch(&set, &[0], &Preprocess::new(4, 3, norm), None, &device);
    assert_eq!(batch.images.dims(), [1, 3, 4, 4]);
    assert_eq!(batch.labels, vec![7]);
    let got = values(&batch);
    for c in 0..3 {
        for y in 0..4 {
            for x in 0..4 {
                let v = 50.0 * (x + 1) as f32 / 255.0;
                let expected = (v - norm.mean[c]) / norm.std[c];
                let found = got[(c * 4 + y) * 4 + x];
                assert!(
                    (found - expected).abs() < 1e-6,
                    "c{c} y{y} x{x}: {found} vs {expected}"
                );
            }
        }
    }
    // crop_pct 0.5: resized to a shorter side of 4 / 0.5 = 8 (12×8), centre 4×4 crop.
    let zoomed = Preprocess {
        crop_pct: 0.5,
        ..Preprocess::new(4, 1, Normalization::HALF)
    };
    assert_eq!(zoomed.resize_side(), 8);
    let got = values(&make_batch(&set, &[0], &zoomed, None, &device));
    assert_eq!(got.len(), 16);
    assert!(
        got.windows(2).take(3).all(|w| w[1] > w[0]),
        "columns still increase: {got:?}"
    );
    // RGB to one channel: luminance.
    let mut rgb = ImageSet::default();
    rgb.push(Image::new(1, 1, 3, vec![255, 0, 0]).expect("image"), 0);
    let grey = Preprocess::new(
        1,
        1,
        Normalization {
            mean: [0.0; 3],
            std: [1.0; 3],
        },
    );
    let got = values(&make_batch(&rgb, &[0], &grey, None, &device));
    assert!((got[0] - 0.299).abs() < 1e-6);
    assert!(
        Preprocess {
            crop_pct: 1.5,
            ..grey
        }
        .validate()
        .is_err()
    );
    assert!(
        Preprocess {
            channels: 2,
            ..grey
        }
        .validate()
        .is_err()
    );
}

#[test]
fn augmentation_flips_and_shifts_deterministically_and_keeps_labels() {
    use gs_lora_train::classification::make_batch;
    use gs_lora_train::image::{Augment, Normalization, Preprocess};
    let device = burn::tensor::Device::default();
    let data = SyntheticShapes::generate(&SyntheticShapesConfig {
        image_size: 8,
        train_per_class: 1,
        val_per_class: 1,
        test_per_class: 1,
        seed: 0,
    });
    let preprocess = Preprocess::new(8, 3, Normalization::HALF);
    let indices = [3, 17, 42];
    let augment = Augment {
        flip: true,
        max_shift: 2,
    };
    let batch = |augment: &Augment, seed| {
        make_batch(
            &data.train,
            &indices,
            &preprocess,
            Some((augment, seed)),
            &device,
        )
    };
    let a = batch(&augment, 5);
    assert_eq!(a.labels, vec![3, 17, 42]);
    assert_eq!(
        values(&a),
        values(&batch(&augment, 5)),
        "same seed, same images"
    );
    assert_ne!(values(&a), values(&batch(&augment, 6)));
    // Without shift, an image is either itself or its mirror.
    let flip_only = Augment {
        flip: true,
        max_shift: 0,
    };
    let plain = values(&make_batch(&data.train, &[3], &preprocess, None, &device));
    let mirrored: Vec<f32> = (0..3 * 8 * 8)
        .map(|i| plain[(i / 8) * 8 + 7 - i % 8])
        .collect();
    for seed in 0..4 {
        let flipped = values(&make_batch(
            &data.train,
            &[3],
            &preprocess,
            Some((&flip_only, seed)),
            &device,
        ));
        assert!(flipped == plain || flipped == mirrored, "seed {seed}");
    }
}
