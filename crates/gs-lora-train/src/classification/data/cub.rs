//! CUB-200-2011 as distributed: `images.txt`, `image_class_labels.txt`, `train_test_split.txt`,
//! `classes.txt` and `images/`. The official test split stays the test split; validation images
//! are carved from the training split.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::listing::{Item, Listing, Split, assemble, choose, decode_files};
use super::{Dataset, LoadOptions};
use crate::error::{Result, TrainError, io};

/// Whether `dir` looks like CUB-200-2011.
pub(crate) fn is_cub(dir: &Path) -> bool {
    [
        "images.txt",
        "image_class_labels.txt",
        "train_test_split.txt",
        "classes.txt",
    ]
    .iter()
    .all(|name| dir.join(name).is_file())
}

/// The `id value` lines of one of CUB's index files.
fn id_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let (id, value) = line.trim().split_once(' ').unwrap_or((line, ""));
            match id.parse() {
                Ok(id) if !value.is_empty() => Ok((id, value.trim().to_string())),
                _ => Err(TrainError::Format {
                    path: path.to_path_buf(),
                    message: format!("line {}: expected `ID VALUE`, found `{line}`", n + 1),
                }),
            }
        })
        .collect()
}

/// Loads CUB-200-2011 from its root folder, decoding (and shrinking) images in parallel.
///
/// # Errors
/// Missing or malformed index files, or an image whose class or split is not listed. Unreadable
/// image files are skipped and counted in [`Dataset::skipped`].
pub fn load_cub(root: &Path, options: &LoadOptions) -> Result<Dataset> {
    let classes = id_lines(&root.join("classes.txt"))?;
    let class_of: HashMap<usize, String> = id_lines(&root.join("image_class_labels.txt"))?
        .into_iter()
        .collect();
    let is_train: HashMap<usize, String> = id_lines(&root.join("train_test_split.txt"))?
        .into_iter()
        .collect();
    let label_of: HashMap<usize, usize> = classes
        .iter()
        .enumerate()
        .map(|(label, (id, _))| (*id, label))
        .collect();
    let missing = |what: &str, id: usize| {
        TrainError::Data(format!("{}: image {id} has no {what}", root.display()))
    };
    let items = id_lines(&root.join("images.txt"))?
        .into_iter()
        .map(|(id, path)| {
            let class: usize = class_of
                .get(&id)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| missing("class in image_class_labels.txt", id))?;
            let label = *label_of
                .get(&class)
                .ok_or_else(|| missing("class listed in classes.txt", id))?;
            let split = match is_train.get(&id).map(String::as_str) {
                Some("1") => Split::Train,
                Some("0") => Split::Test,
                _ => return Err(missing("0/1 entry in train_test_split.txt", id)),
            };
            Ok(Item {
                label,
                split: Some(split),
                locator: root.join("images").join(path),
            })
        })
        .collect::<Result<Vec<Item<PathBuf>>>>()?;
    let listing = Listing {
        class_names: classes.into_iter().map(|(_, name)| name).collect(),
        items,
    };
    let chosen = choose(listing, options, &root.display().to_string())?;
    let decoded = decode_files(&chosen, options)?;
    Ok(assemble(chosen, decoded, |path| path.display().to_string()))
}
