//! The `gs-lora` command-line program; `gs-lora --help` lists its commands.

use std::process::ExitCode;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: gs_lora::allocator::Allocator = gs_lora::allocator::Allocator;

fn main() -> ExitCode {
    #[cfg(feature = "mimalloc")]
    gs_lora::allocator::keep_freed_memory();
    gs_lora::cli::main(std::env::args_os().skip(1))
}
