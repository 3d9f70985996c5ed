//! The instruction set the fused element-wise kernels run with, picked at run time.
//!
//! One binary serves every x86-64 CPU: the kernels are compiled for AVX-512, for AVX2 + FMA
//! and for plain scalar code, and each call takes the best level the CPU has, unless the
//! process capped it ([`set_simd_cap`]) to test a lower level or to reproduce another CPU's
//! floating-point order in these kernels. (The matrix products of the `gemm` crate pick their
//! own level from the CPU and are not capped.)

use std::sync::atomic::{AtomicU8, Ordering};

use pulp::Arch;

/// An instruction-set level of the fused kernels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// Scalar code, on any CPU.
    Scalar,
    /// x86-64-v3: AVX2 and FMA, 256-bit vectors.
    Avx2,
    /// x86-64-v4: AVX-512 F/BW/CD/DQ/VL, 512-bit vectors.
    Avx512,
}

impl SimdLevel {
    const ALL: [SimdLevel; 3] = [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512];

    /// Every level this CPU can run, lowest first (always starts with [`SimdLevel::Scalar`]).
    pub fn available() -> Vec<SimdLevel> {
        Self::ALL
            .into_iter()
            .filter(|level| level.arch().is_some())
            .collect()
    }

    /// The best level this CPU can run.
    pub fn detected() -> SimdLevel {
        *Self::available().last().unwrap_or(&SimdLevel::Scalar)
    }

    /// pulp's dispatcher for this level, if the CPU has it.
    fn arch(self) -> Option<Arch> {
        match self {
            SimdLevel::Scalar => Some(Arch::Scalar),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            SimdLevel::Avx2 => pulp::x86::V3::try_new().map(Arch::V3),
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            SimdLevel::Avx512 => pulp::x86::V4::try_new().map(Arch::V4),
            #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
            SimdLevel::Avx2 | SimdLevel::Avx512 => None,
        }
    }
}

/// The highest level the kernels may use (`u8::MAX`: no cap).
static CAP: AtomicU8 = AtomicU8::new(u8::MAX);

/// Caps the fused kernels' instruction set for the whole process: `Some(level)` runs them at
/// `level` or the best level below it that the CPU has, `None` (the default) at the best the
/// CPU has.
pub fn set_simd_cap(cap: Option<SimdLevel>) {
    CAP.store(cap.map_or(u8::MAX, |level| level as u8), Ordering::Relaxed);
}

/// The dispatcher the kernels run under: the best available level within the cap.
pub(crate) fn arch() -> Arch {
    let cap = CAP.load(Ordering::Relaxed);
    SimdLevel::ALL
        .into_iter()
        .rev()
        .filter(|level| *level as u8 <= cap)
        .find_map(SimdLevel::arch)
        .unwrap_or(Arch::Scalar)
}
