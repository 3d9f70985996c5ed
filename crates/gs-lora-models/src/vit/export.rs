//! Saving a Vision Transformer: the merged model in its checkpoint's own layout, and the
//! adapters alone in PEFT's layout (`adapter_model.safetensors` + `adapter_config.json`).

use std::path::Path;

use burn::module::Param;
use burn::nn::LayerNorm;
use burn::tensor::{Tensor, TensorData};
use gs_lora_core::{LoraLinear, LoraModel};
use serde_json::json;

use super::head::Head;
use super::{VisionTransformer, VitFormat};
use crate::error::{ModelError, Result, io_error};
use crate::weights::{read_tensor, write_tensors};

/// File names of a saved model and of saved adapters.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The architecture, as [`VitConfig`](super::VitConfig) serialises it.
pub const CONFIG_FILE: &str = "config.json";
/// PEFT's adapter weights file.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// PEFT's adapter config file.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";

fn data<const D: usize>(tensor: Tensor<D>) -> TensorData {
    tensor.inner().into_data()
}

/// A Linear's weight in PyTorch layout `[out, in]`.
fn torch_weight(weight: &Param<Tensor<2>>) -> TensorData {
    data(weight.val().transpose())
}

/// Collects canonical names and PyTorch-layout values.
#[derive(Default)]
struct State(Vec<(String, TensorData)>);

impl State {
    fn tensor<const D: usize>(&mut self, key: impl Into<String>, value: Tensor<D>) {
        self.0.push((key.into(), data(value)));
    }

    fn linear(&mut self, key: &str, weight: TensorData, bias: &Option<Param<Tensor<1>>>) {
        self.0.push((format!("{key}.weight"), weight));
        if let Some(bias) = bias {
            self.tensor(format!("{key}.bias"), bias.val());
        }
    }

    fn norm(&mut self, key: &str, norm: &LayerNorm) {
        self.tensor(format!("{key}.weight"), norm.gamma.val());
        if let Some(beta) = &norm.beta {
            self.tensor(format!("{key}.bias"), beta.val());
        }
    }
}

impl VisionTransformer {
    /// Every tensor by canonical name in PyTorch layout, with each adapter's update `s·A·B`
    /// added to its base weight unless already merged (the model itself is unchanged).
    pub fn merged_state(&self) -> Vec<(String, TensorData)> {
        let mut state = State::default();
        let conv = &self.patch_embed;
        if self.config.format == VitFormat::GsLoraFace {
            // K[d, c, p1, p2] → W[d, (p1·P + p2)·C + c]
            let [d, c, p, _] = conv.weight.val().dims();
            let weight = conv
                .weight
                .val()
                .permute([0, 2, 3, 1])
                .reshape([d, p * p * c]);
            state.linear("patch_embed.linear", data(weight), &conv.bias);
        } else {
            state.linear("patch_embed.proj", data(conv.weight.val()), &conv.bias);
        }
        if let Some(cls) = &self.cls_token {
            state.tensor("cls_token", cls.val());
        }
        state.tensor("pos_embed", self.pos_embed.val());
        for (i, block) in self.blocks.iter().enumerate() {
            let prefix = format!("blocks.{i}");
            state.norm(&format!("{prefix}.norm1"), &block.norm1);
            for (name, layer) in [
                ("attn.qkv", &block.attn.qkv),
                ("attn.proj", &block.attn.proj),
            ] {
                state.linear(
                    &format!("{prefix}.{name}"),
                    torch_weight(&layer.weight),
                    &layer.bias,
                );
            }
            if let Some(gamma) = &block.ls1 {
                state.tensor(format!("{prefix}.ls1.gamma"), gamma.val());
            }
            state.norm(&format!("{prefix}.norm2"), &block.norm2);
            for (name, layer) in [("mlp.fc1", &block.mlp.fc1), ("mlp.fc2", &block.mlp.fc2)] {
                let key = format!("{prefix}.{name}");
                state.linear(&key, merged_weight(layer), &layer.base_layer.bias);
            }
            if let Some(gamma) = &block.ls2 {
                state.tensor(format!("{prefix}.ls2.gamma"), gamma.val());
            }
        }
        if let Some(norm) = &self.norm {
            state.norm("norm", norm);
        }
        if let Some(norm) = &self.fc_norm {
            state.norm("fc_norm", norm);
        }
        if let Some(pooler) = &self.pooler {
            state.linear("pooler", torch_weight(&pooler.weight), &pooler.bias);
        }
        match &self.head {
            Some(Head::Linear(head)) => {
                state.linear("head", torch_weight(&head.weight), &head.bias)
            }
            Some(Head::CosFace(head)) => state.tensor("head.weight", head.weight.val()),
            None => {}
        }
        state.0
    }

    /// Writes the merged model to `dir`: `model.safetensors` in the key layout of the format it
    /// was loaded from (so the original `config.json` still describes it, unless the head or
    /// the position grid was changed) and `config.json` as gs-lora reads it back.
    ///
    /// # Errors
    /// [`ModelError::Io`] or [`ModelError::Safetensors`] when a file cannot be written.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
        let keys = self.config.key_map();
        let mut tensors = Vec::new();
        for (key, value) in self.merged_state() {
            let file_keys = keys.file_keys(&key);
            if file_keys.len() == 1 {
                tensors.push((file_keys[0].clone(), value));
                continue;
            }
            // Hugging Face stores the fused qkv as separate equal slices along axis 0.
            let device = self.pos_embed.val().device();
            let rank = value.shape().len();
            let parts = file_keys.len();
            let rows = value.shape()[0] / parts;
            for (i, file_key) in file_keys.into_iter().enumerate() {
                let part = if rank == 2 {
                    data(
                        Tensor::<2>::from_data(value.clone(), &device)
                            .slice_dim(0, i * rows..(i + 1) * rows),
                    )
                } else {
                    data(
                        Tensor::<1>::from_data(value.clone(), &device)
                            .slice_dim(0, i * rows..(i + 1) * rows),
                    )
                };
                tensors.push((file_key, part));
            }
        }
        write_tensors(dir.join(WEIGHTS_FILE), tensors)?;
        let config =
            serde_json::to_string_pretty(&self.config).map_err(|err| ModelError::Config {
                path: dir.join(CONFIG_FILE),
                message: err.to_string(),
            })?;
        let path = dir.join(CONFIG_FILE);
        std::fs::write(&path, config).map_err(io_error("writing", &path))
    }

    /// The PEFT module path of each adapted layer, in group order, with the layer.
    fn adapter_paths(&self) -> Vec<(String, &LoraLinear)> {
        let keys = self.config.key_map();
        self.lora_groups()
            .into_iter()
            .enumerate()
            .flat_map(|(i, group)| {
                let keys = &keys;
                ["mlp.fc1", "mlp.fc2"]
                    .into_iter()
                    .zip(group.layers)
                    .map(move |(name, layer)| {
                        let file_key = keys
                            .file_keys(&format!("blocks.{i}.{name}.weight"))
                            .remove(0);
                        let module = file_key.trim_end_matches(".weight").to_string();
                        (format!("base_model.model.{module}"), layer)
                    })
            })
            .collect()
    }

    /// Writes the adapters alone to `dir` as PEFT does: `adapter_model.safetensors`
    /// (`base_model.model.<module>.lora_A.weight` `[r, in]`, `lora_B.weight` `[out, r]`) and
    /// `adapter_config.json`.
    ///
    /// # Errors
    /// [`ModelError::Io`] or [`ModelError::Safetensors`] when a file cannot be written.
    pub fn save_adapters(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
        let paths = self.adapter_paths();
        let Some((_, first)) = paths.first() else {
            return Err(ModelError::InvalidConfig("the model has no adapter".into()));
        };
        let (rank, alpha) = (first.rank(), first.scale * first.rank() as f64);
        let mut tensors = Vec::new();
        let mut modules = Vec::new();
        for (path, layer) in &paths {
            tensors.push((format!("{path}.lora_A.weight"), torch_weight(&layer.lora_a)));
            tensors.push((format!("{path}.lora_B.weight"), torch_weight(&layer.lora_b)));
            let name = path.rsplit('.').nth(1).map(|parent| {
                let last = path.rsplit('.').next().unwrap_or_default();
                format!("{parent}.{last}")
            });
            modules.extend(name);
        }
        modules.sort();
        modules.dedup();
        write_tensors(dir.join(ADAPTER_WEIGHTS_FILE), tensors)?;
        let config = json!({
            "peft_type": "LORA",
            "r": rank,
            "lora_alpha": alpha,
            "target_modules": modules,
            "lora_dropout": 0.0,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
        });
        let path = dir.join(ADAPTER_CONFIG_FILE);
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&config).unwrap_or_default(),
        )
        .map_err(io_error("writing", &path))
    }

    /// Replaces every adapter with the one saved by [`save_adapters`](Self::save_adapters) (or
    /// PEFT) in `dir`; the adapters are left unmerged.
    ///
    /// # Errors
    /// A missing file or tensor, a tensor whose shape does not match its layer, or an
    /// `adapter_config.json` whose `r` is not a whole number of at least 1 or whose `lora_alpha`
    /// is not a finite number.
    pub fn load_adapters(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let config_path = dir.join(ADAPTER_CONFIG_FILE);
        let text =
            std::fs::read_to_string(&config_path).map_err(io_error("reading", &config_path))?;
        let config: serde_json::Value =
            serde_json::from_str(&text).map_err(|err| ModelError::Config {
                path: config_path.clone(),
                message: err.to_string(),
            })?;
        let invalid = |key: &str, expected: &str, found: Option<&serde_json::Value>| {
            let found = found.map_or_else(|| "nothing".to_string(), |value| value.to_string());
            ModelError::Config {
                path: config_path.clone(),
                message: format!("`{key}` must be {expected}, found {found}"),
            }
        };
        // PEFT writes `r` as an integer; a float with no fraction is accepted too.
        let rank = config
            .get("r")
            .and_then(|r| {
                r.as_u64().or_else(|| {
                    r.as_f64()
                        .filter(|r| r.fract() == 0.0 && (1.0..=u32::MAX as f64).contains(r))
                        .map(|r| r as u64)
                })
            })
            .filter(|&r| r >= 1)
            .and_then(|r| usize::try_from(r).ok())
            .ok_or_else(|| invalid("r", "a whole number of at least 1", config.get("r")))?;
        let alpha = config
            .get("lora_alpha")
            .and_then(serde_json::Value::as_f64)
            .filter(|alpha| alpha.is_finite())
            .ok_or_else(|| invalid("lora_alpha", "a finite number", config.get("lora_alpha")))?;
        let weights = dir.join(ADAPTER_WEIGHTS_FILE);
        let paths: Vec<String> = self
            .adapter_paths()
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        let device = self.pos_embed.val().device();
        let mut layers = self
            .lora_groups_mut()
            .into_iter()
            .flat_map(|group| group.layers);
        for path in paths {
            let layer = layers
                .next()
                .ok_or_else(|| ModelError::InvalidConfig("adapter count changed".into()))?;
            let (d_input, d_output) = (layer.d_input(), layer.d_output());
            let factor = |name: &str, expected: [usize; 2]| -> Result<Tensor<2>> {
                let key = format!("{path}.{name}.weight");
                let value = read_tensor(&weights, &key)?;
                let found = value.shape().to_vec();
                if found != expected {
                    return Err(ModelError::ShapeMismatch {
                        path: weights.clone(),
                        key,
                        expected: expected.to_vec(),
                        found,
                    });
                }
                Ok(Tensor::<2>::from_data(value, &device).transpose())
            };
            let a = factor("lora_A", [rank, d_input])?;
            let b = factor("lora_B", [d_output, rank])?;
            layer.lora_a = Param::from_tensor(a);
            layer.lora_b = Param::from_tensor(b);
            layer.scale = alpha / rank as f64;
            layer.merged = false;
        }
        Ok(())
    }
}

/// `W + s·A·B` (unless merged) in PyTorch layout.
fn merged_weight(layer: &LoraLinear) -> TensorData {
    let weight = layer.base_layer.weight.val();
    let weight = if layer.is_merged() {
        weight
    } else {
        weight + layer.delta_weight()
    };
    data(weight.transpose())
}
