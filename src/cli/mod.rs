//! The `gs-lora` command-line program: `pretrain`, `forget`, `compare`, `eval`, `forward` and
//! `completions`, and the groups of flags the examples share with it.

mod args;
mod compare;
mod completions;
mod eval;
mod forget;
mod forward;
mod pretrain;
mod run_file;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use args::{
    BoundArg, DataArgs, DeviceArgs, ForgetArgs, ForgetFractionArg, ForgetLossArg,
    forget_defaults_help, forget_load_options, is_embedded, model_load_options, open_dataset,
};
pub use compare::CompareArgs;
pub use run_file::overlay;

use crate::backend::BackendError;
use gs_lora_models::ModelError;
use gs_lora_train::TrainError;

/// GS-LoRA continual forgetting for pre-trained vision models.
///
/// Datasets (--data): a CUB-200-2011 root, a folder of IDX files (Fashion-MNIST), an image
/// folder ROOT/CLASS/*.png (or with train/ val/ test/ splits), a .zip archive of one, or
/// `embedded` (the generated default).
#[derive(Debug, Parser)]
#[command(name = "gs-lora", version)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `gs-lora`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a classifier on a dataset: a small ViT from scratch, or a linear probe on a
    /// pretrained backbone (--weights); writes a model directory.
    ///
    /// Without --weights, trains the embedded default's small ViT (patch 8; --image-size a
    /// multiple of 8, default 32) from scratch on D, with flips and shifts. With --weights,
    /// attaches a head of D's classes and trains it on the frozen backbone's cached embeddings
    /// (linear probe); --image-size defaults to the checkpoint config's and must be a multiple
    /// of its patch size.
    ///
    /// Writes DIR/config.json, DIR/model.safetensors, DIR/gs_lora.json (class names,
    /// preprocessing, split seed: `eval` and `forget` load D with it, so other training seeds
    /// never measure on images DIR trained on) and DIR/pretrain.json (every setting used:
    /// `--config DIR/pretrain.json` trains with them again), atomically; an existing DIR is
    /// replaced only if it is empty or a model directory, and DIR may not be, contain or lie
    /// inside --data, --weights, --model-config or --head-classes.
    Pretrain(pretrain::PretrainCommand),
    /// Run continual-forgetting tasks (GS-LoRA, GS-LoRA++ or a baseline) on a model directory.
    ///
    /// Forgets --forget-per-task classes per task from the model in DIR (made by `gs-lora
    /// pretrain`; D must have its classes: pass the same data flags; --split-seed defaults to
    /// the model's).
    #[command(after_long_help = forget::after_help())]
    Forget(Box<forget::ForgetCommand>),
    /// Compare forgetting methods on one model: every method and seed on the same schedule,
    /// one table (mean ± std over seeds) and plots.
    ///
    /// For example `gs-lora compare --data D --model DIR --out OUT --methods
    /// gs-lora,lora,fine-tune,neg-grad+,random-labels,salun --seeds 0,1,2` (any `forget` flag
    /// applies to every run; docs/baselines.md describes the methods).
    #[command(after_long_help = compare::AFTER_HELP)]
    Compare(Box<compare::CompareCommand>),
    /// Accuracy of a model directory on a dataset, per class group.
    ///
    /// Prints the top-1 accuracy of the model in DIR (a `gs-lora pretrain` output or a
    /// forgetting checkpoint RUN/checkpoints/task-N) on D's split: all classes, the classes
    /// forgotten so far and the remaining ones; with --per-class, every class. Pass the data
    /// flags used for pretraining; the split seed defaults to the one the model records.
    Eval(eval::EvalCommand),
    /// Run a checkpoint on a tensor file and write its outputs.
    ///
    /// Runs a checkpoint on the tensor `pixel_values` [B, C, H, W] of IN and writes to OUT:
    /// timm ViT, Hugging Face ViT or DINOv2, GS-LoRA face ViT: `last_hidden_state`,
    /// `pooler_output` (where the format has one) and `logits` (where the model has a head);
    /// Hugging Face Deformable DETR (`model_type` `deformable_detr`): `logits` [B, Q, C] and
    /// `pred_boxes` [B, Q, 4] (cx, cy, w, h normalised); a padded batch passes `pixel_mask`
    /// [B, H, W] in IN (non-zero on real pixels, floating point), as the Hugging Face image
    /// processor makes it. OUT may not be any of the input files.
    Forward(forward::ForwardCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// For example `gs-lora completions bash > ~/.local/share/bash-completion/completions/gs-lora`.
    Completions(completions::CompletionsCommand),
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Flags that do not go together or do not apply.
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
pub fn main(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
    let args = std::iter::once(OsString::from("gs-lora")).chain(args.into_iter().map(Into::into));
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => return clap_exit(&err),
    };
    exit_code(match cli.command {
        Command::Pretrain(command) => command.run(),
        Command::Forget(command) => command.run(),
        Command::Compare(command) => command.run(),
        Command::Eval(command) => command.run(),
        Command::Forward(command) => command.run(),
        Command::Completions(command) => command.run(),
    })
}

/// Prints clap's message (help, version, or what is wrong with the flags) and returns its
/// exit status: 0 for help and version, 2 for a usage error.
pub fn clap_exit(err: &clap::Error) -> ExitCode {
    // Printing fails only when the terminal is gone; the status still says what happened.
    let _ = err.print();
    ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2))
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
                    eprintln!("error: invalid setting: {} {problem}", args::flag_for(name));
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap's own consistency checks (no two flags with one name, every `conflicts_with` and
    /// group naming a flag that exists). Catches a flag renamed in one place only.
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
