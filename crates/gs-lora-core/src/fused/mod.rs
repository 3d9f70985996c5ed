//! Fused versions of the element-wise ops that dominate a Transformer's training step on CPU.
//!
//! Each function computes exactly what the Burn op named in its doc computes, on any device. On
//! the Flex backend (with or without autodiff; needs this crate's `flex` feature) it runs one
//! multi-threaded, vectorised pass forward and one backward instead of Burn's chain of
//! single-threaded primitive ops; everywhere else it calls Burn's op. See `docs/benchmarks.md`
//! for what each saves.

#[cfg(feature = "flex")]
mod approx;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
mod kernels;

#[cfg(feature = "flex")]
pub use flex::FusedOps;

use burn::tensor::{Device, Tensor};

/// The exact (erf) GELU, `x·Φ(x)`, as [`burn::tensor::activation::gelu`].
///
/// - `x`: any shape; the output has the same.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if available(&x.device()) {
        use burn::backend::Dispatch;
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_gelu(x.into_dispatch()));
    }
    burn::tensor::activation::gelu(x)
}

/// Whether the functions here run fused on `device`: Flex (directly or under autodiff) with this
/// crate's `flex` feature.
pub fn available(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        matches!(
            device.clone().inner().as_dispatch(),
            burn::backend::DispatchDevice::Flex(_)
        )
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}
