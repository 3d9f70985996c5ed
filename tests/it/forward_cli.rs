//! `gs-lora forward` end to end: every committed checkpoint format (the ViT family and
//! Deformable DETR), and clear failures.

use std::path::{Path, PathBuf};

use crate::common::{fixture, gs_lora};
use safetensors::SafeTensors;

fn max_abs_diff(a: &SafeTensors, b: &SafeTensors, key: &str) -> (f32, f32) {
    let read = |t: &SafeTensors| -> Vec<f32> {
        t.tensor(key)
            .unwrap_or_else(|_| panic!("{key}"))
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let (x, y) = (read(a), read(b));
    assert_eq!(x.len(), y.len(), "{key} sizes");
    let diff = x
        .iter()
        .zip(&y)
        .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
    let scale = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    (diff, scale)
}

/// Every output of the reference file `expected` is in `found` to 1e-5 of its largest value.
fn assert_outputs_match(found: &Path, expected: &Path) {
    let found_bytes = std::fs::read(found).expect("output written");
    let expected_bytes = std::fs::read(expected).expect("reference");
    let found = SafeTensors::deserialize(&found_bytes).expect("valid safetensors");
    let expected = SafeTensors::deserialize(&expected_bytes).expect("reference");
    for key in expected.names() {
        let (diff, scale) = max_abs_diff(&found, &expected, key);
        assert!(diff <= 1e-5 * scale, "{key}: max |diff| {diff} vs {scale}");
    }
}

#[test]
fn forward_writes_the_reference_outputs_for_every_format() {
    let out_dir = std::env::temp_dir().join(format!("gs-lora-cli-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).expect("tmp");
    // (fixture, input, reference output); the padded DETR input carries a `pixel_mask`.
    for (name, input, output) in [
        ("timm_token", "input", "output"),
        ("timm_avg_ls", "input", "output"),
        ("hf_vit_classifier", "input", "output"),
        ("hf_vit_pooler", "input", "output"),
        ("hf_dinov2", "input", "output"),
        ("detr", "input", "output"),
        ("detr", "input_padded", "output_padded"),
        ("detr_refine", "input", "output"),
        ("detr_two_stage", "input", "output"),
        ("detr_tied", "input", "output"),
        ("detr_refine_tied", "input", "output"),
        ("detr_two_stage_tied", "input", "output"),
        ("hf_dinov2_sharded", "input", "output"),
    ] {
        let dir = fixture(name);
        let out = out_dir.join(format!("{name}-{input}.safetensors"));
        let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
        let run = gs_lora(&[
            "forward",
            "--model-config",
            &path(&dir.join("config.json")),
            "--weights",
            &path(&dir),
            "--input",
            &path(&dir.join(format!("{input}.safetensors"))),
            "--output",
            &path(&out),
            "--backend",
            "flex",
        ]);
        assert!(
            run.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let found_bytes = std::fs::read(&out).expect("output written");
        let expected_bytes =
            std::fs::read(dir.join(format!("{output}.safetensors"))).expect("reference");
        let found = SafeTensors::deserialize(&found_bytes).expect("valid safetensors");
        let expected = SafeTensors::deserialize(&expected_bytes).expect("reference");
        for key in expected.names() {
            let (diff, scale) = max_abs_diff(&found, &expected, key);
            assert!(
                diff <= 1e-4 * scale,
                "{name} {key}: max |diff| {diff} vs max |ref| {scale}"
            );
        }
    }
    std::fs::remove_dir_all(&out_dir).ok();
}

#[test]
fn bad_invocations_fail_with_a_message() {
    let run = gs_lora(&["forward", "--model-config", "x.json"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("required arguments were not provided"));

    let dir = fixture("timm_token");
    let path = |p: PathBuf| p.to_str().expect("utf-8").to_string();
    let run = gs_lora(&[
        "forward",
        "--model-config",
        &path(dir.join("config.json")),
        "--weights",
        &path(dir.join("model.safetensors")),
        "--input",
        &path(dir.join("input.safetensors")),
        "--output",
        "/nonexistent-dir/out.safetensors",
        "--backend",
        "tpu",
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("unknown backend `tpu`"));

    let run = gs_lora(&["frobnicate"]);
    assert_eq!(run.status.code(), Some(2));
}

/// `--weights owner/name` reads the snapshot `refs/main` names in the Hugging Face cache that
/// `HF_HUB_CACHE` points at (here the sharded DINOv2 fixture, so the shard index is found and
/// read too), with no `--config`; a repo the cache lacks fails saying where it looked. Catches
/// the cache variable ignored, the ref not followed and a download attempted.
#[test]
fn forward_reads_a_repo_id_from_the_hugging_face_cache() {
    let hub = std::env::temp_dir().join(format!("gs-lora-hub-{}", std::process::id()));
    std::fs::remove_dir_all(&hub).ok();
    let repo = hub.join("models--tiny--dinov2");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).expect("snapshot");
    std::fs::create_dir_all(repo.join("refs")).expect("refs");
    std::fs::write(repo.join("refs/main"), commit).expect("ref");
    let source = fixture("hf_dinov2_sharded");
    for entry in std::fs::read_dir(&source).expect("fixture") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        if name.starts_with("model") || name == "config.json" {
            std::fs::copy(&path, snapshot.join(&name)).expect("copy");
        }
    }
    let out = hub.join("out.safetensors");
    let input = source.join("input.safetensors");
    let run = |repo_id: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gs-lora"))
            .args(["forward", "--weights", repo_id, "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .env("HF_HUB_CACHE", &hub)
            .output()
            .expect("gs-lora runs")
    };
    let found = run("tiny/dinov2");
    assert!(
        found.status.success(),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    assert_outputs_match(&out, &source.join("output.safetensors"));
    let missing = run("tiny/other");
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        message.contains("models--tiny--other") && message.contains("hf download"),
        "{message}"
    );
    std::fs::remove_dir_all(&hub).ok();
}

/// `--adapters DIR` applies adapters PEFT saved before the forward pass: PEFT's outputs on the
/// DINOv2 fixture with rsLoRA and an `alpha_pattern`; a DETR refuses the flag. Catches the
/// flag read and dropped.
#[test]
fn forward_applies_peft_adapters() {
    let dir = std::env::temp_dir().join(format!("gs-lora-adapters-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let out = dir.join("out.safetensors");
    let base = fixture("hf_dinov2");
    let adapters = fixture("peft_dinov2");
    let run = gs_lora(&[
        "forward",
        "--weights",
        base.to_str().expect("utf-8"),
        "--adapters",
        adapters.to_str().expect("utf-8"),
        "--input",
        base.join("input.safetensors").to_str().expect("utf-8"),
        "--output",
        out.to_str().expect("utf-8"),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_outputs_match(&out, &adapters.join("output.safetensors"));
    let detr = fixture("detr");
    let refused = gs_lora(&[
        "forward",
        "--weights",
        detr.to_str().expect("utf-8"),
        "--adapters",
        adapters.to_str().expect("utf-8"),
        "--input",
        detr.join("input.safetensors").to_str().expect("utf-8"),
        "--output",
        out.to_str().expect("utf-8"),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--adapters applies to ViT"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
}
