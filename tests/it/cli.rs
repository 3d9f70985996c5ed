//! `gs-lora pretrain`, `forget` and `eval` end to end on a small generated image folder, and
//! their refusals of bad input.

use std::path::Path;

use crate::common::{fails, image_folder, ok, scratch};

#[test]
fn pretrain_forget_and_eval_on_an_image_folder() {
    let base_scratch = scratch("run");
    let base = base_scratch.path();
    let data = base.join("colours");
    image_folder(&data);
    let (data, model, run) = (
        data.to_str().expect("utf-8"),
        base.join("model"),
        base.join("run"),
    );
    let (model, run) = (model.to_str().expect("utf-8"), run.to_str().expect("utf-8"));

    let log = ok(&[
        "pretrain",
        "--data",
        data,
        "--out",
        model,
        "--image-size",
        "16",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--val-fraction",
        "0.25",
    ]);
    assert!(log.contains("4 classes, 24 train / 8 val"), "{log}");
    assert!(log.contains("validation accuracy"), "{log}");
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(model).join("gs_lora.json")).expect("gs_lora.json"),
    )
    .expect("json");
    assert_eq!(info["class_names"][2], "red");
    assert_eq!(info["preprocess"]["image_size"], 16);
    assert_eq!(info["val_fraction"], 0.25);

    let forget = [
        "forget",
        "--data",
        data,
        "--model",
        model,
        "--out",
        run,
        "--tasks",
        "2",
        "--forget-per-task",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        // 6 images per class: the default fraction 0.1 would keep none of a forget class's.
        "--replay-fraction",
        "0.5",
        // No --val-fraction: the model's share (0.25), not the loader's default (0.2).
        "--bnd",
        "5",
        "--class-order",
        "python:1337",
        // Another training seed than pretraining's: the split stays the model's.
        "--seed",
        "1",
        // A plain image folder has no test split.
        "--eval-split",
        "validation",
    ];
    // Measuring on the test split (the default) is refused by name, before any training.
    let on_test = &forget[..forget.len() - 2];
    fails(
        on_test,
        1,
        "--eval-split is test, but the dataset has no test images",
    );
    assert!(!Path::new(run).join("state.json").exists());
    let log = ok(&forget);
    assert!(log.contains("acc_f"), "the results table is printed: {log}");
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(run).join("results.json")).expect("results"),
    )
    .expect("json");
    assert_eq!(results.as_array().expect("tasks").len(), 2);
    // CPython: random.seed(1337); x = list(range(4)); random.shuffle(x)
    let schedule: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(run).join("schedule.json")).expect("schedule"),
    )
    .expect("json");
    assert_eq!(schedule["order"], serde_json::json!([1, 0, 3, 2]));
    let log = ok(&forget);
    assert!(
        log.contains("resuming after task 1"),
        "a rerun resumes: {log}"
    );

    let checkpoint = Path::new(run).join("checkpoints/task-1");
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(checkpoint.join("gs_lora.json")).expect("gs_lora.json"),
    )
    .expect("json");
    assert_eq!(info["val_fraction"], 0.25, "the run took the model's share");
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--data", data, "--model"];
        args.push(checkpoint.to_str().expect("utf-8"));
        args.extend(extra);
        ok(&args)
    };
    let log = eval(&["--per-class"]);
    for needle in ["all", "forgotten", "remaining", "yellow", "(2 classes)"] {
        assert!(log.contains(needle), "`{needle}` in\n{log}");
    }
    // Where the remaining classes' images went adds up to their accuracy, and the pair lines
    // hold at least those mistakes.
    let log = eval(&["--mistakes"]);
    let number = |text: &str| text.trim().parse::<f64>().expect("a number");
    let line = |prefix: &str| {
        log.lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("`{prefix}` in\n{log}"))
    };
    let acc_r = number(line("remaining").split('%').next().expect("percent"));
    let counts: Vec<f64> = line("remaining images: ")
        .split(',')
        .map(|part| number(part.split_whitespace().next().expect("count")))
        .collect();
    let [images, to_forgotten, to_remaining] = counts[..] else {
        panic!("three counts in\n{log}")
    };
    assert!(
        (100.0 * (images - to_forgotten - to_remaining) / images - acc_r).abs() < 0.01,
        "{log}"
    );
    let pairs: f64 = log
        .lines()
        .skip_while(|line| !line.starts_with("images  class -> predicted"))
        .skip(1)
        .map_while(|line| line.split_whitespace().next()?.parse::<f64>().ok())
        .sum();
    assert!(pairs >= to_forgotten + to_remaining, "{log}");
    let log = eval(&["--split", "train"]);
    for needle in ["train split of", "forgotten", "remaining"] {
        assert!(log.contains(needle), "`{needle}` in\n{log}");
    }

    // The model records its split seed; data split with another would measure on images it
    // trained on, and is refused before anything runs.
    let mut resplit = forget.to_vec();
    resplit.extend(["--split-seed", "3"]);
    fails(
        &resplit,
        1,
        "the data was split with seed 3 but the model was trained on the split of seed 0",
    );
    // So would a larger validation share (the extra images are ones the model trained on).
    let mut wider = forget.to_vec();
    wider.extend(["--val-fraction", "0.5"]);
    fails(
        &wider,
        1,
        "the data sets 0.5 of each class's training images aside for validation but the model \
         trained on all but 0.25 of them",
    );

    // Bad input: clear messages, no panic.
    fails(
        &["pretrain", "--out", model],
        2,
        "required arguments were not provided:\n  --data <D>",
    );
    let mut augmented = forget.to_vec();
    augmented.extend(["--augment", "on"]);
    fails(
        &augmented,
        1,
        "--augment is on, but it is DETR's detection augmentation",
    );
    fails(
        &[
            "forget", "--data", data, "--model", model, "--out", run, "--tasks", "0",
        ],
        1,
        "--tasks",
    );
    // The library names the config field (`group_lasso.weight`); the program names the flag.
    fails(
        &[
            "forget", "--data", data, "--model", model, "--out", run, "--alpha", "-1",
        ],
        1,
        "invalid setting: --alpha must be a finite number ≥ 0, found -1",
    );
    let other = base.join("other");
    let other = other.to_str().expect("utf-8");
    fails(
        &[
            "forget",
            "--data",
            data,
            "--model",
            model,
            "--out",
            other,
            "--forget-per-task",
            "3",
            "--tasks",
            "2",
            "--val-fraction",
            "0.25",
            "--eval-split",
            "validation",
        ],
        1,
        "6 forgotten classes",
    );
    fails(
        &[
            "forget",
            "--data",
            data,
            "--model",
            model,
            "--out",
            other,
            "--max-classes",
            "2",
        ],
        1,
        "the model has 4 classes but the data has 2",
    );
    fails(
        &["forget", "--data", data, "--model", data, "--out", other],
        1,
        "not a model directory",
    );
    fails(
        &["eval", "--data", data, "--model", model, "--speed", "9"],
        2,
        "unexpected argument '--speed' found",
    );
    fails(
        &["eval", "--data", "/no/such/data", "--model", model],
        1,
        "/no/such/data",
    );
    fails(
        &[
            "forget",
            "--data",
            data,
            "--model",
            model,
            "--out",
            other,
            "--few-shot",
            "2",
            "--replay-fraction",
            "0.5",
        ],
        2,
        "cannot be used with",
    );
    fails(&["bogus"], 2, "unrecognized subcommand 'bogus'");
}

#[test]
fn pretrain_with_weights_trains_a_linear_probe() {
    let base_scratch = scratch("probe");
    let base = base_scratch.path();
    let data = base.join("colours");
    image_folder(&data);
    let weights = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/gs-lora-models/tests/fixtures/timm_token/model.safetensors");
    let model = base.join("model");
    let log = ok(&[
        "pretrain",
        "--data",
        data.to_str().expect("utf-8"),
        "--out",
        model.to_str().expect("utf-8"),
        "--weights",
        weights.to_str().expect("utf-8"),
        "--epochs",
        "30",
        "--lr",
        "0.05",
        "--image-size",
        "16",
    ]);
    // The probe learns the colours from the frozen random backbone (chance is 25%).
    let accuracy: f64 = log
        .split("validation accuracy ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .and_then(|number| number.trim().parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {log}"));
    eprintln!("linear probe: {accuracy}%");
    assert!(accuracy >= 75.0, "the probe reached {accuracy}%: {log}");
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("gs_lora.json")).expect("gs_lora.json"),
    )
    .expect("json");
    assert_eq!(
        info["preprocess"]["image_size"], 16,
        "the position grid is resampled for 16×16 inputs"
    );
    let mean = info["preprocess"]["norm"]["mean"][0]
        .as_f64()
        .expect("mean");
    assert!((mean - 0.485).abs() < 1e-6, "ImageNet statistics");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(
        config["num_classes"], 4,
        "a head of the data's classes: {config}"
    );
    let log = ok(&[
        "eval",
        "--data",
        data.to_str().expect("utf-8"),
        "--model",
        model.to_str().expect("utf-8"),
    ]);
    assert!(log.contains("all"), "{log}");
}

/// The official protocol keeps a checkpoint's own head: here a torchvision `.pth` whose 5-way
/// head is cut to the data's 4 colours by a file of names, in the file's order (as the
/// official ImageNet-1k → 100 cut). Catches rows taken in the data's order instead of by name,
/// a linear probe trained instead, and a class the file does not name going unnoticed.
#[test]
fn pretrain_keeps_a_torchvision_head_cut_by_class_names() {
    use burn::tensor::Device;
    use gs_lora::core::LoraConfig;
    use gs_lora::models::VisionTransformer;
    use gs_lora::models::vit::Head;

    let base_scratch = scratch("keep-head");
    let base = base_scratch.path();
    let data = base.join("colours");
    image_folder(&data);
    let checkpoint = crate::common::fixture("torchvision_vit");
    let names = base.join("names.txt");
    std::fs::write(&names, "red\nviolet\nblue\ngreen\nyellow\n").expect("names");
    let model = base.join("model");
    let path = |p: &Path| p.to_str().expect("utf-8").to_string();
    let args = |out: &Path, names: &Path| {
        vec![
            "pretrain".to_string(),
            "--data".into(),
            path(&data),
            "--out".into(),
            path(out),
            "--weights".into(),
            path(&checkpoint.join("model.pth")),
            "--model-config".into(),
            path(&checkpoint.join("config.json")),
            "--head-classes".into(),
            path(names),
        ]
    };
    let run: Vec<String> = args(&model, &names);
    let log = ok(&run.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(log.contains("validation accuracy"), "{log}");

    let device = Device::default();
    let head_weight = |model: VisionTransformer| match model.head {
        Some(Head::Linear(linear)) => linear.weight.val().into_data(),
        _ => panic!("a linear head"),
    };
    let lora = LoraConfig::new();
    let original = VisionTransformer::from_pretrained(
        checkpoint.join("config.json"),
        checkpoint.join("model.pth"),
        &lora,
        0,
        &device,
    )
    .expect("original");
    // Data classes sorted: blue, green, red, yellow → lines 2, 3, 0, 4.
    let expected = head_weight(original.select_classes(&[2, 3, 0, 4]).expect("cut"));
    let saved = VisionTransformer::from_pretrained(
        model.join("config.json"),
        model.join("model.safetensors"),
        &lora,
        0,
        &device,
    )
    .expect("saved");
    assert_eq!(head_weight(saved), expected);

    std::fs::write(&names, "red\nviolet\nblue\ngreen\nwhite\n").expect("names");
    let run = args(&base.join("model2"), &names);
    fails(
        &run.iter().map(String::as_str).collect::<Vec<_>>(),
        1,
        "\"yellow\"",
    );
}
