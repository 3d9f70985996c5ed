//! The `gs-lora` program as a careless or hostile user meets it (issue 14, `docs/reliability.md`):
//! nothing of the user's is deleted or overwritten, runs are locked and survive `kill -9`
//! anywhere, bad input gets a clear error (never a panic), and memory is bounded before
//! anything large is allocated. Each test names the mutation of the program it catches.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{
    arg, fails, fixture, gs_lora, image_folder, kill_mid_run, ok, scratch, spawn, text, write_f32,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A small image folder and a model pretrained on it (two quick epochs), in `base`.
fn pretrained(base: &Path) -> (PathBuf, PathBuf) {
    let (data, model) = (base.join("colours"), base.join("model"));
    image_folder(&data);
    ok(&[
        "pretrain",
        "--data",
        arg(&data),
        "--out",
        arg(&model),
        "--image-size",
        "16",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--val-fraction",
        "0.25",
    ]);
    (data, model)
}

/// `gs-lora forget` flags of a small two-task run of `model` on `data` into `run`.
fn forget_args(data: &Path, model: &Path, run: &Path, epochs: &str) -> Vec<String> {
    [
        "forget",
        "--data",
        arg(data),
        "--model",
        arg(model),
        "--out",
        arg(run),
        "--tasks",
        "2",
        "--forget-per-task",
        "1",
        "--epochs",
        epochs,
        "--batch-size",
        "4",
        "--val-fraction",
        "0.25",
        "--bnd",
        "5",
        // 6 images per class: the default fraction 0.1 would keep none of a forget class's.
        "--replay-fraction",
        "0.5",
        // A plain image folder has no test split.
        "--eval-split",
        "validation",
    ]
    .map(String::from)
    .to_vec()
}

fn run_ok(args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&args)
}

/// What a finished run must reproduce exactly: `results.json` without its timing fields, the
/// curves, the schedule and every checkpoint's bytes.
fn fingerprint(run: &Path) -> Vec<(String, Vec<u8>)> {
    let mut results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("results.json")).expect("results.json"),
    )
    .expect("json");
    for task in results.as_array_mut().expect("tasks") {
        let task = task.as_object_mut().expect("task");
        task.remove("seconds");
        task.remove("peak_rss_mib");
    }
    let mut parts = vec![("results.json".to_string(), results.to_string().into_bytes())];
    for name in ["curves.csv", "schedule.json", "config.json"] {
        parts.push((name.into(), std::fs::read(run.join(name)).expect(name)));
    }
    for task in 0..2 {
        for file in ["model.safetensors", "gs_lora.json", "config.json"] {
            let path = run.join(format!("checkpoints/task-{task}/{file}"));
            parts.push((arg(&path).into(), std::fs::read(&path).expect("checkpoint")));
        }
    }
    parts
}

fn same_run(a: &Path, b: &Path) -> bool {
    let (a, b) = (fingerprint(a), fingerprint(b));
    a.iter().zip(&b).all(|((_, x), (_, y))| x == y)
}

// Mutation caught: `ClassifierDir::save` removing the target recursively (the old behaviour).
#[test]
fn pretrain_never_deletes_what_it_did_not_write() {
    let base_scratch = scratch("rel-out");
    let base = base_scratch.path();
    let (data, model) = pretrained(base);
    let precious = base.join("thesis");
    std::fs::create_dir_all(&precious).expect("dir");
    std::fs::write(precious.join("chapter1.tex"), "years of work").expect("file");
    let pretrain = |out: &Path| {
        gs_lora(&[
            "pretrain",
            "--data",
            arg(&data),
            "--out",
            arg(out),
            "--image-size",
            "16",
            "--epochs",
            "1",
        ])
    };
    let refused = pretrain(&precious);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("chapter1.tex"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        std::fs::read_to_string(precious.join("chapter1.tex")).expect("kept"),
        "years of work"
    );
    // `--out` the dataset itself, or a folder holding it: refused before training.
    for out in [data.clone(), data.join("cls"), base.to_path_buf()] {
        let refused = pretrain(&out);
        assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
        assert!(text(&refused).contains("--data"), "{}", text(&refused));
    }
    assert_eq!(
        std::fs::read_dir(data.join("red")).expect("data").count(),
        8
    );
    // `--out .` in a folder with other files.
    let refused = Command::new(env!("CARGO_BIN_EXE_gs-lora"))
        .current_dir(&precious)
        .args([
            "pretrain",
            "--data",
            arg(&data),
            "--out",
            ".",
            "--epochs",
            "1",
        ])
        .output()
        .expect("runs");
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(precious.join("chapter1.tex").is_file());
    // Its own model directory is replaced, leaving nothing beside it.
    let again = pretrain(&model);
    assert!(again.status.success(), "{}", text(&again));
    let leftovers: Vec<_> = std::fs::read_dir(base)
        .expect("base")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary folders left: {leftovers:?}"
    );
}

// Mutation caught: dropping `ensure_disjoint` from `forget` or `forward`.
#[test]
fn outputs_never_replace_inputs() {
    let base_scratch = scratch("rel-clobber");
    let base = base_scratch.path();
    let (data, model) = pretrained(base);
    let config_before = std::fs::read(model.join("config.json")).expect("config");
    let mut args = forget_args(&data, &model, &model, "1");
    let args: Vec<&str> = args.iter_mut().map(|a| a.as_str()).collect();
    fails(&args, 1, "--out");
    assert_eq!(
        std::fs::read(model.join("config.json")).expect("config"),
        config_before
    );

    let dir = fixture("timm_token");
    let weights = base.join("weights.safetensors");
    std::fs::copy(dir.join("model.safetensors"), &weights).expect("copy");
    let before = std::fs::read(&weights).expect("weights");
    fails(
        &[
            "forward",
            "--model-config",
            arg(&dir.join("config.json")),
            "--weights",
            arg(&weights),
            "--input",
            arg(&dir.join("input.safetensors")),
            "--output",
            arg(&weights),
        ],
        1,
        "--output",
    );
    assert_eq!(std::fs::read(&weights).expect("weights"), before);
}

// Mutation caught: `run_schedule` without `RunLock::acquire`.
#[test]
fn a_run_directory_is_used_by_one_process_at_a_time() {
    let base_scratch = scratch("rel-lock");
    let base = base_scratch.path();
    let (data, model) = pretrained(base);
    let run = base.join("run");
    let mut first = spawn(&forget_args(&data, &model, &run, "200"));
    let lock = run.join(".lock");
    let started = Instant::now();
    while std::fs::read_to_string(&lock).map_or(true, |pid| pid.trim().is_empty()) {
        assert!(started.elapsed() < Duration::from_secs(60), "never locked");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = gs_lora(
        &forget_args(&data, &model, &run, "1")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let message = text(&second);
    first.kill().expect("kill");
    first.wait().expect("wait");
    assert_eq!(second.status.code(), Some(1), "{message}");
    assert!(
        message.contains(&format!("is in use by process {}", first.id())),
        "{message}"
    );
    // The lock dies with its process: the run resumes.
    run_ok(&forget_args(&data, &model, &run, "1"));
}

/// Kills at random moments of a run (seeded) and resumes each; every resumed run must equal an
/// uninterrupted one. `GS_LORA_KILLS` sets how many (default 5; the documented run uses 50).
// Mutation caught: a resume that redoes a task from a different state, a checkpoint written
// after `state.json`, or reports not rebuilt from the state.
#[test]
fn kill_minus_nine_anywhere_resumes_to_the_same_results() {
    let kills: usize = std::env::var("GS_LORA_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let base_scratch = scratch("rel-kill");
    let base = base_scratch.path();
    let (data, model) = pretrained(base);
    let reference = base.join("reference");
    let started = Instant::now();
    run_ok(&forget_args(&data, &model, &reference, "3"));
    let duration = started.elapsed();

    // A seeded moment within the uninterrupted run's duration (halved while the run finishes
    // first, so every kill lands mid-run whatever the load).
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    for k in 0..kills {
        let run = base.join(format!("killed-{k}"));
        let delay = duration.mul_f64(rng.random_range(0.02..1.0));
        let delay = kill_mid_run(&forget_args(&data, &model, &run, "3"), &run, delay);
        run_ok(&forget_args(&data, &model, &run, "3"));
        assert!(
            same_run(&reference, &run),
            "kill {k} after {delay:?} resumed to other results"
        );
        std::fs::remove_dir_all(&run).ok();
    }
    eprintln!("{kills} runs killed mid-way; all resumed identically");

    // A kill between `state.json` and the reports: the state has both tasks, `results.json`
    // one, and an atomic write of a process now gone (no process has id 2^32 − 1) left its
    // temporary file. The rerun rebuilds every report and removes it.
    let stale = base.join("stale");
    run_ok(&forget_args(&data, &model, &stale, "3"));
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(stale.join("results.json")).expect("results"),
    )
    .expect("json");
    let one_task = serde_json::Value::Array(vec![results[0].clone()]);
    std::fs::write(stale.join("results.json"), one_task.to_string()).expect("write");
    std::fs::write(stale.join("curves.csv"), "task\n").expect("write");
    let abandoned = stale.join(format!(".results.json.tmp-{}-0", u32::MAX));
    std::fs::write(&abandoned, "{ half").expect("write");
    run_ok(&forget_args(&data, &model, &stale, "3"));
    assert!(!abandoned.exists(), "stale temporary kept");
    assert!(same_run(&reference, &stale), "reports not rebuilt");
}

// Mutation caught: `subset` clamping to at least one image (the old panic), or loading a
// dataset with a class that has no readable image.
#[test]
fn a_class_without_readable_images_is_refused_by_name() {
    let base_scratch = scratch("rel-unreadable");
    let base = base_scratch.path();
    let (data, model) = pretrained(base);
    for entry in std::fs::read_dir(data.join("green")).expect("green") {
        std::fs::write(entry.expect("file").path(), b"not a png").expect("corrupt");
    }
    for args in [
        forget_args(&data, &model, &base.join("run"), "1"),
        [
            "pretrain",
            "--data",
            arg(&data),
            "--out",
            arg(&base.join("m2")),
            "--epochs",
            "1",
        ]
        .map(String::from)
        .to_vec(),
    ] {
        let output = gs_lora(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let message = text(&output);
        assert_eq!(output.status.code(), Some(1), "{message}");
        assert!(message.contains("class `green`"), "{message}");
        assert!(!base.join("m2").exists());
    }
}

// Mutations caught: no batch check in `VisionTransformer::check_input`, no finiteness check on
// loading, the write error reported as a parse error.
#[test]
fn forward_refuses_empty_non_finite_and_unwritable() {
    let base_scratch = scratch("rel-forward");
    let base = base_scratch.path();
    let dir = fixture("timm_token");
    let config = dir.join("config.json");
    let forward = |weights: &Path, input: &Path, output: &Path, extra: &[&str]| {
        let mut args = vec![
            "forward",
            "--model-config",
            arg(&config),
            "--weights",
            arg(weights),
            "--input",
            arg(input),
            "--output",
            arg(output),
        ];
        args.extend(extra);
        gs_lora(&args)
    };
    let weights = dir.join("model.safetensors");
    let out = base.join("out.safetensors");

    let empty = base.join("empty.safetensors");
    write_f32(&empty, &[("pixel_values", vec![0, 3, 32, 32], vec![])]);
    let result = forward(&weights, &empty, &out, &[]);
    assert_eq!(result.status.code(), Some(1), "{}", text(&result));
    assert!(
        text(&result).contains("at least one image"),
        "{}",
        text(&result)
    );

    let mut pixels = vec![0.1f32; 2 * 3 * 32 * 32];
    pixels[3 * 32 * 32 + 5] = f32::NAN; // image 1, channel 0, row 0, column 5
    let nan = base.join("nan.safetensors");
    write_f32(&nan, &[("pixel_values", vec![2, 3, 32, 32], pixels)]);
    let result = forward(&weights, &nan, &out, &[]);
    assert_eq!(result.status.code(), Some(1), "{}", text(&result));
    assert!(
        text(&result).contains("`pixel_values`") && text(&result).contains("[1, 0, 0, 5]"),
        "{}",
        text(&result)
    );
    let allowed = forward(&weights, &nan, &out, &["--allow-non-finite"]);
    assert!(allowed.status.success(), "{}", text(&allowed));

    // A weight with an infinity: named.
    let bytes = std::fs::read(&weights).expect("weights");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("fixture");
    let mut owned: Vec<(String, Vec<usize>, Vec<f32>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, view.shape().to_vec(), values)
        })
        .collect();
    let target = owned
        .iter_mut()
        .find(|(name, _, _)| name == "blocks.1.mlp.fc2.weight")
        .expect("fc2");
    target.2[7] = f32::INFINITY;
    let bad_weights = base.join("inf.safetensors");
    write_f32(&bad_weights, &owned);
    let result = forward(&bad_weights, &dir.join("input.safetensors"), &out, &[]);
    assert_eq!(result.status.code(), Some(1), "{}", text(&result));
    assert!(
        text(&result).contains("blocks.1.mlp.fc2.weight"),
        "{}",
        text(&result)
    );

    let missing = base.join("no/such/folder/out.safetensors");
    let result = forward(&weights, &dir.join("input.safetensors"), &missing, &[]);
    assert_eq!(result.status.code(), Some(1), "{}", text(&result));
    assert!(
        text(&result).contains("writing") && text(&result).contains("No such file"),
        "{}",
        text(&result)
    );
}

// Mutation caught: a safetensors entry check that names the neighbour (the parser's order).
#[test]
fn a_bad_data_offset_names_its_own_tensor() {
    let base_scratch = scratch("rel-offset");
    let base = base_scratch.path();
    let path = base.join("w.safetensors");
    write_f32(
        &path,
        &[
            ("a", vec![2], vec![1.0, 2.0]),
            ("b", vec![2], vec![3.0, 4.0]),
            ("c", vec![2], vec![5.0, 6.0]),
        ],
    );
    let mut bytes = std::fs::read(&path).expect("file");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8")) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).expect("utf-8");
    // `c` points past the end; the header keeps its length.
    let edited = header.replace("[16,24]", "[16,99]");
    assert_ne!(edited, header);
    bytes.splice(8..8 + header_len, edited.bytes());
    std::fs::write(&path, &bytes).expect("write");
    let input = base.join("in.safetensors");
    write_f32(
        &input,
        &[("pixel_values", vec![1, 3, 32, 32], vec![0.0; 3072])],
    );
    fails(
        &[
            "forward",
            "--model-config",
            arg(&fixture("timm_token").join("config.json")),
            "--weights",
            arg(&path),
            "--input",
            arg(&input),
            "--output",
            arg(&base.join("out.safetensors")),
        ],
        1,
        "tensor `c`",
    );
}

// Mutations caught: missing validation of each numeric flag (the run would start training).
#[test]
fn numeric_settings_are_checked_before_anything_runs() {
    let base_scratch = scratch("rel-settings");
    let base = base_scratch.path();
    let (data, model) = pretrained(base);
    let out = base.join("m2");
    for (flag, value, needle) in [
        ("--lr", "nan", "--lr"),
        ("--lr", "-1", "--lr"),
        ("--batch-size", "0", "--batch-size"),
    ] {
        let started = Instant::now();
        fails(
            &[
                "pretrain",
                "--data",
                arg(&data),
                "--out",
                arg(&out),
                flag,
                value,
            ],
            1,
            needle,
        );
        assert!(started.elapsed() < Duration::from_secs(30), "refused late");
    }
    let run = base.join("run");
    for (flag, value, needle) in [
        ("--min-lr", "0.5", "--min-lr"),
        ("--big-alpha", "nan", "--big-alpha"),
        ("--big-alpha", "-5", "--big-alpha"),
        ("--pro-forget-weight", "inf", "--pro-forget-weight"),
        ("--lora-alpha", "0", "--lora-alpha"),
        ("--val-fraction", "0", "validation"),
    ] {
        let mut args = forget_args(&data, &model, &run, "1");
        args.extend([flag.to_string(), value.to_string()]);
        // `--val-fraction` is already in the base flags; replace it there.
        if flag == "--val-fraction" {
            args.truncate(args.len() - 2);
            let at = args.iter().position(|a| a == flag).expect("flag");
            args[at + 1] = value.into();
        }
        let output = gs_lora(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            output.status.code(),
            Some(1),
            "{flag} {value}: {}",
            text(&output)
        );
        assert!(text(&output).contains(needle), "{}", text(&output));
        assert!(!run.join("state.json").exists(), "{flag} {value} trained");
    }
    // A rate that is valid but diverges: the pretraining message, and nothing saved.
    fails(
        &[
            "pretrain",
            "--data",
            arg(&data),
            "--out",
            arg(&out),
            "--image-size",
            "16",
            "--epochs",
            "3",
            "--lr",
            "1e30",
        ],
        1,
        "pretraining: the loss became",
    );
    assert!(!out.exists(), "nothing saved");
    fails(
        &[
            "pretrain",
            "--data",
            "embedded",
            "--out",
            arg(&out),
            "--max-classes",
            "3",
        ],
        2,
        "--data embedded",
    );
    assert!(!out.exists());
}

// Mutation caught: `ClassifierInfo::validate` not called by `ClassifierDir::info`, and the preprocessing's
// memory check missing (an image size of 100000 allocates 120 GB per image).
#[test]
fn a_model_directory_is_validated_before_use() {
    let base_scratch = scratch("rel-modeldir");
    let base = base_scratch.path();
    let (data, model) = pretrained(base);
    let info_path = model.join("gs_lora.json");
    let original = std::fs::read_to_string(&info_path).expect("info");
    let eval = || {
        gs_lora(&[
            "eval",
            "--data",
            arg(&data),
            "--model",
            arg(&model),
            "--val-fraction",
            "0.25",
        ])
    };
    let json: serde_json::Value = serde_json::from_str(&original).expect("json");
    for (edit, needle) in [
        (serde_json::json!({"forgotten": [99]}), "forgotten class 99"),
        (
            serde_json::json!({"preprocess": {"norm": {"std": [0.0, 1.0, 1.0]}}}),
            "standard deviations",
        ),
        (
            serde_json::json!({"preprocess": {"image_size": 100000}}),
            "GS_LORA_MAX_MEMORY",
        ),
    ] {
        let mut edited = json.clone();
        merge(&mut edited, &edit);
        std::fs::write(&info_path, edited.to_string()).expect("write");
        let output = eval();
        assert_eq!(output.status.code(), Some(1), "{}", text(&output));
        assert!(text(&output).contains(needle), "{}", text(&output));
    }
    std::fs::write(&info_path, &original).expect("restore");
    // A low limit refuses an ordinary model, naming the variable; the default allows it.
    let limited = Command::new(env!("CARGO_BIN_EXE_gs-lora"))
        .env("GS_LORA_MAX_MEMORY", "1K")
        .args(["eval", "--data", arg(&data), "--model", arg(&model)])
        .output()
        .expect("runs");
    assert_eq!(limited.status.code(), Some(1), "{}", text(&limited));
    assert!(
        text(&limited).contains("GS_LORA_MAX_MEMORY"),
        "{}",
        text(&limited)
    );
    assert!(eval().status.success(), "the restored directory works");
}

/// Overwrites `target`'s fields with `patch`'s, recursively.
fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (key, value) in p {
                merge(
                    t.entry(key.clone()).or_insert(serde_json::Value::Null),
                    value,
                );
            }
        }
        (t, p) => *t = p.clone(),
    }
}

// Mutation caught: the walk following directory symlinks without the ancestor check.
#[cfg(unix)]
#[test]
fn a_symlink_loop_in_an_image_folder_is_skipped() {
    let base_scratch = scratch("rel-loop");
    let base = base_scratch.path();
    let data = base.join("colours");
    image_folder(&data);
    std::os::unix::fs::symlink("..", data.join("red/loop")).expect("symlink");
    let log = ok(&[
        "pretrain",
        "--data",
        arg(&data),
        "--out",
        arg(&base.join("model")),
        "--image-size",
        "16",
        "--epochs",
        "1",
    ]);
    assert!(log.contains("4 classes"), "{log}");
    assert!(log.contains("loop back"), "{log}");
}

// Mutation caught: reading a zip entry without the size cap (`read_to_end` of the whole entry).
#[test]
fn an_archive_entry_over_the_file_limit_is_not_inflated() {
    use std::io::Write;
    let base_scratch = scratch("rel-zip");
    let base = base_scratch.path();
    let folder = base.join("colours");
    image_folder(&folder);
    let archive = base.join("colours.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&archive).expect("zip"));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for class in ["blue", "green", "red", "yellow"] {
        for i in 0..8 {
            let name = format!("{class}/{i}.png");
            zip.start_file(&name, options).expect("entry");
            let bytes = if class == "red" && i == 0 {
                vec![0u8; 4 << 20] // 4 MiB of zeros: a few KiB compressed
            } else {
                std::fs::read(folder.join(&name)).expect("png")
            };
            zip.write_all(&bytes).expect("write");
        }
    }
    zip.finish().expect("finish");
    let output = Command::new(env!("CARGO_BIN_EXE_gs-lora"))
        .env("GS_LORA_MAX_FILE", "1M")
        .args([
            "pretrain",
            "--data",
            arg(&archive),
            "--out",
            arg(&base.join("model")),
            "--image-size",
            "16",
            "--epochs",
            "1",
        ])
        .output()
        .expect("runs");
    let message = text(&output);
    assert!(output.status.success(), "{message}");
    assert!(
        message.contains("skipped 1 unreadable") && message.contains("GS_LORA_MAX_FILE"),
        "{message}"
    );
}
