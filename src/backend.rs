//! Choosing the compute backend at run time.
//!
//! Burn 0.22 picks the backend from a [`Device`] value, so one binary can run on any backend it
//! was compiled with. This module turns a name (`--backend flex|ndarray|wgpu|cuda`, or the
//! `BURN_DEVICE` environment variable) into a device, and says which cargo feature to enable
//! when the backend was not compiled in.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// A compute backend the project supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Pure-Rust CPU backend (gemm, SIMD, rayon); the default.
    Flex,
    /// The older CPU backend, deprecated upstream.
    NdArray,
    /// GPU through wgpu: Vulkan, Metal, DX12, or lavapipe on a CPU-only machine.
    Wgpu,
    /// NVIDIA GPU 0 through CUDA.
    Cuda,
}

/// Why a backend could not be selected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    /// The name is not a backend.
    #[error("unknown backend `{0}`; expected one of flex, ndarray, wgpu, cuda")]
    Unknown(String),
    /// A device of `--devices` that is not `NAME` or `NAME:INDEX`.
    #[error(
        "device `{0}` is not NAME or NAME:INDEX (flex, flex:0, wgpu:1, cuda:0, …); \
         --devices takes a comma-separated list"
    )]
    BadDevice(String),
    /// Devices of two backends in one `--devices` list.
    #[error(
        "--devices mixes the backends {first} and {other}; every device of a run must be of one \
         backend"
    )]
    MixedBackends {
        /// The first device's backend.
        first: Backend,
        /// Another device's backend.
        other: Backend,
    },
    /// An index on a backend that has one device.
    #[error(
        "backend `{backend}` has one device, index 0, found index {index}; name it twice \
         (`{backend},{backend}`) to split a batch on it"
    )]
    NoSuchIndex {
        /// The backend's name.
        backend: &'static str,
        /// The index asked for.
        index: usize,
    },
    /// The backend exists but this binary was built without it.
    #[error(
        "backend `{backend}` is not compiled into this binary; rebuild with `--features {backend}`"
    )]
    NotCompiled {
        /// The backend's name, which is also its cargo feature.
        backend: &'static str,
    },
}

impl Backend {
    /// Every backend, in the order `--help` lists them.
    pub const ALL: [Backend; 4] = [
        Backend::Flex,
        Backend::NdArray,
        Backend::Wgpu,
        Backend::Cuda,
    ];

    /// The backend's name, which is also the cargo feature that compiles it in.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::NdArray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// Whether this binary was compiled with the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Flex => cfg!(feature = "flex"),
            Backend::NdArray => cfg!(feature = "ndarray"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backend's default device (without autodiff; call `.autodiff()` to train).
    ///
    /// # Errors
    /// [`BackendError::NotCompiled`] naming the feature to enable.
    pub fn device(self) -> Result<Device, BackendError> {
        self.device_at(None)
    }

    /// The backend's device `index` (without autodiff): the `index`-th discrete GPU for wgpu,
    /// GPU `index` for CUDA; `None` is the default device (wgpu's choice, CUDA 0). The CPU
    /// backends have one device, index 0.
    ///
    /// # Errors
    /// [`BackendError::NotCompiled`] naming the feature to enable, or
    /// [`BackendError::NoSuchIndex`] for an index other than 0 on a CPU backend.
    pub fn device_at(self, index: Option<usize>) -> Result<Device, BackendError> {
        if !self.is_compiled() {
            return Err(BackendError::NotCompiled {
                backend: self.name(),
            });
        }
        if let (Backend::Flex | Backend::NdArray, Some(index @ 1..)) = (self, index) {
            return Err(BackendError::NoSuchIndex {
                backend: self.name(),
                index,
            });
        }
        match self {
            #[cfg(feature = "flex")]
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // kept for users who ask for it, as the README says
            Backend::NdArray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(match index {
                Some(index) => Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(index)),
                None => Device::wgpu(Default::default()),
            }),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(index.unwrap_or(0))),
            #[allow(unreachable_patterns)] // reached only for backends not compiled in
            _ => Err(BackendError::NotCompiled {
                backend: self.name(),
            }),
        }
    }

    /// The backend named by `--backend` when given, else by `BURN_DEVICE`, else [`Backend::Flex`].
    ///
    /// # Errors
    /// [`BackendError::Unknown`] for a name that is not a backend.
    pub fn select(name: Option<&str>) -> Result<Self, BackendError> {
        match name {
            Some(name) => name.parse(),
            None => match std::env::var("BURN_DEVICE") {
                Ok(name) if !name.is_empty() => name.parse(),
                _ => Ok(Backend::Flex),
            },
        }
    }
}

impl FromStr for Backend {
    type Err = BackendError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|backend| backend.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| BackendError::Unknown(name.to_string()))
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The device for `--backend NAME` (or `BURN_DEVICE`, or flex), as [`Backend::select`] then
/// [`Backend::device`].
///
/// # Errors
/// As those two.
pub fn device(name: Option<&str>) -> Result<Device, BackendError> {
    Backend::select(name)?.device()
}

/// The devices of `--devices LIST`: comma-separated `NAME` or `NAME:INDEX`, all of one backend
/// (`wgpu:0,wgpu:1`, `cuda:0,cuda:1`; `flex,flex` splits each batch in two on the one CPU
/// device), each without autodiff.
///
/// # Errors
/// [`BackendError::BadDevice`] for an item that is not `NAME[:INDEX]` (or an empty list),
/// [`BackendError::MixedBackends`], and the errors of [`Backend::device_at`].
pub fn devices(list: &str) -> Result<Vec<Device>, BackendError> {
    let mut first = None;
    let mut devices = Vec::new();
    for item in list.split(',') {
        let bad = || BackendError::BadDevice(item.trim().to_string());
        let (name, index) = match item.trim().split_once(':') {
            Some((name, index)) => (name, Some(index.parse::<usize>().map_err(|_| bad())?)),
            None => (item.trim(), None),
        };
        if name.is_empty() {
            return Err(bad());
        }
        let backend: Backend = name.parse()?;
        match first {
            None => first = Some(backend),
            Some(first) if first != backend => {
                return Err(BackendError::MixedBackends {
                    first,
                    other: backend,
                });
            }
            Some(_) => {}
        }
        devices.push(backend.device_at(index)?);
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for backend in Backend::ALL {
            assert_eq!(backend.name().parse::<Backend>(), Ok(backend));
        }
        assert_eq!("WGPU".parse::<Backend>(), Ok(Backend::Wgpu));
        let err = "tpu".parse::<Backend>().expect_err("not a backend");
        assert_eq!(err, BackendError::Unknown("tpu".into()));
        assert!(err.to_string().contains("flex, ndarray, wgpu, cuda"));
    }

    #[test]
    fn a_backend_not_compiled_in_names_its_feature() {
        for backend in Backend::ALL {
            match backend.device() {
                Ok(_) => assert!(backend.is_compiled()),
                Err(err) => {
                    assert!(!backend.is_compiled());
                    assert!(
                        err.to_string()
                            .contains(&format!("--features {}", backend.name()))
                    );
                }
            }
        }
    }

    /// Lists as a user writes them, and each way one can be wrong. Catches an index dropped
    /// (wgpu:1 as the default device), mixed backends accepted, or a CPU index other than 0
    /// taken as device 0.
    #[test]
    fn device_lists_parse_and_bad_ones_say_why() {
        let two = devices("flex, flex:0").expect("two copies of the CPU device");
        assert_eq!(two, vec![Device::flex(), Device::flex()]);
        let err = |list: &str| devices(list).expect_err(list).to_string();
        assert!(err("flex:1").contains("has one device, index 0, found index 1"));
        assert!(err("flex:x").contains("device `flex:x` is not NAME or NAME:INDEX"));
        assert!(err("flex,,flex").contains("device `` is not NAME"));
        assert!(err("tpu:0").contains("unknown backend `tpu`"));
        if Backend::Wgpu.is_compiled() {
            assert!(err("flex,wgpu:0").contains("mixes the backends flex and wgpu"));
        } else {
            assert!(err("wgpu:0,wgpu:1").contains("--features wgpu"));
        }
    }

    #[test]
    fn the_default_backend_is_compiled_in() {
        assert!(Backend::Flex.is_compiled());
        assert_eq!(Backend::select(Some("flex")), Ok(Backend::Flex));
        let device = device(Some("flex")).expect("flex is the default feature");
        let tensor = burn::tensor::Tensor::<1>::from_floats([1.0, 2.0], &device);
        assert_eq!(tensor.sum().into_scalar::<f32>(), 3.0);
    }
}
