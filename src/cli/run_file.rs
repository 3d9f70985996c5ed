//! Settings read from a run file and overridden by flags: the flags' `Option` fields are
//! written over the file's, field by field.

use std::path::Path;

use gs_lora_train::TrainError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::CliError;

/// `top` written over `base`: every field `top` sets (not `null`) replaces `base`'s, nested
/// objects field by field.
///
/// # Errors
/// [`CliError::Usage`] when the two do not serialise to the same shape of JSON (not possible
/// for two values of one struct of `Option` fields).
pub fn overlay<T: Serialize + DeserializeOwned>(base: &T, top: &T) -> Result<T, CliError> {
    fn merge(base: &mut Value, top: Value) {
        match (base, top) {
            (_, Value::Null) => {}
            (Value::Object(base), Value::Object(top)) => {
                for (key, value) in top {
                    merge(base.entry(key).or_insert(Value::Null), value);
                }
            }
            (base, top) => *base = top,
        }
    }
    let as_json =
        |value: &T| serde_json::to_value(value).map_err(|err| CliError::Usage(err.to_string()));
    let mut merged = as_json(base)?;
    merge(&mut merged, as_json(top)?);
    serde_json::from_value(merged).map_err(|err| CliError::Usage(err.to_string()))
}

/// The settings saved in the JSON file `path`.
///
/// # Errors
/// [`TrainError::Io`] when it cannot be read, [`TrainError::Format`] naming the file and the
/// field when it does not hold these settings.
pub fn read_settings<T: DeserializeOwned>(path: &Path) -> Result<T, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(
        serde_json::from_str(&text).map_err(|err| TrainError::Format {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?,
    )
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        a: Option<u32>,
        b: Option<u32>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Outer {
        x: Option<f64>,
        inner: Inner,
    }

    /// Set fields of the top win, unset ones keep the base, nested structs merge per field.
    /// Catches the base winning, a `None` on top erasing a set base value, and nested structs
    /// replaced whole.
    #[test]
    fn set_fields_win_and_unset_fields_keep_the_base() {
        let base = Outer {
            x: Some(1.0),
            inner: Inner {
                a: Some(1),
                b: Some(2),
            },
        };
        let top = Outer {
            x: None,
            inner: Inner {
                a: Some(5),
                b: None,
            },
        };
        let merged = overlay(&base, &top).expect("merge");
        assert_eq!(
            merged,
            Outer {
                x: Some(1.0),
                inner: Inner {
                    a: Some(5),
                    b: Some(2)
                }
            }
        );
    }
}
