//! Image folders, on disk or in a zip archive: `ROOT/CLASS/*.png|jpg`, or with splits
//! `ROOT/train/CLASS/…` and `ROOT/val/CLASS/…` (or `test/`). A class is every folder that holds
//! images directly, named by its path under the root (`alphabet/character01` for Omniglot); a
//! single top folder shared by every image (as zip archives often have) is not part of the name.

use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::listing::{Chosen, Listing, Split, assemble, choose, decode, decode_files};
use super::{Dataset, LoadOptions};
use crate::error::{Result, TrainError, io, io_error};

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_image(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn split_named(name: &str) -> Option<Split> {
    match name {
        "train" => Some(Split::Train),
        "val" | "valid" | "validation" => Some(Split::Val),
        "test" => Some(Split::Test),
        _ => None,
    }
}

/// Classes and splits of images given by their `/`-separated paths under the root.
fn listing<L>(source: &str, mut images: Vec<(Vec<String>, L)>) -> Result<Listing<L>> {
    if images.is_empty() {
        return Err(TrainError::Data(format!(
            "{source}: no images found (expected CLASS/*.png|jpg)"
        )));
    }
    if let Some((path, _)) = images.iter().find(|(parts, _)| parts.len() < 2) {
        return Err(TrainError::Data(format!(
            "{source}: images must be inside class folders, found `{}` at the top",
            path.join("/")
        )));
    }
    // Drop top folders every image shares, as long as each image keeps a class folder.
    loop {
        let first = &images[0].0[0];
        let shared = images
            .iter()
            .all(|(parts, _)| parts.len() > 2 && &parts[0] == first);
        if !shared || split_named(first).is_some() {
            break;
        }
        images.iter_mut().for_each(|(parts, _)| {
            parts.remove(0);
        });
    }
    let with_splits = images
        .iter()
        .all(|(parts, _)| parts.len() > 2 && split_named(&parts[0]).is_some());
    let items = images
        .into_iter()
        .map(|(mut parts, locator)| {
            parts.pop();
            let split = if with_splits {
                split_named(&parts.remove(0))
            } else {
                None
            };
            (parts.join("/"), split, locator)
        })
        .collect();
    Ok(Listing::by_class_name(items))
}

/// What a walk of an image folder found: image files with their path parts under the root,
/// folders without any entry, and directory symlinks skipped because they loop.
#[derive(Default)]
struct Walk {
    images: Vec<(Vec<String>, PathBuf)>,
    empty: Vec<PathBuf>,
    loops: Vec<PathBuf>,
}

/// Every image file under `dir` (recursively, in name order, hidden entries skipped).
/// `ancestors` are the resolved folders above, so a symlink back to one of them is skipped
/// instead of being followed forever.
fn walk(
    dir: &Path,
    parts: &[String],
    ancestors: &mut Vec<PathBuf>,
    found: &mut Walk,
) -> Result<()> {
    let real = dir.canonicalize().map_err(io_error("resolving", dir))?;
    if ancestors.contains(&real) {
        found.loops.push(dir.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_error("listing", dir))?
        .collect::<std::io::Result<_>>()
        .map_err(io_error("listing", dir))?;
    entries.sort_by_key(|entry| entry.file_name());
    if entries.is_empty() {
        found.empty.push(dir.to_path_buf());
    }
    ancestors.push(real);
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let mut child = parts.to_vec();
        child.push(name.clone());
        if path.is_dir() {
            walk(&path, &child, ancestors, found)?;
        } else if is_image(&name) {
            found.images.push((child, path));
        }
    }
    ancestors.pop();
    Ok(())
}

/// Loads an image folder on disk, reading and decoding in parallel.
///
/// # Errors
/// A missing or unreadable root, images outside class folders, no images, or a class without
/// training images. Unreadable image files are skipped and counted in [`Dataset::skipped`].
pub fn load_folder(root: &Path, options: &LoadOptions) -> Result<Dataset> {
    let source = root.display().to_string();
    let mut found = Walk::default();
    walk(root, &[], &mut Vec::new(), &mut found)?;
    for (what, paths) in [
        ("empty folder(s) ignored", &found.empty),
        ("folder symlink(s) that loop back skipped", &found.loops),
    ] {
        if let Some(first) = paths.first() {
            eprintln!(
                "warning: {} {what}, first: {}",
                paths.len(),
                first.display()
            );
        }
    }
    let chosen = choose(listing(&source, found.images)?, options, &source)?;
    let decoded = decode_files(&chosen, options)?;
    Ok(assemble(chosen, decoded, |path| path.display().to_string()))
}

/// Loads a zip archive of an image folder (for example Omniglot's `images_background.zip`):
/// entries are inflated one after another, then decoded in parallel.
///
/// # Errors
/// As [`load_folder`], and an unreadable archive.
pub fn load_zip(path: &Path, options: &LoadOptions) -> Result<Dataset> {
    let source = path.display().to_string();
    let bad_zip = |err: zip::result::ZipError| TrainError::Format {
        path: path.to_path_buf(),
        message: err.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(bad_zip)?;
    let mut names: Vec<(Vec<String>, String)> = archive
        .file_names()
        .filter(|name| !name.ends_with('/') && is_image(name))
        .filter(|name| {
            !name
                .split('/')
                .any(|part| part.starts_with('.') || part == "__MACOSX")
        })
        .map(|name| {
            (
                name.split('/').map(str::to_string).collect(),
                name.to_string(),
            )
        })
        .collect();
    names.sort_by(|a, b| a.1.cmp(&b.1));
    let chosen: Chosen<String> = choose(listing(&source, names)?, options, &source)?;
    let limits = gs_lora_core::Limits::from_env()?;
    // Streamed with a cap: an entry's declared size may lie, and a small archive may inflate
    // to gigabytes.
    let mut read = |name: &String| -> std::result::Result<Vec<u8>, String> {
        let entry = archive.by_name(name).map_err(|err| err.to_string())?;
        let what = || format!("the entry {name}");
        limits
            .check_file(what, entry.size().into())
            .map_err(|err| err.to_string())?;
        let mut bytes = Vec::new();
        entry
            .take(limits.file.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|err| err.to_string())?;
        limits
            .check_file(what, bytes.len() as u128)
            .map_err(|err| err.to_string())?;
        Ok(bytes)
    };
    let bytes: Vec<Vec<_>> = chosen
        .splits
        .iter()
        .map(|items| items.iter().map(|item| read(&item.locator)).collect())
        .collect();
    let mut decoded = bytes.into_iter().map(|split| {
        split
            .into_par_iter()
            .map(|bytes| decode(&bytes?, options))
            .collect()
    });
    let decoded = std::array::from_fn(|_| decoded.next().unwrap_or_default());
    Ok(assemble(chosen, decoded, |name| format!("{source}:{name}")))
}
