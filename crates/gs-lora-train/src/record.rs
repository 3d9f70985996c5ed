//! What a classifier or detector directory records beside its weights, checked alike.

use crate::error::{Result, TrainError};
use crate::image::Preprocess;

/// Checks what a model or detector directory records beside its weights: classes named and
/// distinct, forgotten classes among them and listed once, the preprocessing valid.
///
/// # Errors
/// [`TrainError::InvalidSetting`] naming the field and the value.
pub(crate) fn validate_record(
    class_names: &[String],
    forgotten: &[usize],
    preprocess: &Preprocess,
) -> Result<()> {
    let bad = |message: String| Err(TrainError::InvalidSetting(message));
    if class_names.is_empty() {
        return bad("class_names is empty".into());
    }
    let mut names: Vec<&String> = class_names.iter().collect();
    names.sort();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return bad(format!("class `{}` is named twice in class_names", pair[0]));
    }
    let classes = class_names.len();
    if let Some(class) = forgotten.iter().find(|&&c| c >= classes) {
        return bad(format!(
            "forgotten class {class} does not exist (the model has {classes} classes)"
        ));
    }
    let mut sorted = forgotten.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|pair| pair[0] == pair[1]) {
        return bad(format!("forgotten lists a class twice: {forgotten:?}"));
    }
    preprocess.validate()
}
