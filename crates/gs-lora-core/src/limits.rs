//! Limits checked before anything large is allocated, so that a config, an input or an archive
//! that declares an absurd size fails with an error naming the value and the limit instead of
//! exhausting the machine's memory.
//!
//! | limit | default | override (environment) |
//! |---|---|---|
//! | memory one model, input or dataset may ask for | 16 GiB | `GS_LORA_MAX_MEMORY` |
//! | bytes of one image file or archive entry | 256 MiB | `GS_LORA_MAX_FILE` |
//!
//! Values are bytes, optionally with a binary suffix: `512M`, `32G`, `1T` (or `K`).

use crate::error::{CoreError, Result};

/// Environment variable that overrides [`Limits::memory`].
pub const MEMORY_VAR: &str = "GS_LORA_MAX_MEMORY";
/// Environment variable that overrides [`Limits::file`].
pub const FILE_VAR: &str = "GS_LORA_MAX_FILE";

/// The size limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes one model, input batch or dataset may occupy.
    pub memory: u64,
    /// Bytes of one image file or archive entry.
    pub file: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 16 << 30,
            file: 256 << 20,
        }
    }
}

impl Limits {
    /// The defaults, overridden by `GS_LORA_MAX_MEMORY` and `GS_LORA_MAX_FILE` when set.
    ///
    /// # Errors
    /// [`CoreError::InvalidLimit`] when a variable is set to something that is not a size.
    pub fn from_env() -> Result<Self> {
        let defaults = Self::default();
        let read = |var: &'static str, default: u64| match std::env::var(var) {
            Ok(text) => parse_size(&text).ok_or(CoreError::InvalidLimit { var, value: text }),
            Err(_) => Ok(default),
        };
        Ok(Self {
            memory: read(MEMORY_VAR, defaults.memory)?,
            file: read(FILE_VAR, defaults.file)?,
        })
    }

    /// Checks that `what` (described lazily) needing `bytes` fits the memory limit.
    ///
    /// # Errors
    /// [`CoreError::TooLarge`] naming `what`, its size and the limit.
    pub fn check_memory(&self, what: impl FnOnce() -> String, bytes: u128) -> Result<()> {
        check(what, bytes, self.memory, MEMORY_VAR)
    }

    /// Checks that a file or archive entry of `bytes` fits the file limit.
    ///
    /// # Errors
    /// [`CoreError::TooLarge`] naming `what`, its size and the limit.
    pub fn check_file(&self, what: impl FnOnce() -> String, bytes: u128) -> Result<()> {
        check(what, bytes, self.file, FILE_VAR)
    }
}

fn check(what: impl FnOnce() -> String, bytes: u128, limit: u64, var: &'static str) -> Result<()> {
    if bytes <= u128::from(limit) {
        return Ok(());
    }
    Err(CoreError::TooLarge {
        what: what(),
        bytes,
        limit,
        var,
    })
}

/// `1234`, `512K`, `64M`, `16G`, `1T` (binary units; a trailing `B` or `iB` is accepted).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text
        .strip_suffix("iB")
        .or_else(|| text.strip_suffix('B'))
        .unwrap_or(text);
    let (digits, shift) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 10),
        'M' | 'm' => (&text[..text.len() - 1], 20),
        'G' | 'g' => (&text[..text.len() - 1], 30),
        'T' | 't' => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// A byte count for messages: `1.5 GiB`, `300 MiB`, `12 KiB`, `512 B`.
pub fn human_bytes(bytes: u128) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1234"), Some(1234));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("16G"), Some(16 << 30));
        assert_eq!(parse_size("16GiB"), Some(16 << 30));
        assert_eq!(parse_size("2t"), Some(2 << 40));
        for bad in ["", "G", "-1G", "1.5G", "lots", "99999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_size_over_the_limit_is_refused_naming_both() {
        let limits = Limits {
            memory: 1 << 30,
            file: 1 << 20,
        };
        assert!(limits.check_memory(|| "x".into(), 1 << 30).is_ok());
        let err = limits
            .check_memory(|| "the model".into(), 3 << 30)
            .expect_err("over the limit");
        let message = err.to_string();
        assert!(message.contains("the model"), "{message}");
        assert!(message.contains("3.0 GiB"), "{message}");
        assert!(message.contains("1.0 GiB"), "{message}");
        assert!(message.contains(MEMORY_VAR), "{message}");
        let err = limits
            .check_file(|| "a.png".into(), 2 << 20)
            .expect_err("over the file limit");
        assert!(err.to_string().contains(FILE_VAR));
    }

    #[test]
    fn human_bytes_picks_the_unit() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(38 << 30), "38.0 GiB");
    }
}
