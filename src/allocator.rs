//! The programs' global allocator (feature `mimalloc`, on by default).
//!
//! Burn allocates a fresh buffer for every op's output. glibc's malloc hands large freed blocks
//! back to the OS and page-faults them in again, zeroed, on the next step; mimalloc keeps them
//! for reuse. The library itself never installs an allocator: the `gs-lora` program and the
//! examples do, with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: gs_lora::allocator::Allocator = gs_lora::allocator::Allocator;
//! // first thing in main:
//! gs_lora::allocator::keep_freed_memory();
//! ```

/// The allocator the `gs-lora` program and the examples install.
pub use mimalloc::MiMalloc as Allocator;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (the same in its v2 and v3 headers;
/// `libmimalloc-sys` does not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to return freed memory to the OS (`purge_delay = -1`; the default
/// purges after 10 ms). A training step frees and reallocates the same large activations every
/// step; purging them between steps made the kernel zero them again, a quarter of the ViT-S
/// GS-LoRA step (docs/benchmarks.md). Memory stays at the peak of one step.
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    // SAFETY: `mi_option_set` only records an option value; -1 is a documented value of
    // `purge_delay` ("no purging at all"), and options may be set at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}
