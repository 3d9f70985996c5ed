//! Helpers of the end-to-end tests: running the `gs-lora` program and making small datasets.

#![allow(dead_code)] // each test binary uses its own share of the helpers

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;

pub fn gs_lora(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gs-lora"))
        .args(args)
        .output()
        .expect("gs-lora runs")
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Starts `args` in the background, its output discarded.
pub fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gs-lora"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gs-lora starts")
}

/// Starts `args`, kills it (`SIGKILL`) after `delay` and returns the delay that landed mid-run:
/// a run that finished before its kill (a machine busier than when `delay` was chosen) has
/// its output `out` removed and is redone with half the delay.
pub fn kill_mid_run<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    out: &Path,
    mut delay: Duration,
) -> Duration {
    for _ in 0..10 {
        let mut child = spawn(args);
        std::thread::sleep(delay);
        let finished = child.try_wait().expect("status").is_some();
        child.kill().ok();
        child.wait().expect("wait");
        if !finished {
            return delay;
        }
        std::fs::remove_dir_all(out).ok();
        delay /= 2;
    }
    panic!("never killed mid-run: {}", out.display());
}

/// Runs `args`, expecting success; returns stdout and stderr.
pub fn ok(args: &[&str]) -> String {
    let output = gs_lora(args);
    assert!(
        output.status.success(),
        "{args:?} failed:\n{}",
        text(&output)
    );
    text(&output)
}

/// Runs `args`, expecting exit code `code` and `needle` in the message.
pub fn fails(args: &[&str], code: i32, needle: &str) {
    let output = gs_lora(args);
    let message = text(&output);
    assert_eq!(output.status.code(), Some(code), "{args:?}:\n{message}");
    assert!(
        message.contains(needle),
        "{args:?}: `{needle}` not in\n{message}"
    );
}

/// Four colour classes, eight noisy 16×16 PNGs each, in `ROOT/CLASS/`.
pub fn image_folder(root: &Path) {
    let colours = [
        ("blue", [30, 60, 220]),
        ("green", [40, 200, 60]),
        ("red", [220, 40, 40]),
        ("yellow", [230, 220, 40]),
    ];
    for (name, rgb) in colours {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("class dir");
        for i in 0..8u32 {
            let image = image::RgbImage::from_fn(16, 16, |x, y| {
                let jitter = ((x * 7 + y * 13 + i * 31) % 21) as i32 - 10;
                image::Rgb(rgb.map(|c: i32| (c + jitter).clamp(0, 255) as u8))
            });
            image.save(dir.join(format!("{i}.png"))).expect("png");
        }
    }
}

/// A fresh, empty scratch directory `gs-lora-cli-NAME-…` under the temporary directory,
/// removed with everything in it when the value is dropped.
pub fn scratch(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("gs-lora-cli-{name}-"))
        .tempdir()
        .expect("scratch directory")
}

/// A committed model fixture of `gs-lora-models` (config, weights, input, reference output).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/gs-lora-models/tests/fixtures")
        .join(name)
}

/// Writes `f32` tensors `(name, shape, values)` to a safetensors file.
pub fn write_f32<S: AsRef<str>>(path: &Path, tensors: &[(S, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, values)| values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .expect("view");
            (name.as_ref().to_string(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).expect("write safetensors");
}

/// `path` as a `&str` argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
