//! Reading a model's `config.json`: the file within the size limit, and typed fields whose
//! errors name the key and the value found (sizes bounded as they are read).

use std::path::Path;

use serde_json::Value;

use crate::error::{ModelError, Result, io_error};

/// Reads `path` and parses it with `parse`, naming the file in a config error.
pub(crate) fn read_config_file<T>(path: &Path, parse: impl FnOnce(&str) -> Result<T>) -> Result<T> {
    let size = std::fs::metadata(path)
        .map_err(io_error("reading", path))?
        .len();
    gs_lora_core::Limits::from_env()?.check_file(|| path.display().to_string(), size.into())?;
    let text = std::fs::read_to_string(path).map_err(io_error("reading", path))?;
    parse(&text).map_err(|err| match err {
        ModelError::InvalidConfig(message) => ModelError::Config {
            path: path.to_path_buf(),
            message,
        },
        other => other,
    })
}

/// A value of a config that is wrong; [`read_config_file`] names the file it came from.
pub(crate) fn config_error(message: String) -> ModelError {
    ModelError::InvalidConfig(message)
}

/// Reads an optional unsigned field, failing if present with another type.
pub(crate) fn get_usize(json: &Value, key: &str) -> Result<Option<usize>> {
    match json.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => plausible_size(key, value).map(Some),
    }
}

/// The largest size a config may declare for any one dimension or count (2³¹); larger values
/// are refused as they are read, so no later product of sizes can overflow.
pub(crate) const MAX_SIZE: u64 = 1 << 31;

/// `value` as a size: an unsigned integer of at most [`MAX_SIZE`].
pub(crate) fn plausible_size(key: &str, value: &Value) -> Result<usize> {
    match value.as_u64() {
        Some(size) if size <= MAX_SIZE => Ok(size as usize),
        Some(size) => Err(config_error(format!(
            "`{key}` is {size}, larger than any model has (at most {MAX_SIZE})"
        ))),
        None => Err(config_error(format!(
            "`{key}` must be an unsigned integer, found {value}"
        ))),
    }
}

/// Reads an optional number field.
pub(crate) fn get_f64(json: &Value, key: &str) -> Result<Option<f64>> {
    match json.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .map(Some)
            .ok_or_else(|| config_error(format!("`{key}` must be a number, found {value}"))),
    }
}

/// Reads an optional boolean field.
pub(crate) fn get_bool(json: &Value, key: &str) -> Result<Option<bool>> {
    match json.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_bool()
            .map(Some)
            .ok_or_else(|| config_error(format!("`{key}` must be true or false, found {value}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bad value read from a file names that file; parsed from text alone it names no file
    /// (before, a placeholder `config.json` was named either way).
    #[test]
    fn a_bad_value_names_its_file_only_when_there_is_one() {
        let parse = |text: &str| -> Result<usize> {
            let json: Value =
                serde_json::from_str(text).map_err(|e| config_error(e.to_string()))?;
            Ok(get_usize(&json, "hidden_size")?.unwrap_or(0))
        };
        let err = parse(r#"{"hidden_size": -3}"#).expect_err("negative size");
        assert!(matches!(err, ModelError::InvalidConfig(_)), "{err}");
        assert!(!err.to_string().contains("config.json"), "{err}");
        let path = std::env::temp_dir().join(format!("gs-lora-config-{}.json", std::process::id()));
        std::fs::write(&path, r#"{"hidden_size": -3}"#).expect("write");
        let err = read_config_file(&path, parse).expect_err("negative size");
        std::fs::remove_file(&path).ok();
        match err {
            ModelError::Config {
                path: named,
                message,
            } => {
                assert_eq!(named, path);
                assert!(
                    message.contains("`hidden_size` must be an unsigned integer"),
                    "{message}"
                );
            }
            other => panic!("expected a config error naming the file, found {other}"),
        }
    }
}
