//! `gs-lora forward`: a checkpoint's outputs for a tensor file.

use std::path::{Path, PathBuf};

use burn::tensor::{Bool, Device, Tensor, TensorData};
use clap::Args;
use gs_lora_core::LoraConfig;
use gs_lora_models::deformable::DeformableDetr;
use gs_lora_models::weights::{
    CheckpointFiles, CheckpointSource, IdentityKeys, read_tensor, set_allow_non_finite,
    write_tensors,
};
use gs_lora_models::{ModelError, VisionTransformer, VitOutput};

use gs_lora_train::io::ensure_disjoint;

use super::{CliError, DeviceArgs};

/// The flags of `gs-lora forward` (its help is on [`Command`](super::Command)).
#[derive(Debug, Args)]
pub struct ForwardCommand {
    /// A weights file (.safetensors, .pth, or a shard index *.index.json), a model folder, or a
    /// Hugging Face repo id such as facebook/dinov2-small[@revision], read from the local cache
    /// (HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub; never downloaded).
    #[arg(long, value_name = "W")]
    weights: PathBuf,
    /// The checkpoint's config.json (default: the one found with the weights).
    #[arg(long, value_name = "CONFIG.json")]
    model_config: Option<PathBuf>,
    /// LoRA adapters saved by gs-lora or by PEFT (adapter_config.json +
    /// adapter_model.safetensors, on the ViT's fc1/fc2), applied first.
    #[arg(long, value_name = "DIR")]
    adapters: Option<PathBuf>,
    /// The input tensors.
    #[arg(long, value_name = "IN.safetensors")]
    input: PathBuf,
    /// Where the outputs are written.
    #[arg(long, value_name = "OUT.safetensors")]
    output: PathBuf,
    /// Accepts weights or inputs holding NaN or infinite values (refused otherwise).
    #[arg(long)]
    allow_non_finite: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

impl ForwardCommand {
    pub(super) fn run(self) -> Result<(), CliError> {
        let CheckpointFiles { config, weights } =
            CheckpointFiles::locate(&self.weights, self.model_config)?;
        let (adapters, input, output) = (self.adapters, self.input, self.output);
        let device = self.device.device()?;
        set_allow_non_finite(self.allow_non_finite);
        ensure_disjoint(
            &[("--output", &output)],
            &[
                ("--model-config", &config),
                ("--weights", &weights),
                ("--input", &input),
            ],
        )?;
        if let Some(adapters) = &adapters {
            ensure_disjoint(&[("--output", &output)], &[("--adapters", adapters)])?;
        }

        let pixels = read_tensor(&input, "pixel_values")?;
        let shape = pixels.shape().to_vec();
        if shape.len() != 4 || shape[0] == 0 {
            return Err(ModelError::Input {
                expected: "pixel_values of rank 4 [B, C, H, W] with at least one image".into(),
                found: format!("shape {shape:?} in {}", input.display()),
            }
            .into());
        }
        let pixels = Tensor::<4>::from_data(pixels, &device);
        let tensors = match is_deformable_detr(&config) {
            true if adapters.is_some() => {
                return Err(CliError::Usage(format!(
                    "--adapters applies to ViT checkpoints; {} is a Deformable DETR",
                    config.display()
                )));
            }
            true => {
                let model = DeformableDetr::from_pretrained(
                    &config,
                    &weights,
                    &LoraConfig::new(),
                    0,
                    &device,
                )?;
                let result = model.forward_masked(pixels, pixel_mask(&input, &device)?)?;
                vec![
                    ("logits".to_string(), result.logits.into_data()),
                    ("pred_boxes".to_string(), result.pred_boxes.into_data()),
                ]
            }
            false => {
                let mut model = VisionTransformer::from_pretrained(
                    &config,
                    &weights,
                    &LoraConfig::new(),
                    0,
                    &device,
                )?;
                if let Some(adapters) = &adapters {
                    model.load_adapters(adapters)?;
                }
                vit_outputs(model.forward(pixels)?)
            }
        };
        let names: Vec<String> = tensors.iter().map(|(name, _)| name.clone()).collect();
        write_tensors(&output, tensors)?;
        println!("wrote {} to {}", names.join(", "), output.display());
        Ok(())
    }
}

/// The `pixel_mask` of the input file, when it has one (values other than 0 are real pixels).
fn pixel_mask(input: &Path, device: &Device) -> Result<Option<Tensor<3, Bool>>, CliError> {
    if !CheckpointSource::open(input, IdentityKeys)?
        .names()
        .contains("pixel_mask")
    {
        return Ok(None);
    }
    let mask = read_tensor(input, "pixel_mask")?;
    let shape = mask.shape().to_vec();
    let values = mask.try_to_vec::<f32>().map_err(|err| ModelError::Input {
        expected: "a floating-point pixel_mask".into(),
        found: format!("{err:?} in {}", input.display()),
    })?;
    let [batch, height, width] = shape[..] else {
        return Err(ModelError::Input {
            expected: "pixel_mask of rank 3 [B, H, W]".into(),
            found: format!("shape {shape:?} in {}", input.display()),
        }
        .into());
    };
    let flags: Vec<bool> = values.into_iter().map(|v| v != 0.0).collect();
    Ok(Some(Tensor::from_data(
        TensorData::new(flags, [batch, height, width]),
        device,
    )))
}

/// Whether `config` is a Deformable DETR `config.json` (any other file is left to the ViT loader,
/// which reports what it cannot read).
fn is_deformable_detr(config: &Path) -> bool {
    std::fs::read_to_string(config)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|json| {
            json.get("model_type").and_then(|t| t.as_str()) == Some("deformable_detr")
        })
}

fn vit_outputs(result: VitOutput) -> Vec<(String, TensorData)> {
    let mut tensors = vec![(
        "last_hidden_state".to_string(),
        result.last_hidden_state.into_data(),
    )];
    if let Some(pooled) = result.pooler_output {
        tensors.push(("pooler_output".into(), pooled.into_data()));
    }
    if let Some(logits) = result.logits {
        tensors.push(("logits".into(), logits.into_data()));
    }
    tensors
}
