//! The `gs-lora` command-line program: `pretrain`, `forget`, `eval` and `forward`, and the flag
//! handling the examples share with it.

mod eval;
mod flags;
mod forget;
mod forward;
mod pretrain;

use std::process::ExitCode;

pub use flags::{
    Flags, compute_device, forget_config, forget_load_options, is_embedded, load_options,
    open_dataset,
};

use crate::backend::BackendError;
use gs_lora_models::ModelError;
use gs_lora_train::TrainError;

/// The program's overview, printed by `gs-lora --help`.
pub const USAGE: &str = "\
usage: gs-lora <command> [flags]

commands:
  pretrain  train a classifier on a dataset: a small ViT from scratch, or a linear probe on a
            pretrained backbone (--weights); writes a model directory
  forget    run continual-forgetting tasks (GS-LoRA / GS-LoRA++) on a model directory
  eval      accuracy of a model directory on a dataset, per class group
  forward   run a checkpoint on a tensor file and write its outputs

`gs-lora <command> --help` lists a command's flags. Datasets (--data): a CUB-200-2011 root, a
folder of IDX files (Fashion-MNIST), an image folder ROOT/CLASS/*.png (or with train/ val/ test/
splits), a .zip archive of one, or `embedded` (the generated default).";

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Wrong or missing flags; the message ends with the command's usage.
    #[error("{0}")]
    Usage(String),
    /// The backend could not be selected.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A model failed to load, run or save.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Data, training or result files failed.
    #[error(transparent)]
    Train(#[from] TrainError),
}

/// Runs the program on its arguments (without the program name).
pub fn main(args: &[String]) -> ExitCode {
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("", args),
    };
    let result = match command {
        "pretrain" => pretrain::run(rest),
        "forget" => forget::run(rest),
        "eval" => eval::run(rest),
        "forward" => forward::run(rest),
        "--help" | "-h" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        "" => Err(CliError::Usage(format!("no command given\n\n{USAGE}"))),
        other => Err(CliError::Usage(format!(
            "unknown command `{other}`\n\n{USAGE}"
        ))),
    };
    exit_code(result)
}

/// The exit status of a command's result, printing the error: 2 for a usage error, 1 for any
/// other failure.
pub fn exit_code(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            match &err {
                // The library names the config field; the user typed its flag.
                CliError::Train(TrainError::Setting { name, problem }) => {
                    eprintln!(
                        "error: invalid setting: {} {problem}",
                        flags::flag_for(name)
                    );
                }
                _ => eprintln!("error: {err}"),
            }
            ExitCode::from(match err {
                CliError::Usage(_) => 2,
                _ => 1,
            })
        }
    }
}
