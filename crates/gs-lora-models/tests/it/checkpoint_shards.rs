//! Sharded checkpoints behind a Hugging Face index: an index that does not match its shards is
//! refused, naming the index and what is wrong.

use std::path::Path;

use gs_lora_models::ModelError;
use gs_lora_models::weights::{CheckpointSource, IdentityKeys};

use crate::common::fixture;

const INDEX: &str = "model.safetensors.index.json";

/// A copy of the sharded DINOv2 fixture whose index `edit` rewrites (as JSON text), in a
/// directory removed when the copy is dropped.
fn edited_copy(edit: Edit) -> tempfile::TempDir {
    let source = fixture("hf_dinov2_sharded");
    let scratch = tempfile::tempdir().expect("scratch");
    let dir = scratch.path();
    for entry in std::fs::read_dir(&source).expect("fixture") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
    }
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(INDEX)).expect("index"))
            .expect("json");
    std::fs::write(dir.join(INDEX), edit(index).to_string()).expect("write index");
    scratch
}

fn open_error(dir: &Path) -> String {
    match CheckpointSource::open(dir.join(INDEX), IdentityKeys) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(err) => {
            assert!(
                matches!(err, ModelError::ShardIndex { .. } | ModelError::Io { .. }),
                "{err:?}"
            );
            err.to_string()
        }
    }
}

/// A rewrite of an index's JSON.
type Edit = fn(serde_json::Value) -> serde_json::Value;

const FIRST: &str = "model-00001-of-00003.safetensors";
const KEY: &str = "embeddings.cls_token";

/// Every tensor of every shard is read, each from the shard the index names. Catches a
/// reader that opens only the first shard.
#[test]
fn every_shard_is_read() {
    let source = CheckpointSource::open(fixture("hf_dinov2_sharded").join(INDEX), IdentityKeys)
        .expect("open");
    let single =
        CheckpointSource::open(fixture("hf_dinov2").join("model.safetensors"), IdentityKeys)
            .expect("single");
    assert_eq!(source.names(), single.names());
}

/// An index pointing outside its folder, at a missing shard, at the wrong shard, or without a
/// map is refused with the index's path and the offending name.
#[test]
fn an_index_that_does_not_match_its_shards_is_refused() {
    let cases: [(&str, Edit, &str); 5] = [
        (
            "outside",
            (|mut index| {
                index["weight_map"][KEY] = "../model-00001-of-00003.safetensors".into();
                index
            }),
            "not a file name in the index's folder",
        ),
        (
            "absent",
            (|mut index| {
                index["weight_map"][KEY] = "model-00009-of-00009.safetensors".into();
                index
            }),
            "model-00009-of-00009.safetensors",
        ),
        (
            "elsewhere",
            (|mut index| {
                index["weight_map"][KEY] = "model-00002-of-00003.safetensors".into();
                index
            }),
            "listed in model-00002-of-00003.safetensors but found in",
        ),
        (
            "unlisted",
            (|mut index| {
                index["weight_map"]["not.a.tensor"] = FIRST.into();
                index
            }),
            "tensor `not.a.tensor` is listed in",
        ),
        (
            "no-map",
            (|_| serde_json::json!({"metadata": {}})),
            "no `weight_map` object",
        ),
    ];
    for (name, edit, expected) in cases {
        let copy = edited_copy(edit);
        let message = open_error(copy.path());
        assert!(
            message.contains(expected) && message.contains(INDEX),
            "{name}: {message}"
        );
    }
}
