//! `gs-lora compare`: every method and seed on one schedule, one table, resumable, and
//! repeatable from its settings file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use safetensors::SafeTensors;
use tempfile::TempDir;

use crate::common::{arg, fails, gs_lora, image_folder, kill_mid_run, ok, scratch, text};

/// The comparison's rows without what differs between two runs of the same work (time,
/// memory).
fn rows(out: &Path) -> serde_json::Value {
    let mut rows: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("comparison.json")).expect("comparison.json"),
    )
    .expect("json");
    for row in rows.as_array_mut().expect("rows") {
        let row = row.as_object_mut().expect("row");
        row.remove("seconds");
        row.remove("peak_rss_mib");
    }
    rows
}

/// The tensors of a model directory, by name.
fn tensors(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(dir.join("model.safetensors")).expect("model.safetensors");
    let file = SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut tensors: Vec<(String, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    tensors.sort();
    tensors
}

/// A scratch directory `name` with the four-class folder and a small ViT trained on it for
/// `epochs` epochs: `(scratch, data, model)`.
fn pretrained(name: &str, epochs: usize) -> (TempDir, PathBuf, PathBuf) {
    let base = scratch(name);
    let data = base.path().join("colours");
    image_folder(&data);
    let model = base.path().join("model");
    ok(&[
        "pretrain",
        "--data",
        arg(&data),
        "--out",
        arg(&model),
        "--image-size=16",
        &format!("--epochs={epochs}"),
        "--batch-size=8",
        "--val-fraction=0.25",
    ]);
    (base, data, model)
}

/// `gs-lora compare --data DATA --model MODEL --out OUT EXTRA…`.
fn compare_args<'a>(
    data: &'a Path,
    model: &'a Path,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "compare",
        "--data",
        arg(data),
        "--model",
        arg(model),
        "--out",
        arg(out),
    ];
    args.extend(extra);
    args
}

/// Two methods × two seeds on a four-class folder: the table averages each run's results,
/// reports the attack, the trained parameters and the gap to the reference seed by seed; the
/// full-model baseline changes the body and never the head; a comparison interrupted after its
/// first method, or killed half-way, resumes to the same table; `--config OUT/compare.json`
/// compares the same way; the runs fanned out by `--jobs` and gathered give the same table;
/// `--method` is refused. Catches runs of one seed reused for another, a table not averaged
/// per task, a head trained by a baseline, a finished run trained again, a resume that trips
/// over a killed run's files, a settings file that loses the methods, and a job whose settings
/// differ from the comparison's (its gather would refuse the run or train it again).
#[test]
fn compare_runs_every_method_and_seed_resumes_and_repeats() {
    let (scratch_dir, data, model) = pretrained("compare", 2);
    let base = scratch_dir.path();
    let compare = |out: &Path, extra: &[&str]| ok(&compare_args(&data, &model, out, extra));
    let settings = [
        "--tasks=2",
        "--forget-per-task=1",
        "--epochs=2",
        "--batch-size=4",
        "--replay-fraction=0.5",
        "--eval-split=validation",
        "--bnd=5",
    ];
    let full = base.join("full");
    let mut args = vec![
        "--methods",
        "gs-lora,fine-tune",
        "--seeds=0,1",
        "--reference=gs-lora",
    ];
    args.extend(settings);
    let started = Instant::now();
    compare(&full, &args);
    let duration = started.elapsed();
    for file in [
        "comparison.md",
        "comparison.csv",
        "comparison.json",
        "compare.json",
        "h_per_task.svg",
        "h_per_task.png",
        "retain_vs_forget.svg",
        "retain_vs_forget.png",
    ] {
        assert!(full.join(file).is_file(), "{file} written");
    }
    let table = rows(&full);
    let table = table.as_array().expect("rows");
    assert_eq!(table.len(), 4, "two methods × two tasks");
    let results = |method: &str, seed: u64| -> serde_json::Value {
        let path = full
            .join(method)
            .join(format!("seed-{seed}"))
            .join("results.json");
        serde_json::from_slice(&std::fs::read(path).expect("results.json")).expect("json")
    };
    for (row, (method, task)) in table.iter().zip([
        ("gs-lora", 0),
        ("gs-lora", 1),
        ("fine-tune", 0),
        ("fine-tune", 1),
    ]) {
        assert_eq!(
            (row["method"].as_str(), row["task"].as_u64()),
            (Some(method), Some(task))
        );
        let per_seed: Vec<f64> = (0..2)
            .map(|s| {
                results(method, s)[task as usize]["acc_r"]
                    .as_f64()
                    .expect("acc_r")
            })
            .collect();
        let mean = row["acc_r"]["mean"].as_f64().expect("mean");
        assert!(
            (mean - (per_seed[0] + per_seed[1]) / 2.0).abs() < 1e-9,
            "{row}"
        );
        let mia = row["mia"]["mean"].as_f64().expect("the attack ran");
        assert!((0.0..=100.0).contains(&mia));
        let gap = row["gap"]["acc_r"]["mean"].as_f64();
        match method {
            "gs-lora" => assert_eq!(gap, None, "the reference has no gap"),
            _ => {
                let paired: f64 = (0..2)
                    .map(|s| {
                        let r = |m| {
                            results(m, s)[task as usize]["acc_r"]
                                .as_f64()
                                .expect("acc_r")
                        };
                        (r(method) - r("gs-lora")).abs()
                    })
                    .sum::<f64>()
                    / 2.0;
                assert!((gap.expect("gap") - paired).abs() < 1e-9, "{row}");
            }
        }
    }
    let trained = |row: usize| {
        table[row]["trainable_params"]["mean"]
            .as_f64()
            .expect("mean")
    };
    assert!(
        trained(2) > 10.0 * trained(0),
        "fine-tune trains far more than the adapters"
    );
    assert_ne!(
        results("gs-lora", 0)[0]["forget_classes"],
        results("gs-lora", 1)[0]["forget_classes"],
        "seeds draw their own schedule"
    );

    let pretrained = tensors(&model);
    let tuned = tensors(&full.join("fine-tune/seed-0/checkpoints/task-0"));
    let changed = |prefix: &str| {
        pretrained
            .iter()
            .zip(&tuned)
            .filter(|((name, _), _)| name.starts_with(prefix))
            .map(|((name, a), (other, b))| {
                assert_eq!(name, other);
                a != b
            })
            .collect::<Vec<bool>>()
    };
    let head = changed("head");
    assert!(
        !head.is_empty() && head.iter().all(|c| !c),
        "the head stays frozen"
    );
    assert!(changed("blocks").iter().any(|c| *c), "the body trains");

    // Interrupted after the first method, then resumed with both: the same table, and the
    // finished runs are not trained again.
    let resumed = base.join("resumed");
    let mut first = vec!["--methods", "gs-lora", "--seeds=0,1"];
    first.extend(settings);
    compare(&resumed, &first);
    let log = compare(&resumed, &args);
    assert_eq!(log.matches("resuming after task 1").count(), 2, "{log}");
    assert_eq!(rows(&resumed), rows(&full));

    // Killed (`SIGKILL`) half-way through, then resumed: the same table.
    let killed = base.join("killed");
    let kill_args = compare_args(&data, &model, &killed, &args);
    kill_mid_run(&kill_args, &killed, duration / 2);
    compare(&killed, &args);
    assert_eq!(rows(&killed), rows(&full));

    let again = base.join("again");
    compare(&again, &["--config", arg(&full.join("compare.json"))]);
    assert_eq!(rows(&again), rows(&full));

    // Fanned out: `--jobs` prints one `forget` per run and runs none; each line run on its own,
    // then `compare --config OUT/compare.json` finds them finished and writes the same table.
    let fanned = base.join("fanned");
    let mut job_args = args.clone();
    job_args.push("--jobs");
    let listed = gs_lora(&compare_args(&data, &model, &fanned, &job_args));
    assert!(listed.status.success(), "{}", text(&listed));
    let lines = String::from_utf8(listed.stdout).expect("UTF-8");
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 4, "two methods × two seeds: {lines:?}");
    assert!(!fanned.join("gs-lora").exists(), "--jobs runs nothing");
    for line in &lines {
        let words = shlex::split(line).expect("a shell line");
        assert_eq!(words[..2], ["gs-lora", "forget"], "{line}");
        let words: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        ok(&words);
    }
    let log = compare(&fanned, &["--config", arg(&fanned.join("compare.json"))]);
    assert_eq!(log.matches("resuming after task 1").count(), 4, "{log}");
    assert_eq!(rows(&fanned), rows(&full));
    fails(
        &[
            "compare",
            "--data",
            arg(&data),
            "--model",
            arg(&model),
            "--out",
            arg(&base.join("refused")),
            "--method=lora",
        ],
        2,
        "--methods",
    );
}

/// Every baseline runs through `forget` end to end: the full-model ones change the body and
/// never the head (Retrain from scratch: the head too; LIRF: the lower half only), and record
/// the attack and the parameters they trained. Catches a baseline whose head trains, one that trains nothing (SalUn's mask all zero, a zero importance), and
/// one missing from the command line.
#[test]
fn every_baseline_trains_the_body_and_keeps_the_head() {
    let (scratch_dir, data, model) = pretrained("baselines", 1);
    let base = scratch_dir.path();
    let pretrained = tensors(&model);
    for method in [
        "fine-tune",
        "neg-grad+",
        "random-labels",
        "salun",
        "retrain-ft",
        "lora",
        "l2",
        "ewc",
        "mas",
        "lwf",
        "der",
        "der++",
        "fdr",
        "scrub",
        "scrub-s",
        "lirf",
        "retrain",
    ] {
        let out = base.join(method);
        ok(&[
            "forget",
            "--data",
            arg(&data),
            "--model",
            arg(&model),
            "--out",
            arg(&out),
            "--method",
            method,
            "--tasks=1",
            "--forget-per-task=1",
            "--epochs=2",
            "--batch-size=4",
            "--eval-split=validation",
            "--bnd=5",
        ]);
        let tuned = tensors(&out.join("checkpoints/task-0"));
        let changed: Vec<(&str, bool)> = pretrained
            .iter()
            .zip(&tuned)
            .map(|((name, a), (other, b))| {
                assert_eq!(name, other);
                (name.as_str(), a != b)
            })
            .collect();
        // Retrain from scratch trains everything; every other baseline keeps the head.
        let head_trains = method == "retrain";
        assert!(
            changed
                .iter()
                .filter(|(name, _)| name.starts_with("head"))
                .all(|(_, c)| *c == head_trains),
            "{method}: the head {}",
            if head_trains {
                "trains"
            } else {
                "stays frozen"
            }
        );
        assert!(
            changed
                .iter()
                .any(|(name, c)| name.starts_with("blocks") && *c),
            "{method}: the body changes"
        );
        if method == "lirf" {
            // Only the lower half trains: blocks from ⌊depth/2⌋ on and the final norm stay.
            let block = |name: &str| {
                name.strip_prefix("blocks.")
                    .and_then(|rest| rest.split('.').next())
                    .and_then(|i| i.parse::<usize>().ok())
            };
            let depth = changed
                .iter()
                .filter_map(|(n, _)| block(n))
                .max()
                .expect("blocks")
                + 1;
            assert!(depth >= 2, "a model with an upper half");
            for (name, c) in &changed {
                let upper = block(name).is_some_and(|i| i >= depth / 2) || name.starts_with("norm");
                assert!(!(upper && *c), "lirf trained {name} of the upper half");
            }
        }
        let results: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("results.json")).expect("results"))
                .expect("json");
        assert!(
            results[0]["mia"]["confidence"].is_number(),
            "{method}: {results}"
        );
        assert!(results[0]["trainable_params"].as_u64().expect("count") > 0);
    }
}

/// The anchors of EWC, the teacher of DER and SCRUB-S's teacher and running average outlive
/// an interruption: a two-task run stopped
/// after its first task and resumed ends exactly as the uninterrupted run, its method state
/// written beside each checkpoint. Catches a resumed run that anchors only to the task it
/// resumes at, distils the model it resumes from instead of the pretrained teacher, or
/// restarts the running average.
#[test]
fn method_state_survives_a_resume() {
    let (scratch_dir, data, model) = pretrained("method-state", 1);
    let base = scratch_dir.path();
    for method in ["ewc", "der", "scrub-s"] {
        let forget = |out: &Path, tasks: &str| {
            ok(&[
                "forget",
                "--data",
                arg(&data),
                "--model",
                arg(&model),
                "--out",
                arg(out),
                "--method",
                method,
                tasks,
                "--forget-per-task=1",
                "--epochs=2",
                "--batch-size=4",
                "--eval-split=validation",
                "--lr=1e-3",
            ])
        };
        let whole = base.join(format!("{method}-whole"));
        forget(&whole, "--tasks=2");
        let resumed = base.join(format!("{method}-resumed"));
        forget(&resumed, "--tasks=1");
        assert!(
            resumed.join("method-state/task-0").is_dir(),
            "{method}: state written"
        );
        let log = forget(&resumed, "--tasks=2");
        assert!(log.contains("resuming after task 0"), "{log}");
        assert_eq!(
            tensors(&resumed.join("checkpoints/task-1")),
            tensors(&whole.join("checkpoints/task-1")),
            "{method}: the resumed run ends where the whole one does"
        );
    }
}

/// `--devices flex,flex` (each batch split in two on the one CPU): `pretrain` from scratch and
/// `forget` split their batches and reach the one-device weights and accuracies; a command that
/// does not split refuses a list of several devices, and a malformed list says why. Catches the
/// flag parsed but not reaching the training, and a second device silently ignored. (That the
/// split itself gives the one-device gradient is `gs-lora-train`'s `data_parallel` test.)
#[test]
fn devices_split_training_and_are_refused_where_nothing_splits() {
    let (scratch_dir, data, model) = pretrained("devices", 2);
    let base = scratch_dir.path();
    let split_model = base.join("split-model");
    let log = ok(&[
        "pretrain",
        "--data",
        arg(&data),
        "--out",
        arg(&split_model),
        "--image-size=16",
        "--epochs=2",
        "--batch-size=8",
        "--val-fraction=0.25",
        "--devices=flex,flex",
    ]);
    assert!(log.contains("split across 2 devices"), "{log}");
    let floats = |bytes: &[u8]| -> Vec<f32> {
        let words = bytes.chunks_exact(4);
        words
            .map(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect()
    };
    for ((name, a), (_, b)) in tensors(&model).iter().zip(&tensors(&split_model)) {
        let pairs = floats(a).into_iter().zip(floats(b));
        let worst = pairs.map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(worst <= 1e-5, "{name} differs by {worst}: {log}");
    }
    let forget = |out: &Path, extra: &[&str]| {
        let mut args = vec!["forget", "--data", arg(&data), "--model", arg(&model)];
        args.extend([
            "--out",
            arg(out),
            "--tasks=1",
            "--forget-per-task=1",
            "--epochs=2",
        ]);
        args.extend(["--batch-size=5", "--eval-split=validation", "--bnd=5"]);
        args.extend(extra);
        let log = ok(&args);
        assert_eq!(
            log.contains("split across 2 devices"),
            !extra.is_empty(),
            "{log}"
        );
        let results = std::fs::read(out.join("results.json")).expect("results.json");
        let results: serde_json::Value = serde_json::from_slice(&results).expect("json");
        (results[0]["acc_f"].clone(), results[0]["acc_r"].clone())
    };
    let one = forget(&base.join("one"), &[]);
    let two = forget(&base.join("two"), &["--devices", "flex, flex:0"]);
    assert_eq!(one, two);
    let eval = ["eval", "--data", arg(&data), "--model", arg(&model)];
    let with = |extra: &'static str| [&eval[..], &[extra]].concat();
    fails(&with("--devices=flex,flex"), 2, "this command runs on one");
    fails(
        &with("--devices=flex:1"),
        1,
        "has one device, index 0, found index 1",
    );
    fails(
        &with("--devices=flex,:0"),
        1,
        "device `:0` is not NAME or NAME:INDEX",
    );
}
