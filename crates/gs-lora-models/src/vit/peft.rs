//! PEFT's `adapter_config.json` for LoRA: what decides each adapted module's rank and scale,
//! read as PEFT reads it and written with the fields PEFT writes.
//!
//! A module `m` (its name in the base model, e.g. `blocks.1.mlp.fc2`) is adapted when
//! `target_modules` names it (a list: `m` equals an entry or ends with `.entry`; a string: a
//! regular expression matching the whole of `m`). Its rank is the `rank_pattern` value of the
//! first key `k` for which `^(.*\.)?(k)$` matches `m`, else `r`; its alpha likewise from
//! `alpha_pattern`, else `lora_alpha`. Its scale is `alpha / rank`, or `alpha / √rank` with
//! `use_rslora` (rsLoRA).

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use serde_json::{Value, json};

use crate::error::{ModelError, Result, io_error};

/// Which modules an adapter config adapts.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetModules {
    /// Module names or name suffixes after a dot.
    Names(Vec<String>),
    /// A regular expression a module's whole name must match.
    Pattern(String),
}

/// A PEFT LoRA adapter config, the fields that decide what the adapters compute.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftLoraConfig {
    /// Default rank `r`.
    pub r: usize,
    /// Default `lora_alpha`.
    pub lora_alpha: f64,
    /// rsLoRA: scale `alpha / √rank` instead of `alpha / rank`.
    pub use_rslora: bool,
    /// Rank per module-name pattern.
    pub rank_pattern: BTreeMap<String, usize>,
    /// Alpha per module-name pattern.
    pub alpha_pattern: BTreeMap<String, f64>,
    /// The adapted modules.
    pub target_modules: TargetModules,
}

/// `^(.*\.)?(pattern)$`, PEFT's match of a rank or alpha pattern against a module name.
fn pattern_matches(pattern: &str, module: &str) -> bool {
    Regex::new(&format!(r"^(.*\.)?({pattern})$")).is_ok_and(|re| re.is_match(module))
}

impl PeftLoraConfig {
    /// Reads `adapter_config.json` at `path`.
    ///
    /// # Errors
    /// [`ModelError::Io`] when unreadable; [`ModelError::Config`] naming the field when it is
    /// not LoRA, has a value of the wrong kind, an invalid pattern, or asks for what gs-lora's
    /// adapters cannot compute (DoRA, trained biases, `fan_in_fan_out`, `modules_to_save`,
    /// layer selection, excluded modules).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_error("reading", path))?;
        let config: Value = serde_json::from_str(&text).map_err(|err| ModelError::Config {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;
        Self::from_json(&config, path)
    }

    fn from_json(config: &Value, path: &Path) -> Result<Self> {
        let invalid = |key: &str, expected: &str| {
            let found = config
                .get(key)
                .map_or_else(|| "nothing".to_string(), Value::to_string);
            ModelError::Config {
                path: path.to_path_buf(),
                message: format!("`{key}` must be {expected}, found {found}"),
            }
        };
        let absent_or = |key: &str, allowed: &[Value]| -> Result<()> {
            match config.get(key) {
                None | Some(Value::Null) => Ok(()),
                Some(value) if allowed.contains(value) => Ok(()),
                Some(Value::Array(items)) if items.is_empty() => Ok(()),
                Some(Value::Object(items)) if items.is_empty() => Ok(()),
                Some(_) => Err(invalid(
                    key,
                    &format!(
                        "absent{} (gs-lora adapts fc1/fc2 with plain LoRA)",
                        allowed
                            .iter()
                            .map(|v| format!(" or {v}"))
                            .collect::<String>()
                    ),
                )),
            }
        };
        if config.get("peft_type").and_then(Value::as_str) != Some("LORA") {
            return Err(invalid("peft_type", "\"LORA\""));
        }
        absent_or("bias", &[json!("none")])?;
        absent_or("fan_in_fan_out", &[json!(false)])?;
        absent_or("use_dora", &[json!(false)])?;
        absent_or("lora_bias", &[json!(false)])?;
        for key in [
            "modules_to_save",
            "layers_to_transform",
            "layers_pattern",
            "exclude_modules",
            "target_parameters",
            "layer_replication",
        ] {
            absent_or(key, &[])?;
        }
        // PEFT writes ranks as integers; a float with no fraction is accepted too.
        let rank = |value: &Value| {
            value
                .as_u64()
                .or_else(|| {
                    value
                        .as_f64()
                        .filter(|r| r.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(r))
                        .map(|r| r as u64)
                })
                .filter(|&r| r >= 1)
                .and_then(|r| usize::try_from(r).ok())
        };
        let r = config
            .get("r")
            .and_then(rank)
            .ok_or_else(|| invalid("r", "a whole number of at least 1"))?;
        let lora_alpha = config
            .get("lora_alpha")
            .and_then(Value::as_f64)
            .filter(|alpha| alpha.is_finite())
            .ok_or_else(|| invalid("lora_alpha", "a finite number"))?;
        let use_rslora = match config.get("use_rslora") {
            None | Some(Value::Null) => false,
            Some(value) => value
                .as_bool()
                .ok_or_else(|| invalid("use_rslora", "true or false"))?,
        };
        let patterns = |key: &str| -> Result<BTreeMap<String, Value>> {
            let map = match config.get(key) {
                None | Some(Value::Null) => return Ok(BTreeMap::new()),
                Some(Value::Object(map)) => map,
                Some(_) => return Err(invalid(key, "an object of module patterns")),
            };
            for pattern in map.keys() {
                Regex::new(pattern).map_err(|err| ModelError::Config {
                    path: path.to_path_buf(),
                    message: format!("`{key}` key `{pattern}` is not a regular expression: {err}"),
                })?;
            }
            Ok(map.clone().into_iter().collect())
        };
        let rank_pattern = patterns("rank_pattern")?
            .into_iter()
            .map(|(k, v)| rank(&v).map(|r| (k, r)))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid("rank_pattern", "ranks of at least 1"))?;
        let alpha_pattern = patterns("alpha_pattern")?
            .into_iter()
            .map(|(k, v)| v.as_f64().filter(|a| a.is_finite()).map(|a| (k, a)))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid("alpha_pattern", "finite alphas"))?;
        let target_modules = match config.get("target_modules") {
            Some(Value::String(pattern)) => {
                Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|_| invalid("target_modules", "a valid regular expression"))?;
                TargetModules::Pattern(pattern.clone())
            }
            Some(Value::Array(names)) => TargetModules::Names(
                names
                    .iter()
                    .map(|name| name.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| invalid("target_modules", "module names"))?,
            ),
            _ => {
                return Err(invalid(
                    "target_modules",
                    "a list of module names or a pattern",
                ));
            }
        };
        Ok(Self {
            r,
            lora_alpha,
            use_rslora,
            rank_pattern,
            alpha_pattern,
            target_modules,
        })
    }

    /// Whether `module` is adapted.
    pub fn targets(&self, module: &str) -> bool {
        match &self.target_modules {
            TargetModules::Names(names) => names.iter().any(|name| {
                module == name
                    || module
                        .strip_suffix(name.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            }),
            TargetModules::Pattern(pattern) => {
                Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(module))
            }
        }
    }

    /// The rank of `module`.
    pub fn rank_of(&self, module: &str) -> usize {
        self.rank_pattern
            .iter()
            .find(|(pattern, _)| pattern_matches(pattern, module))
            .map_or(self.r, |(_, &rank)| rank)
    }

    /// The scale `s` of `module`'s update `s·A·B`.
    pub fn scale_of(&self, module: &str) -> f64 {
        let alpha = self
            .alpha_pattern
            .iter()
            .find(|(pattern, _)| pattern_matches(pattern, module))
            .map_or(self.lora_alpha, |(_, &alpha)| alpha);
        let rank = self.rank_of(module) as f64;
        if self.use_rslora {
            alpha / rank.sqrt()
        } else {
            alpha / rank
        }
    }

    /// The config that gives each `(module, rank, scale)` its rank and scale, without rsLoRA:
    /// the first module's as `r` and `lora_alpha`, the others' as exact patterns where they
    /// differ; `target_modules` lists the modules by full name (a suffix such as
    /// `output.dense` would also adapt the attention's `attention.output.dense` in Hugging Face
    /// ViTs).
    pub fn for_modules(modules: &[(String, usize, f64)]) -> Self {
        let (r, scale) = modules.first().map_or((1, 1.0), |m| (m.1, m.2));
        let mut rank_pattern = BTreeMap::new();
        let mut alpha_pattern = BTreeMap::new();
        for (module, rank, layer_scale) in modules {
            let exact = regex::escape(module);
            if *rank != r {
                rank_pattern.insert(exact.clone(), *rank);
            }
            if *rank != r || (*layer_scale - scale).abs() > 1e-12 * scale.abs() {
                alpha_pattern.insert(exact, layer_scale * *rank as f64);
            }
        }
        Self {
            r,
            lora_alpha: scale * r as f64,
            use_rslora: false,
            rank_pattern,
            alpha_pattern,
            target_modules: TargetModules::Names(modules.iter().map(|m| m.0.clone()).collect()),
        }
    }

    /// `adapter_config.json` as PEFT writes it, with `base_model_name_or_path`.
    pub fn to_json(&self, base_model: Option<&str>) -> Value {
        let target_modules = match &self.target_modules {
            TargetModules::Names(names) => json!(names),
            TargetModules::Pattern(pattern) => json!(pattern),
        };
        json!({
            "peft_type": "LORA",
            "task_type": null,
            "base_model_name_or_path": base_model,
            "revision": null,
            "inference_mode": true,
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": 0.0,
            "use_rslora": self.use_rslora,
            "rank_pattern": self.rank_pattern,
            "alpha_pattern": self.alpha_pattern,
            "target_modules": target_modules,
            "exclude_modules": null,
            "fan_in_fan_out": false,
            "bias": "none",
            "lora_bias": false,
            "use_dora": false,
            "init_lora_weights": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "layers_pattern": null,
            "layer_replication": null,
        })
    }

    /// Writes [`to_json`](Self::to_json) to `path`.
    ///
    /// # Errors
    /// [`ModelError::Io`] when the file cannot be written.
    pub fn write(&self, path: &Path, base_model: Option<&str>) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json(base_model)).unwrap_or_default();
        std::fs::write(path, text).map_err(io_error("writing", path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Value) -> Result<PeftLoraConfig> {
        PeftLoraConfig::from_json(&value, Path::new("adapter_config.json"))
    }

    /// Rank, alpha and target matching as PEFT's (`get_pattern_key`: `^(.*\.)?(key)$`; list
    /// targets by name or dotted suffix; string targets as a whole-name expression), by hand.
    /// Catches a substring match (`fc1` adapting `xfc1`), the pattern matched from the start
    /// only, the rsLoRA `√r` dropped and the pattern's alpha paired with the default rank.
    #[test]
    fn patterns_and_targets_match_as_peft_matches_them() {
        let config = parse(json!({
            "peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_rslora": true,
            "rank_pattern": {"blocks.1.mlp.fc2": 2}, "alpha_pattern": {"fc1": 3},
            "target_modules": ["fc1", "mlp.fc2"],
        }))
        .expect("config");
        assert!(config.targets("blocks.0.mlp.fc1"));
        assert!(config.targets("fc1"));
        assert!(!config.targets("blocks.0.mlp.xfc1"));
        assert!(config.targets("blocks.0.mlp.fc2"));
        assert!(!config.targets("blocks.0.attn.fc2"));
        assert_eq!(config.rank_of("blocks.1.mlp.fc2"), 2);
        assert_eq!(config.rank_of("blocks.0.mlp.fc2"), 4);
        assert_eq!(config.rank_of("model.blocks.1.mlp.fc2"), 2);
        assert!((config.scale_of("blocks.1.mlp.fc2") - 8.0 / 2f64.sqrt()).abs() < 1e-12);
        assert!((config.scale_of("blocks.0.mlp.fc1") - 3.0 / 2.0).abs() < 1e-12);
        let pattern = parse(json!({
            "peft_type": "LORA", "r": 2, "lora_alpha": 2,
            "target_modules": r"blocks\.[01]\.mlp\.fc\d",
        }))
        .expect("pattern");
        assert!(pattern.targets("blocks.1.mlp.fc2"));
        assert!(!pattern.targets("blocks.2.mlp.fc2"));
        assert!(!pattern.targets("x.blocks.1.mlp.fc2"), "whole name");
        assert!((pattern.scale_of("blocks.1.mlp.fc2") - 1.0).abs() < 1e-12);
    }

    /// What gs-lora writes reads back to the same ranks and scales, with distinct ranks and
    /// scales per module.
    #[test]
    fn written_configs_give_every_module_its_rank_and_scale() {
        let modules = vec![
            ("blocks.0.mlp.fc1".to_string(), 4, 0.5),
            ("blocks.0.mlp.fc2".to_string(), 4, 0.25),
            ("blocks.1.mlp.fc1".to_string(), 2, 0.5),
        ];
        let config = PeftLoraConfig::for_modules(&modules);
        let read = parse(config.to_json(Some("facebook/dinov2-small"))).expect("reads");
        for (module, rank, scale) in &modules {
            assert!(read.targets(module));
            assert_eq!(read.rank_of(module), *rank, "{module}");
            assert!((read.scale_of(module) - scale).abs() < 1e-12, "{module}");
        }
        assert!(!read.targets("blocks.1.mlp.fc2"));
    }

    /// What gs-lora cannot compute is refused, naming the field.
    #[test]
    fn settings_gs_lora_cannot_compute_are_refused() {
        let base = json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["fc1"]});
        for (key, value) in [
            ("use_dora", json!(true)),
            ("bias", json!("all")),
            ("modules_to_save", json!(["head"])),
            ("layers_to_transform", json!([0])),
            ("fan_in_fan_out", json!(true)),
            ("r", json!(0)),
            ("lora_alpha", json!("8")),
            ("rank_pattern", json!({"(": 2})),
            ("target_modules", json!(3)),
            ("peft_type", json!("IA3")),
        ] {
            let mut config = base.clone();
            config[key] = value;
            let message = parse(config).expect_err(key).to_string();
            assert!(message.contains(&format!("`{key}`")), "{key}: {message}");
        }
    }
}
