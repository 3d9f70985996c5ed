//! `gs-lora forward`: a checkpoint's outputs for a tensor file.

use burn::tensor::Tensor;
use gs_lora_core::LoraConfig;
use gs_lora_models::weights::{read_tensor, write_tensors};
use gs_lora_models::{ModelError, VisionTransformer};

use super::{CliError, Flags};
use crate::backend;

const USAGE: &str = "\
usage: gs-lora forward --config CONFIG.json --weights MODEL.safetensors \\
                       --input IN.safetensors --output OUT.safetensors [--backend flex|ndarray|wgpu|cuda]

Runs a checkpoint (timm ViT, Hugging Face ViT or DINOv2, GS-LoRA face ViT) on the tensor
`pixel_values` [B, C, H, W] of IN and writes `last_hidden_state`, `pooler_output` (where the
format has one) and `logits` (where the model has a head) to OUT.";

pub(super) fn run(args: &[String]) -> Result<(), CliError> {
    let Some(mut flags) = Flags::parse(args, &[], USAGE)? else {
        return Ok(());
    };
    let (config, weights) = (
        flags.required_path("config")?,
        flags.required_path("weights")?,
    );
    let (input, output) = (
        flags.required_path("input")?,
        flags.required_path("output")?,
    );
    let device = backend::device(flags.take("backend").as_deref())?;
    flags.finish()?;

    let model =
        VisionTransformer::from_pretrained(&config, &weights, &LoraConfig::new(), 0, &device)?;
    let pixels = read_tensor(&input, "pixel_values")?;
    if pixels.shape().len() != 4 {
        return Err(ModelError::Input {
            expected: "pixel_values of rank 4 [B, C, H, W]".into(),
            found: format!("shape {:?} in {}", pixels.shape().to_vec(), input.display()),
        }
        .into());
    }
    let result = model.forward(Tensor::<4>::from_data(pixels, &device))?;
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
    let names: Vec<String> = tensors.iter().map(|(name, _)| name.clone()).collect();
    write_tensors(&output, tensors)?;
    println!("wrote {} to {}", names.join(", "), output.display());
    Ok(())
}
