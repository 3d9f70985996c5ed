//! Keeping a checkpoint's own classifier instead of training a new one, as the official
//! protocol does: the face CosFace head as trained, the ImageNet-1k head cut to the dataset's
//! classes by their folder names (PROTOCOL §0.1, `imagenet_folder_names.txt`).

use std::collections::HashMap;
use std::path::Path;

use gs_lora_models::VisionTransformer;

use crate::error::{Result, TrainError, io};

/// The head row of each of the dataset's `class_names`. With `names` (a text file, one class
/// name per line in head-row order, blank lines not allowed), each class's line; without, class
/// `i` is row `i`, which needs a head of exactly the dataset's classes.
///
/// # Errors
/// An unreadable file, one whose line count is not the head's `head_classes` or that repeats
/// a name, a dataset class it does not name (up to five listed), or without a file a head of
/// another size.
pub fn head_rows(
    names: Option<&Path>,
    class_names: &[String],
    head_classes: usize,
) -> Result<Vec<usize>> {
    let Some(path) = names else {
        if head_classes != class_names.len() {
            return Err(TrainError::InvalidSetting(format!(
                "the checkpoint's head has {head_classes} classes but the data has {}; name the \
                 head's classes in a file (one per line, in head order) to cut it",
                class_names.len()
            )));
        }
        return Ok((0..head_classes).collect());
    };
    let format = |message: String| TrainError::Format {
        path: path.to_path_buf(),
        message,
    };
    let size = std::fs::metadata(path).map_err(io(path))?.len();
    gs_lora_core::Limits::from_env()?.check_memory(
        || format!("the class names {}", path.display()),
        size.into(),
    )?;
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    if lines.len() != head_classes {
        return Err(format(format!(
            "{} names, but the checkpoint's head has {head_classes} classes",
            lines.len()
        )));
    }
    let mut rows = HashMap::with_capacity(lines.len());
    for (row, name) in lines.iter().enumerate() {
        if name.is_empty() {
            return Err(format(format!("line {} is empty", row + 1)));
        }
        if let Some(first) = rows.insert(*name, row) {
            return Err(format(format!(
                "`{name}` appears on lines {} and {}",
                first + 1,
                row + 1
            )));
        }
    }
    let missing: Vec<&str> = class_names
        .iter()
        .filter(|name| !rows.contains_key(name.as_str()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format(format!(
            "{} of the data's classes are not named, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        )));
    }
    Ok(class_names.iter().map(|name| rows[name.as_str()]).collect())
}

/// `model` with its pretrained head cut to the dataset's `class_names` (see [`head_rows`]).
///
/// # Errors
/// A model without a head, and [`head_rows`]'s errors.
pub fn keep_pretrained_head(
    model: VisionTransformer,
    names: Option<&Path>,
    class_names: &[String],
) -> Result<VisionTransformer> {
    let head_classes = model
        .head
        .as_ref()
        .map(|head| head.num_classes())
        .ok_or_else(|| {
            TrainError::InvalidSetting("the checkpoint has no classifier head to keep".into())
        })?;
    let rows = head_rows(names, class_names, head_classes)?;
    Ok(model.select_classes(&rows)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Each dataset class finds its line, whatever the dataset's order; without a file the
    /// rows are the identity. Catches rows counted from 1, or the dataset's order taken for
    /// the file's.
    #[test]
    fn classes_find_their_head_rows_by_name() {
        let scratch = tempfile::tempdir().expect("scratch");
        let path = scratch.path().join("heads.txt");
        std::fs::write(&path, "n01440764\nn01443537\nn01484850\nn01491361\n").expect("write");
        let data = names(&["n01491361", "n01440764"]);
        assert_eq!(head_rows(Some(&path), &data, 4).expect("rows"), vec![3, 0]);
        assert_eq!(head_rows(None, &data, 2).expect("identity"), vec![0, 1]);

        let message = |names: Option<&Path>, data: &[&str], classes| {
            head_rows(names, &self::names(data), classes)
                .expect_err("refused")
                .to_string()
        };
        assert!(message(Some(&path), &["n09999999"], 4).contains("n09999999"));
        assert!(message(Some(&path), &["n01440764"], 1000).contains("4 names, but"));
        assert!(message(None, &["a", "b"], 3).contains("head has 3 classes but the data has 2"));
        std::fs::write(&path, "a\nb\na\n").expect("write");
        assert!(message(Some(&path), &["a"], 3).contains("lines 1 and 3"));
    }
}
