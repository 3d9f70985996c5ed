//! `gs-lora completions`: a shell completion script.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, CliError};

/// The flags of `gs-lora completions` (its help is on [`Command`](super::Command)).
#[derive(Debug, Args)]
pub struct CompletionsCommand {
    /// The shell.
    shell: Shell,
}

impl CompletionsCommand {
    pub(super) fn run(self) -> Result<(), CliError> {
        clap_complete::generate(
            self.shell,
            &mut Cli::command(),
            "gs-lora",
            &mut std::io::stdout(),
        );
        Ok(())
    }
}
