//! The `gs-lora` command-line program.
//!
//! ```text
//! gs-lora forward --config CONFIG.json --weights MODEL.safetensors \
//!                 --input IN.safetensors --output OUT.safetensors [--backend NAME]
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Tensor;
use gs_lora::backend::{self, BackendError};
use gs_lora::core::LoraConfig;
use gs_lora::models::weights::{read_tensor, write_tensors};
use gs_lora::models::{ModelError, VisionTransformer};

const USAGE: &str = "\
usage: gs-lora forward --config CONFIG.json --weights MODEL.safetensors \\
                       --input IN.safetensors --output OUT.safetensors [--backend flex|ndarray|wgpu|cuda]

  forward   runs a checkpoint (timm ViT, Hugging Face ViT or DINOv2) on the tensor `pixel_values`
            [B, 3, H, W] of IN and writes `last_hidden_state`, `pooler_output` (where the format
            has one) and `logits` (where the model has a head) to OUT";

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// `--name value` pairs after the command.
fn parse_flags(args: &[String]) -> Result<HashMap<String, String>, CliError> {
    let mut flags = HashMap::new();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| CliError::Usage(format!("unexpected argument `{flag}`")))?;
        let value = args
            .next()
            .ok_or_else(|| CliError::Usage(format!("`--{name}` needs a value")))?;
        flags.insert(name.to_string(), value.clone());
    }
    Ok(flags)
}

fn forward(args: &[String]) -> Result<(), CliError> {
    let mut flags = parse_flags(args)?;
    let mut path = |name: &str| {
        flags
            .remove(name)
            .map(PathBuf::from)
            .ok_or_else(|| CliError::Usage(format!("missing `--{name}`")))
    };
    let (config, weights) = (path("config")?, path("weights")?);
    let (input, output) = (path("input")?, path("output")?);
    let device = backend::device(flags.remove("backend").as_deref())?;
    if let Some(unknown) = flags.keys().next() {
        return Err(CliError::Usage(format!("unknown flag `--{unknown}`")));
    }

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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("forward") => forward(&args[1..]),
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(CliError::Usage(format!("unknown command `{other}`"))),
        None => Err(CliError::Usage("no command given".into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(match err {
                CliError::Usage(_) => 2,
                _ => 1,
            })
        }
    }
}
