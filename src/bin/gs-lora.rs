//! The `gs-lora` command-line program; `gs-lora --help` lists its commands.

use std::process::ExitCode;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: gs_lora::allocator::Allocator = gs_lora::allocator::Allocator;

fn main() -> ExitCode {
    #[cfg(feature = "mimalloc")]
    gs_lora::allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    gs_lora::cli::main(&args)
}
