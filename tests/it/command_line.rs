//! The command line itself: `--flag=value`, help, environment fallbacks, suggestions for
//! misspelt flags, shell completions, and runs repeated from the settings files they write.

use std::path::Path;
use std::process::Command;

use crate::common::{arg, fails, image_folder, ok, scratch, text};

/// Help and completions list every command and flag; a misspelt flag gets a suggestion; an
/// environment variable stands in for its flag, and the flag wins over it. Catches a command
/// missing from the parser, the defaults paragraph dropped, and `BURN_DEVICE` ignored.
#[test]
fn help_suggestions_environment_and_completions() {
    let help = ok(&["--help"]);
    for command in ["pretrain", "forget", "eval", "forward", "completions"] {
        assert!(help.contains(command), "`{command}` in\n{help}");
    }
    let forget = ok(&["forget", "--help"]);
    for needle in [
        "--forget-per-task",
        "--config <RUN.json>",
        "[env: BURN_DEVICE=]",
        "Defaults: --seed 0 --tasks 4",
    ] {
        assert!(forget.contains(needle), "`{needle}` in\n{forget}");
    }
    fails(
        &[
            "forget", "--data", "d", "--model", "m", "--out", "r", "--epoch", "3",
        ],
        2,
        "a similar argument exists: '--epochs'",
    );
    fails(
        &["eval", "--data", "d", "--model", "m", "--split", "all"],
        2,
        "[possible values: train, val, test]",
    );

    let base_scratch = scratch("environment");
    let base = base_scratch.path();
    let data = base.join("colours");
    image_folder(&data);
    let eval = |env: Option<&str>, extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gs-lora"));
        command.args(["eval", "--data", arg(&data), "--model", arg(base)]);
        command.args(extra).env_remove("BURN_DEVICE");
        if let Some(name) = env {
            command.env("BURN_DEVICE", name);
        }
        text(&command.output().expect("runs"))
    };
    assert!(eval(Some("tpu"), &[]).contains("unknown backend `tpu`"));
    let flag_wins = eval(Some("tpu"), &["--backend=flex"]);
    assert!(
        flag_wins.contains("not a model directory"),
        "the flag wins over BURN_DEVICE, and the run gets as far as the model: {flag_wins}"
    );

    let bash = ok(&["completions", "bash"]);
    for needle in ["forget", "--forget-per-task", "--model-config"] {
        assert!(bash.contains(needle), "`{needle}` in the bash completions");
    }
    fails(&["completions", "tcsh"], 2, "invalid value 'tcsh'");
}

/// `pretrain` and `forget` record every setting they used; `--config FILE` runs with them again
/// (the same model bytes and results on the same machine) and flags override the file.
/// Catches a setting missing from the record, the file ignored, and a flag losing to it.
#[test]
fn pretrain_and_forget_run_again_from_their_settings_files() {
    let base_scratch = scratch("run-files");
    let base = base_scratch.path();
    let data = base.join("colours");
    image_folder(&data);
    let (model, again) = (base.join("model"), base.join("model-again"));
    ok(&[
        "pretrain",
        &format!("--data={}", arg(&data)),
        "--out",
        arg(&model),
        "--image-size=16",
        "--epochs=2",
        "--batch-size=8",
        "--val-fraction=0.25",
        "--seed=3",
    ]);
    let settings = model.join("pretrain.json");
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&settings).expect("pretrain.json"))
            .expect("json");
    assert_eq!(recorded["epochs"], 2);
    assert_eq!(recorded["seed"], 3);
    assert_eq!(recorded["image_size"], 16);
    assert_eq!(recorded["data"]["val_fraction"], 0.25);
    ok(&[
        "pretrain",
        "--data",
        arg(&data),
        "--out",
        arg(&again),
        "--config",
        arg(&settings),
    ]);
    let read = |dir: &Path, name: &str| std::fs::read(dir.join(name)).expect(name);
    assert_eq!(
        read(&model, "model.safetensors"),
        read(&again, "model.safetensors"),
        "the same settings train the same model"
    );
    assert_eq!(read(&model, "pretrain.json"), read(&again, "pretrain.json"));
    let other = base.join("model-other");
    ok(&[
        "pretrain",
        "--data",
        arg(&data),
        "--out",
        arg(&other),
        "--config",
        arg(&settings),
        "--epochs",
        "1",
    ]);
    let overridden: serde_json::Value =
        serde_json::from_slice(&read(&other, "pretrain.json")).expect("json");
    assert_eq!(overridden["epochs"], 1, "the flag wins");
    assert_eq!(overridden["seed"], 3, "the rest comes from the file");

    let forget = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "forget",
            "--data",
            arg(&data),
            "--model",
            arg(&model),
            "--out",
            arg(out),
            "--eval-split=validation",
        ];
        args.extend(extra);
        ok(&args);
    };
    let (run, rerun) = (base.join("run"), base.join("rerun"));
    forget(
        &run,
        &[
            "--tasks=2",
            "--forget-per-task=1",
            "--epochs=1",
            "--batch-size=4",
            "--replay-fraction=0.5",
            "--bnd=5",
            "--seed=1",
        ],
    );
    for plot in [
        "accuracy.svg",
        "accuracy.png",
        "group_norms.svg",
        "group_norms.png",
    ] {
        assert!(run.join(plot).is_file(), "{plot} written");
    }
    let run_config = run.join("config.json");
    forget(&rerun, &["--config", arg(&run_config)]);
    assert_eq!(read(&run, "config.json"), read(&rerun, "config.json"));
    let results = |dir: &Path| {
        let mut tasks: serde_json::Value =
            serde_json::from_slice(&read(dir, "results.json")).expect("json");
        for task in tasks.as_array_mut().expect("tasks") {
            let task = task.as_object_mut().expect("task");
            task.remove("seconds");
            task.remove("peak_rss_mib");
        }
        tasks
    };
    assert_eq!(
        results(&run),
        results(&rerun),
        "the same settings forget the same way (all but the time taken)"
    );
    let shorter = base.join("shorter");
    forget(&shorter, &["--config", arg(&run_config), "--tasks", "1"]);
    let saved: serde_json::Value =
        serde_json::from_slice(&read(&shorter, "config.json")).expect("json");
    assert_eq!(
        (saved["tasks"].clone(), saved["seed"].clone()),
        (1.into(), 1.into())
    );
    fails(
        &[
            "forget",
            "--data",
            arg(&data),
            "--model",
            arg(&model),
            "--out",
            arg(&base.join("broken")),
            "--config",
            arg(&settings),
        ],
        1,
        "pretrain.json",
    );
}
