//! Saving a Vision Transformer: the merged model in its checkpoint's own layout, and the
//! adapters alone in PEFT's layout (`adapter_model.safetensors` + `adapter_config.json`).

use std::path::Path;

use burn::module::Param;
use burn::nn::LayerNorm;
use burn::tensor::{Tensor, TensorData};
use gs_lora_core::{LoraLinear, LoraModel};

use super::head::Head;
use super::peft::PeftLoraConfig;
use super::{VisionTransformer, VitFormat};
use crate::error::{ModelError, Result, io_error};
use crate::weights::{CheckpointSource, IdentityKeys, Init, ParamSource, write_tensors};

/// File names of a saved model and of saved adapters.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The architecture, as [`VitConfig`](super::VitConfig) serialises it.
pub const CONFIG_FILE: &str = "config.json";
/// PEFT's adapter weights file.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// PEFT's adapter config file.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// What PEFT puts before a base-model module's name in its tensor names.
const PEFT_PREFIX: &str = "base_model.model.";

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
                        (format!("{PEFT_PREFIX}{module}"), layer)
                    })
            })
            .collect()
    }

    /// Writes the adapters alone to `dir` as PEFT does: `adapter_model.safetensors`
    /// (`base_model.model.<module>.lora_A.weight` `[r, in]`, `lora_B.weight` `[out, r]`) and
    /// `adapter_config.json` with PEFT's fields (modules by full name; a module whose rank or
    /// scale differs from the first one's in `rank_pattern` / `alpha_pattern`), which
    /// `PeftModel.from_pretrained` loads onto the same base model.
    ///
    /// # Errors
    /// [`ModelError::Io`] or [`ModelError::Safetensors`] when a file cannot be written.
    pub fn save_adapters(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
        let paths = self.adapter_paths();
        if paths.is_empty() {
            return Err(ModelError::InvalidConfig("the model has no adapter".into()));
        }
        let mut tensors = Vec::new();
        let mut modules = Vec::new();
        for (path, layer) in &paths {
            tensors.push((format!("{path}.lora_A.weight"), torch_weight(&layer.lora_a)));
            tensors.push((format!("{path}.lora_B.weight"), torch_weight(&layer.lora_b)));
            let module = path.strip_prefix(PEFT_PREFIX).unwrap_or(path).to_string();
            modules.push((module, layer.rank(), layer.scale));
        }
        write_tensors(dir.join(ADAPTER_WEIGHTS_FILE), tensors)?;
        PeftLoraConfig::for_modules(&modules).write(&dir.join(ADAPTER_CONFIG_FILE), None)
    }

    /// Replaces every adapter with the one in `dir`, saved by
    /// [`save_adapters`](Self::save_adapters) or by PEFT (`PeftModel.save_pretrained` of LoRA
    /// on this checkpoint's `fc1`/`fc2`, in its own module names): each module's rank and scale
    /// from `r`, `lora_alpha`, `rank_pattern`, `alpha_pattern` and `use_rslora`; a layer that
    /// `target_modules` does not name gets a zero update. The adapters are left unmerged.
    ///
    /// # Errors
    /// A missing file, a targeted layer without its tensors, a tensor whose shape is not the
    /// layer's `[rank, in]` / `[out, rank]`, tensors for modules gs-lora does not adapt, or an
    /// `adapter_config.json` PEFT would not write for such adapters ([`PeftLoraConfig::read`]).
    pub fn load_adapters(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let config = PeftLoraConfig::read(&dir.join(ADAPTER_CONFIG_FILE))?;
        let weights = dir.join(ADAPTER_WEIGHTS_FILE);
        let mut source = CheckpointSource::open(&weights, IdentityKeys)?;
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
            let module = path.strip_prefix(PEFT_PREFIX).unwrap_or(&path);
            let a_key = format!("{path}.lora_A.weight");
            if !config.targets(module) && !source.names().contains(&a_key) {
                layer.lora_b =
                    Param::from_tensor(Tensor::zeros([layer.rank(), layer.d_output()], &device));
                layer.merged = false;
                continue;
            }
            let rank = config.rank_of(module);
            let (d_input, d_output) = (layer.d_input(), layer.d_output());
            let mut factor = |key: String, shape: [usize; 2]| -> Result<Tensor<2>> {
                let value = source.tensor(&key, &shape, Init::Linear)?;
                Ok(Tensor::<2>::from_data(value, &device).transpose())
            };
            let a = factor(a_key, [rank, d_input])?;
            let b = factor(format!("{path}.lora_B.weight"), [d_output, rank])?;
            layer.lora_a = Param::from_tensor(a);
            layer.lora_b = Param::from_tensor(b);
            layer.scale = config.scale_of(module);
            layer.merged = false;
        }
        source.finish()
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
