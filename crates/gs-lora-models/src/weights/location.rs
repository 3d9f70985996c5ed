//! Where a checkpoint's two files are: a weights file, a model folder, or a Hugging Face repo id
//! found in the local Hugging Face cache (never downloaded).
//!
//! The cache layout is the one `huggingface_hub` writes: `<hub>/models--<owner>--<name>/`
//! holding `refs/<ref>` (a file with a commit hash) and `snapshots/<commit>/` (the repo's files,
//! usually links into `blobs/`). `<hub>` is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// Weights files a model folder may hold, in the order they are preferred.
const WEIGHT_FILES: [&str; 4] = [
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
];

/// A checkpoint's architecture file and weights (a file, or a shard index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFiles {
    /// The `config.json` describing the architecture.
    pub config: PathBuf,
    /// The weights: a safetensors or PyTorch file, or a `*.index.json` of shards.
    pub weights: PathBuf,
}

impl CheckpointFiles {
    /// Resolves `weights`, as a user gives it:
    /// - an existing file: itself, with `config.json` beside it;
    /// - an existing folder: its `config.json` and the first of `model.safetensors`,
    ///   `model.safetensors.index.json`, `pytorch_model.bin`, `pytorch_model.bin.index.json`;
    /// - otherwise a Hugging Face repo id `owner/name`, optionally `@revision` (a branch or tag
    ///   the cache has a ref for, or a commit hash; default `main`): that snapshot's folder in
    ///   the local cache (see [`hub_cache`]), as a folder above.
    ///
    /// `config` replaces the `config.json` found this way.
    ///
    /// # Errors
    /// [`ModelError::CheckpointNotFound`] saying where it looked and how to fill the cache.
    pub fn locate(weights: &Path, config: Option<PathBuf>) -> Result<Self> {
        Self::locate_with_cache(weights, config, hub_cache())
    }

    /// [`locate`](Self::locate) with the Hugging Face cache at `hub` (`None`: no cache).
    ///
    /// # Errors
    /// As [`locate`](Self::locate).
    pub fn locate_with_cache(
        weights: &Path,
        config: Option<PathBuf>,
        hub: Option<PathBuf>,
    ) -> Result<Self> {
        let given = weights.to_string_lossy();
        let found = if weights.is_file() {
            Self {
                config: weights.with_file_name("config.json"),
                weights: weights.to_path_buf(),
            }
        } else if weights.is_dir() {
            Self::in_folder(weights, &given)?
        } else {
            Self::in_folder(&snapshot(&given, hub)?, &given)?
        };
        Ok(Self {
            config: config.unwrap_or(found.config),
            weights: found.weights,
        })
    }

    /// The config and weights files of the model folder `folder` (`given` as the user said it).
    fn in_folder(folder: &Path, given: &str) -> Result<Self> {
        let weights = WEIGHT_FILES
            .iter()
            .map(|name| folder.join(name))
            .find(|path| path.is_file())
            .ok_or_else(|| ModelError::CheckpointNotFound {
                given: given.to_string(),
                message: format!(
                    "{} holds none of {}",
                    folder.display(),
                    WEIGHT_FILES.join(", ")
                ),
            })?;
        Ok(Self {
            config: folder.join("config.json"),
            weights,
        })
    }
}

/// The local Hugging Face hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub` (`None` without any of these variables or a home folder).
pub fn hub_cache() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    var("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| var("HF_HOME").map(|home| PathBuf::from(home).join("hub")))
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache/huggingface/hub")))
}

/// The snapshot folder of the repo id `spec` (`owner/name[@revision]`) in the local cache.
fn snapshot(spec: &str, hub: Option<PathBuf>) -> Result<PathBuf> {
    let not_found = |message: String| ModelError::CheckpointNotFound {
        given: spec.to_string(),
        message,
    };
    let (repo, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let is_name = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let valid = match repo.split_once('/') {
        Some((owner, name)) => is_name(owner) && is_name(name),
        None => false,
    } && is_name(revision);
    if !valid {
        return Err(not_found(
            "no such file or folder, and not a Hugging Face repo id `owner/name[@revision]`".into(),
        ));
    }
    let Some(hub) = hub else {
        return Err(not_found(
            "no such file or folder, and no Hugging Face cache to look in (set HF_HUB_CACHE, \
             HF_HOME or HOME)"
                .into(),
        ));
    };
    let repo_dir = hub.join(format!("models--{}", repo.replace('/', "--")));
    let fill = format!(
        "fill the cache on a machine with internet (`hf download {repo}`, or \
         `from_pretrained(\"{repo}\")` in transformers) and copy it here, or set HF_HUB_CACHE"
    );
    if !repo_dir.is_dir() {
        return Err(not_found(format!(
            "no such file or folder, and {} is not in the Hugging Face cache; {fill}",
            repo_dir.display()
        )));
    }
    let reference = repo_dir.join("refs").join(revision);
    let commit = match std::fs::read_to_string(&reference) {
        Ok(text) => text.trim().to_string(),
        Err(_) => revision.to_string(),
    };
    let folder = repo_dir.join("snapshots").join(&commit);
    if is_name(&commit) && folder.is_dir() {
        Ok(folder)
    } else {
        Err(not_found(format!(
            "{} has no snapshot for revision `{revision}` (looked for {} and {}); {fill}",
            repo_dir.display(),
            reference.display(),
            folder.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder unique to this test process and `name`.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gs-lora-locate-{}-{name}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
        std::fs::write(path, b"x").expect("file");
    }

    /// A cache as `huggingface_hub` lays it out: two snapshots, `main` and a tag pointing at
    /// the first, the second only reachable by its hash; the first sharded.
    fn cache(hub: &Path) -> (PathBuf, PathBuf) {
        let repo = hub.join("models--facebook--dinov2-small");
        let (first, second) = ("a".repeat(40), "b".repeat(40));
        let old = repo.join("snapshots").join(&first);
        let new = repo.join("snapshots").join(&second);
        for file in [
            "config.json",
            "model.safetensors.index.json",
            "model-1.safetensors",
        ] {
            touch(&old.join(file));
        }
        for file in ["config.json", "model.safetensors"] {
            touch(&new.join(file));
        }
        std::fs::create_dir_all(repo.join("refs")).expect("refs");
        std::fs::write(repo.join("refs/main"), format!("{first}\n")).expect("ref");
        std::fs::write(repo.join("refs/v1"), &first).expect("tag");
        (old, new)
    }

    /// A repo id finds the snapshot its ref names (default `main`), a tag or a hash another
    /// one, and the weights file of each (a shard index where there is no single file).
    /// Catches the ref ignored (newest snapshot taken), `--` not substituted for `/`, and the
    /// index not found.
    #[test]
    fn repo_ids_resolve_to_the_snapshot_their_revision_names() {
        let hub = scratch("hub");
        let (old, new) = cache(&hub);
        let locate = |spec: &str| {
            CheckpointFiles::locate_with_cache(Path::new(spec), None, Some(hub.clone()))
                .expect(spec)
        };
        let main = locate("facebook/dinov2-small");
        assert_eq!(main.config, old.join("config.json"));
        assert_eq!(main.weights, old.join("model.safetensors.index.json"));
        assert_eq!(locate("facebook/dinov2-small@v1"), main);
        let by_hash = locate(&format!("facebook/dinov2-small@{}", "b".repeat(40)));
        assert_eq!(by_hash.weights, new.join("model.safetensors"));
        let custom = CheckpointFiles::locate_with_cache(
            Path::new("facebook/dinov2-small"),
            Some(PathBuf::from("mine.json")),
            Some(hub.clone()),
        )
        .expect("config given");
        assert_eq!(custom.config, PathBuf::from("mine.json"));
        std::fs::remove_dir_all(&hub).ok();
    }

    /// A file keeps the `config.json` beside it; a folder gives its single weights file before
    /// an index.
    #[test]
    fn files_and_folders_resolve_to_themselves() {
        let dir = scratch("folder");
        touch(&dir.join("model.safetensors"));
        touch(&dir.join("model.safetensors.index.json"));
        let file = CheckpointFiles::locate_with_cache(&dir.join("model.safetensors"), None, None)
            .expect("file");
        assert_eq!(file.config, dir.join("config.json"));
        let folder = CheckpointFiles::locate_with_cache(&dir, None, None).expect("folder");
        assert_eq!(folder, file);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// What is missing is said: the folder and the files looked for, the cache folder and how
    /// to fill it, the revision, or that the text is no repo id. Never a download.
    #[test]
    fn a_missing_checkpoint_says_where_it_looked_and_how_to_fill_the_cache() {
        let hub = scratch("missing");
        cache(&hub);
        let error = |spec: &str| {
            CheckpointFiles::locate_with_cache(Path::new(spec), None, Some(hub.clone()))
                .expect_err(spec)
                .to_string()
        };
        let absent = error("facebook/dinov2-base");
        assert!(
            absent.contains("models--facebook--dinov2-base") && absent.contains("hf download"),
            "{absent}"
        );
        let revision = error("facebook/dinov2-small@v2");
        assert!(
            revision.contains("revision `v2`") && revision.contains("refs"),
            "{revision}"
        );
        for bad in [
            "no-slash",
            "a/b/c",
            "../x",
            "owner/..",
            "owner/name@../../etc",
        ] {
            let message = error(bad);
            assert!(
                message.contains("not a Hugging Face repo id"),
                "{bad}: {message}"
            );
        }
        let empty = scratch("empty");
        let message = CheckpointFiles::locate_with_cache(&empty, None, None)
            .expect_err("empty folder")
            .to_string();
        assert!(
            message.contains("holds none of model.safetensors"),
            "{message}"
        );
        let no_cache =
            CheckpointFiles::locate_with_cache(Path::new("facebook/dinov2-small"), None, None)
                .expect_err("no cache")
                .to_string();
        assert!(no_cache.contains("HF_HUB_CACHE"), "{no_cache}");
        for dir in [hub, empty] {
            std::fs::remove_dir_all(dir).ok();
        }
    }
}
