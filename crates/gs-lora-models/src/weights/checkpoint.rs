//! Checkpoints (safetensors, or PyTorch `.pth`/`.pt` as `torch.save` writes a state dict, whole
//! or sharded behind a Hugging Face `*.index.json`) as a [`ParamSource`], read through a
//! [`KeyMap`]; reading and writing single safetensors tensors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::TensorData;
use pytorch_reader::{DType as TorchDtype, PytorchReader};
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};

use super::{Init, ParamSource};
use crate::error::{ModelError, Result, io_error};

/// How a checkpoint names the canonical tensors.
pub trait KeyMap {
    /// The file keys holding canonical `key`, concatenated along axis 0 when there are several
    /// (Hugging Face stores timm's fused `qkv` as separate `query`, `key`, `value`).
    fn file_keys(&self, key: &str) -> Vec<String>;

    /// File keys that the architecture does not use and that are fine to leave unread
    /// (for example DINOv2's `mask_token`, used only for masked pre-training).
    fn is_ignored(&self, file_key: &str) -> bool;
}

impl KeyMap for Box<dyn KeyMap> {
    fn file_keys(&self, key: &str) -> Vec<String> {
        self.as_ref().file_keys(key)
    }

    fn is_ignored(&self, file_key: &str) -> bool {
        self.as_ref().is_ignored(file_key)
    }
}

/// The canonical names themselves (timm checkpoints).
#[derive(Debug, Clone, Copy, Default)]
pub struct IdentityKeys;

impl KeyMap for IdentityKeys {
    fn file_keys(&self, key: &str) -> Vec<String> {
        vec![key.to_string()]
    }

    fn is_ignored(&self, _file_key: &str) -> bool {
        false
    }
}

/// The file a checkpoint's tensors are read from.
enum Container {
    /// A safetensors file, read whole: the bytes, the parsed header (read once: a checkpoint of
    /// hundreds of tensors would otherwise parse it once per tensor) and where the data starts.
    Safetensors {
        bytes: Vec<u8>,
        metadata: Metadata,
        data_start: usize,
    },
    /// A PyTorch checkpoint, each tensor read from the file when asked for.
    Pytorch(PytorchReader),
}

/// One file of a checkpoint.
struct Shard {
    path: PathBuf,
    container: Container,
}

/// A checkpoint read through a [`KeyMap`]: safetensors, or a PyTorch state dict saved by
/// `torch.save` (torchvision's `vit_b_16-*.pth`, the official GS-LoRA face checkpoints), in one
/// file or in the shards a Hugging Face index (`model.safetensors.index.json`,
/// `pytorch_model.bin.index.json`) lists.
pub struct CheckpointSource<K> {
    path: PathBuf,
    shards: Vec<Shard>,
    /// The shard holding each tensor name.
    owner: BTreeMap<String, usize>,
    all: BTreeSet<String>,
    keys: K,
    used: BTreeSet<String>,
}

/// Whether `path` holds a PyTorch checkpoint rather than safetensors: a ZIP archive (what
/// `torch.save` writes since PyTorch 1.6), or a `.pth`, `.pt` or `.bin` name (the legacy
/// pickle stream has no magic number of its own).
fn is_pytorch(path: &Path, head: &[u8]) -> bool {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    head.starts_with(b"PK\x03\x04") || matches!(extension, "pth" | "pt" | "bin")
}

impl<K: KeyMap> CheckpointSource<K> {
    /// Opens `path`: safetensors is read whole, a PyTorch checkpoint tensor by tensor, a
    /// Hugging Face index (a name ending in `.index.json`) as the shards it lists, in its
    /// folder; either way the tensor data is first checked against the memory limit.
    ///
    /// # Errors
    /// [`ModelError::Io`] when unreadable, [`ModelError::Safetensors`] or
    /// [`ModelError::Pytorch`] when not a checkpoint of that kind (naming what is wrong),
    /// [`ModelError::ShardIndex`] for an index that does not match its shards, the limit's error
    /// for one too large.
    pub fn open(path: impl AsRef<Path>, keys: K) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let map = if is_index(&path) {
            Some(weight_map(&path)?)
        } else {
            None
        };
        let shard_paths = match &map {
            Some(map) => shard_paths(&path, map)?,
            None => vec![path.clone()],
        };
        if let [_, _, ..] = shard_paths.as_slice() {
            let mut bytes = 0u128;
            for shard in &shard_paths {
                bytes += u128::from(
                    std::fs::metadata(shard)
                        .map_err(io_error("reading", shard))?
                        .len(),
                );
            }
            gs_lora_core::Limits::from_env()?
                .check_memory(|| format!("the shards of {}", path.display()), bytes)?;
        }
        let mut shards: Vec<Shard> = Vec::with_capacity(shard_paths.len());
        let mut owner = BTreeMap::new();
        for (index, shard) in shard_paths.into_iter().enumerate() {
            let (container, names) = open_file(&shard)?;
            for name in names {
                if let Some(other) = owner.insert(name.clone(), index) {
                    return Err(ModelError::ShardIndex {
                        path,
                        message: format!(
                            "tensor `{name}` is in both {} and {}",
                            shards[other].path.display(),
                            shard.display()
                        ),
                    });
                }
            }
            shards.push(Shard {
                path: shard,
                container,
            });
        }
        if let Some(map) = map {
            check_weight_map(&path, map, &shards, &owner)?;
        }
        Ok(Self {
            path,
            all: owner.keys().cloned().collect(),
            shards,
            owner,
            keys,
            used: BTreeSet::new(),
        })
    }

    /// The checkpoint's path (the index of a sharded one).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor name in the checkpoint.
    pub fn names(&self) -> &BTreeSet<String> {
        &self.all
    }

    /// The same open file read through another key map (chosen after looking at
    /// [`names`](Self::names)).
    pub fn with_keys<K2: KeyMap>(self, keys: K2) -> CheckpointSource<K2> {
        CheckpointSource {
            path: self.path,
            shards: self.shards,
            owner: self.owner,
            all: self.all,
            keys,
            used: self.used,
        }
    }

    /// Fails if the checkpoint holds tensors that were neither read nor ignorable.
    ///
    /// # Errors
    /// [`ModelError::UnexpectedTensors`] listing up to five of them.
    pub fn finish(&self) -> Result<()> {
        let unused: Vec<&String> = self
            .all
            .iter()
            .filter(|key| !self.used.contains(*key) && !self.keys.is_ignored(key))
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        Err(ModelError::UnexpectedTensors {
            path: self.path.clone(),
            count: unused.len(),
            examples: unused.iter().take(5).map(|key| key.to_string()).collect(),
        })
    }

    fn read(&self, file_key: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let Some(&index) = self.owner.get(file_key) else {
            return Err(ModelError::MissingTensor {
                path: self.path.clone(),
                key: file_key.to_string(),
                expected: Vec::new(),
            });
        };
        self.shards[index].read(file_key)
    }
}

impl Shard {
    /// The tensor `file_key` (which the shard holds) as f32 values of its stored shape.
    fn read(&self, file_key: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let missing = || ModelError::MissingTensor {
            path: self.path.clone(),
            key: file_key.to_string(),
            expected: Vec::new(),
        };
        let unsupported = |dtype: String| ModelError::UnsupportedDtype {
            path: self.path.clone(),
            key: file_key.to_string(),
            dtype,
        };
        let (shape, values) = match &self.container {
            Container::Safetensors {
                bytes,
                metadata,
                data_start,
            } => {
                let info = metadata.info(file_key).ok_or_else(missing)?;
                // `read_metadata` checked every entry's offsets against the data.
                let (start, end) = info.data_offsets;
                let data = bytes
                    .get(data_start + start..data_start + end)
                    .unwrap_or_default();
                let values = to_f32(info.dtype, data)
                    .ok_or_else(|| unsupported(format!("{:?}", info.dtype)))?;
                (info.shape.clone(), values)
            }
            Container::Pytorch(reader) => {
                let tensor = reader.get(file_key).ok_or_else(missing)?;
                let bytes = tensor.read().map_err(|err| ModelError::Pytorch {
                    path: self.path.clone(),
                    message: err.to_string(),
                })?;
                let values = native_to_f32(tensor.dtype(), &bytes)
                    .ok_or_else(|| unsupported(format!("{:?}", tensor.dtype())))?;
                (tensor.shape().to_vec(), values)
            }
        };
        ensure_finite(&self.path, file_key, &shape, &values)?;
        Ok((shape, values))
    }
}

/// Whether `path` names a Hugging Face shard index (`*.index.json`).
fn is_index(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.ends_with(".index.json"))
}

/// The `weight_map` of the index at `path`: tensor name to shard file name.
fn weight_map(path: &Path) -> Result<BTreeMap<String, String>> {
    let invalid = |message: String| ModelError::ShardIndex {
        path: path.to_path_buf(),
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(io_error("reading", path))?
        .len();
    gs_lora_core::Limits::from_env()?
        .check_file(|| format!("the index {}", path.display()), size.into())?;
    let text = std::fs::read_to_string(path).map_err(io_error("reading", path))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|err| invalid(format!("not JSON: {err}")))?;
    let map = json
        .get("weight_map")
        .and_then(|map| map.as_object())
        .ok_or_else(|| invalid("no `weight_map` object".into()))?;
    map.iter()
        .map(|(key, file)| match file.as_str() {
            Some(file) => Ok((key.clone(), file.to_string())),
            None => Err(invalid(format!(
                "`weight_map.{key}` is {file}, expected a file name"
            ))),
        })
        .collect()
}

/// The shard files the index at `path` lists in `map`, in its folder, in name order. A shard name must
/// be a plain file name (no folder, no `..`): an index cannot point outside its folder.
fn shard_paths(path: &Path, map: &BTreeMap<String, String>) -> Result<Vec<PathBuf>> {
    let folder = path.parent().unwrap_or(Path::new(""));
    let files: BTreeSet<&String> = map.values().collect();
    if files.is_empty() {
        return Err(ModelError::ShardIndex {
            path: path.to_path_buf(),
            message: "`weight_map` lists no tensors".into(),
        });
    }
    files
        .into_iter()
        .map(|file| {
            let plain = Path::new(file)
                .file_name()
                .is_some_and(|name| name == file.as_str());
            let invalid = |message| ModelError::ShardIndex {
                path: path.to_path_buf(),
                message,
            };
            let shard = folder.join(file);
            if !plain {
                Err(invalid(format!(
                    "shard `{file}` is not a file name in the index's folder"
                )))
            } else if !shard.is_file() {
                Err(invalid(format!(
                    "shard `{file}` is listed but {} is not a file",
                    shard.display()
                )))
            } else {
                Ok(shard)
            }
        })
        .collect()
}

/// Checks that each tensor the index at `path` lists is in the shard it names.
fn check_weight_map(
    path: &Path,
    map: BTreeMap<String, String>,
    shards: &[Shard],
    owner: &BTreeMap<String, usize>,
) -> Result<()> {
    for (key, file) in map {
        let found = owner.get(&key).map(|&index| shards[index].path.as_path());
        if found.and_then(|p| p.file_name()) != Some(std::ffi::OsStr::new(&file)) {
            return Err(ModelError::ShardIndex {
                path: path.to_path_buf(),
                message: match found {
                    Some(other) => format!(
                        "tensor `{key}` is listed in {file} but found in {}",
                        other.display()
                    ),
                    None => format!("tensor `{key}` is listed in {file} but no shard holds it"),
                },
            });
        }
    }
    Ok(())
}

/// One checkpoint file and its tensor names.
fn open_file(path: &Path) -> Result<(Container, BTreeSet<String>)> {
    let mut head = [0u8; 4];
    let read = std::fs::File::open(path)
        .and_then(|mut file| std::io::Read::read(&mut file, &mut head))
        .map_err(io_error("reading", path))?;
    if is_pytorch(path, &head[..read]) {
        open_pytorch(path)
    } else {
        open_safetensors(path)
    }
}

/// A safetensors file, read whole after checking its size, and its tensor names.
fn open_safetensors(path: &Path) -> Result<(Container, BTreeSet<String>)> {
    let size = std::fs::metadata(path)
        .map_err(io_error("reading", path))?
        .len();
    gs_lora_core::Limits::from_env()?.check_memory(
        || format!("the weights file {}", path.display()),
        size.into(),
    )?;
    let bytes = std::fs::read(path).map_err(io_error("reading", path))?;
    let invalid = |message| ModelError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    check_header(&bytes).map_err(invalid)?;
    let (header_len, metadata) =
        SafeTensors::read_metadata(&bytes).map_err(|err| invalid(err.to_string()))?;
    let all = metadata.tensors().into_keys().collect();
    let container = Container::Safetensors {
        bytes,
        metadata,
        data_start: header_len + 8,
    };
    Ok((container, all))
}

/// A PyTorch checkpoint's index (tensors are read later, one at a time), after checking that
/// the f32 copies of all its tensors fit the memory limit, and its tensor names.
fn open_pytorch(path: &Path) -> Result<(Container, BTreeSet<String>)> {
    let reader = PytorchReader::new(path).map_err(|err| ModelError::Pytorch {
        path: path.to_path_buf(),
        message: err.to_string(),
    })?;
    let elements: u128 = reader
        .tensors()
        .values()
        .map(|t| t.num_elements() as u128)
        .sum();
    gs_lora_core::Limits::from_env()?.check_memory(
        || format!("the tensors of {}", path.display()),
        elements.saturating_mul(4),
    )?;
    let all = reader.keys().into_iter().collect();
    Ok((Container::Pytorch(reader), all))
}

impl<K: KeyMap> ParamSource for CheckpointSource<K> {
    fn tensor(&mut self, key: &str, shape: &[usize], _init: Init) -> Result<TensorData> {
        let file_keys = self.keys.file_keys(key);
        let parts = file_keys.len();
        // Grown from the parts read, never sized from `shape` (which a caller may derive from
        // user input: an adapter config's rank) before the file has confirmed it.
        let mut values = Vec::new();
        let mut rows = 0;
        for file_key in &file_keys {
            if !self.all.contains(file_key) {
                return Err(ModelError::MissingTensor {
                    path: self.path.clone(),
                    key: file_key.clone(),
                    expected: part_shape(shape, parts),
                });
            }
            let (found, part) = self.read(file_key)?;
            let expected = part_shape(shape, parts);
            if found != expected {
                return Err(ModelError::ShapeMismatch {
                    path: self.path.clone(),
                    key: file_key.clone(),
                    expected,
                    found,
                });
            }
            rows += found.first().copied().unwrap_or(1);
            values.extend(part);
            self.used.insert(file_key.clone());
        }
        debug_assert!(shape.is_empty() || rows == shape[0]);
        Ok(TensorData::new(values, shape.to_vec()))
    }

    fn contains(&self, key: &str) -> bool {
        self.keys
            .file_keys(key)
            .iter()
            .all(|file_key| self.all.contains(file_key))
    }
}

/// The shape of one of `parts` equal slices of `shape` along axis 0.
fn part_shape(shape: &[usize], parts: usize) -> Vec<usize> {
    let mut part = shape.to_vec();
    if let Some(rows) = part.first_mut() {
        *rows /= parts;
    }
    part
}

/// Whether tensors holding NaN or infinite values may be loaded (off by default).
static ALLOW_NON_FINITE: AtomicBool = AtomicBool::new(false);

/// Lets tensors with NaN or infinite values load (for inspecting a broken checkpoint; every
/// output computed from them is suspect). Process-wide; off by default.
pub fn set_allow_non_finite(allow: bool) {
    ALLOW_NON_FINITE.store(allow, Ordering::Relaxed);
}

/// Refuses `values` (of `shape`) of the tensor `key` in `path` if one is NaN or infinite
/// (unless allowed by [`set_allow_non_finite`]).
///
/// # Errors
/// [`ModelError::NonFinite`] with the count and the index of the first one.
pub fn ensure_finite(path: &Path, key: &str, shape: &[usize], values: &[f32]) -> Result<()> {
    if ALLOW_NON_FINITE.load(Ordering::Relaxed) {
        return Ok(());
    }
    let Some(first) = values.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let mut index = vec![0; shape.len()];
    let mut rest = first;
    for (slot, &dim) in index.iter_mut().zip(shape).rev() {
        *slot = rest % dim.max(1);
        rest /= dim.max(1);
    }
    Err(ModelError::NonFinite {
        path: path.to_path_buf(),
        key: key.to_string(),
        count: values[first..].iter().filter(|v| !v.is_finite()).count(),
        index,
    })
}

/// Checks each tensor entry of a safetensors header against the data it points at, so that a
/// bad entry is reported under its own name (the parser names whichever entry it meets
/// first in offset order).
fn check_header(bytes: &[u8]) -> std::result::Result<(), String> {
    let Some((length, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(format!(
            "{} bytes, shorter than the 8-byte header length",
            bytes.len()
        ));
    };
    let length = u64::from_le_bytes(*length);
    let Some(header) = usize::try_from(length).ok().and_then(|l| rest.get(..l)) else {
        return Err(format!(
            "the header claims {length} bytes but the file has {} after the length",
            rest.len()
        ));
    };
    let data_len = (rest.len() - header.len()) as u128;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|err| format!("the header is not a JSON object: {err}"))?;
    for (key, entry) in header.iter().filter(|(key, _)| *key != "__metadata__") {
        let offsets = entry
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .map(|o| o.iter().map(serde_json::Value::as_u64).collect::<Vec<_>>());
        let [Some(start), Some(end)] = offsets.as_deref().unwrap_or(&[]) else {
            return Err(format!("tensor `{key}`: data_offsets must be two integers"));
        };
        let (start, end) = (u128::from(*start), u128::from(*end));
        if start > end || end > data_len {
            return Err(format!(
                "tensor `{key}`: data_offsets [{start}, {end}] lie outside the {data_len} data bytes"
            ));
        }
        let shape: Option<Vec<u128>> = entry
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|s| s.iter().map(|d| d.as_u64().map(u128::from)).collect());
        let element = match entry.get("dtype").and_then(|d| d.as_str()) {
            Some("F64" | "I64" | "U64") => Some(8),
            Some("F32" | "I32" | "U32") => Some(4),
            Some("F16" | "BF16" | "I16" | "U16") => Some(2),
            Some("I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2") => Some(1),
            _ => None,
        };
        if let (Some(shape), Some(element)) = (shape, element) {
            let expected = shape
                .iter()
                .fold(element, |n: u128, d| n.saturating_mul(*d));
            if expected != end - start {
                return Err(format!(
                    "tensor `{key}`: shape {shape:?} needs {expected} bytes but data_offsets \
                     [{start}, {end}] hold {}",
                    end - start
                ));
            }
        }
    }
    Ok(())
}

/// The values of a PyTorch tensor's native-endian bytes as f32, for floating-point dtypes.
fn native_to_f32(dtype: TorchDtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let words = |size: usize| bytes.chunks_exact(size);
    Some(match dtype {
        TorchDtype::F32 => words(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        TorchDtype::F64 => words(8)
            .map(|b| f64::from_ne_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        TorchDtype::F16 => words(2)
            .map(|b| half::f16::from_ne_bytes([b[0], b[1]]).to_f32())
            .collect(),
        TorchDtype::BF16 => words(2)
            .map(|b| half::bf16::from_ne_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let words = |size: usize| bytes.chunks_exact(size);
    Some(match dtype {
        Dtype::F32 => words(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => words(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        Dtype::F16 => words(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => words(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Reads the tensor `key` of a safetensors file as `f32` data of its stored shape (for inputs
/// such as `pixel_values`, whose shape the caller does not know in advance).
///
/// # Errors
/// [`ModelError::Io`], [`ModelError::Safetensors`], [`ModelError::MissingTensor`] or
/// [`ModelError::UnsupportedDtype`].
pub fn read_tensor(path: impl AsRef<Path>, key: &str) -> Result<TensorData> {
    let source = CheckpointSource::open(path, IdentityKeys)?;
    let (shape, values) = source.read(key)?;
    Ok(TensorData::new(values, shape))
}

/// Writes named float tensors to a safetensors file (`f32`, little-endian).
///
/// # Errors
/// [`ModelError::Io`] when the file cannot be written, [`ModelError::Safetensors`] when a
/// tensor cannot be read back from its device or serialised.
pub fn write_tensors(path: impl AsRef<Path>, tensors: Vec<(String, TensorData)>) -> Result<()> {
    let path = path.as_ref();
    let serialise_error = |message: String| ModelError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let mut views = Vec::with_capacity(tensors.len());
    for (name, data) in tensors {
        let shape = data.shape().to_vec();
        let values = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|err| serialise_error(format!("{err:?}")))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        views.push((name, shape, bytes));
    }
    let views = views
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|err| serialise_error(err.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes =
        safetensors::serialize(views, None).map_err(|err| serialise_error(err.to_string()))?;
    std::fs::write(path, bytes).map_err(io_error("writing", path))
}
