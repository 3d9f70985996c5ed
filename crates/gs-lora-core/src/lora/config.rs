//! Configuration of a LoRA adapter.

use burn::config::Config;
use burn::nn::Linear;

use super::{LoraInit, LoraLinear};
use crate::error::{CoreError, ensure_finite};

/// Configuration of the LoRA adapters GS-LoRA attaches to FFN Linears.
///
/// The adapted layer computes `y = x W + b + s · (x A) B` with `s = lora_alpha / rank`.
/// GS-LoRA's defaults are `rank = 8`, `lora_alpha = 1` (so `s = 1/8`).
#[derive(Config, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` of the update `A B`.
    #[config(default = 8)]
    pub rank: usize,
    /// Scaling numerator: the update is multiplied by `lora_alpha / rank`.
    #[config(default = 1.0)]
    pub lora_alpha: f64,
    /// How `A` is drawn for a fresh adapter (`B` starts at zero).
    #[config(default = "LoraInit::first_task()")]
    pub init: LoraInit,
}

impl LoraConfig {
    /// The scale `lora_alpha / rank` applied to the update.
    pub fn scale(&self) -> f64 {
        self.lora_alpha / self.rank as f64
    }

    /// Checks the rank and `lora_alpha` against a layer of the given size.
    ///
    /// # Errors
    /// [`CoreError::ZeroRank`], [`CoreError::RankTooLarge`] when `rank > min(d_input, d_output)`,
    /// [`CoreError::NonFinite`] for a NaN or infinite `lora_alpha`.
    pub fn validate(&self, d_input: usize, d_output: usize) -> Result<(), CoreError> {
        if self.rank == 0 {
            return Err(CoreError::ZeroRank);
        }
        if self.rank > d_input.min(d_output) {
            return Err(CoreError::RankTooLarge {
                rank: self.rank,
                d_input,
                d_output,
            });
        }
        ensure_finite("LoRA alpha", self.lora_alpha)?;
        Ok(())
    }

    /// Wraps `linear` (which becomes frozen) with a fresh adapter whose `A` is drawn from `seed`.
    ///
    /// # Errors
    /// As [`LoraConfig::validate`].
    pub fn init(&self, linear: Linear, seed: u64) -> Result<LoraLinear, CoreError> {
        LoraLinear::from_linear(linear, self, seed)
    }
}
