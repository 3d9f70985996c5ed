//! MNIST-style IDX files (Fashion-MNIST as the Debian package `dataset-fashion-mnist` installs
//! it): `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]` and the `t10k-` pair.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::listing::{Item, Listing, Split, assemble, choose};
use super::{Dataset, Image, LoadOptions};
use crate::error::{Result, TrainError, io};

/// Fashion-MNIST's class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The IDX file `name` in `dir`, gzipped or not; `None` when neither exists.
pub(crate) fn idx_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(format!("{name}.gz")), dir.join(name)]
        .into_iter()
        .find(|path| path.is_file())
}

/// The shape and payload of the IDX array of unsigned bytes with `dims` dimensions at `path`,
/// inflated when its name ends in `.gz`. The header is checked (magic number, a payload that
/// fits the memory limit) before the payload is read, and never more than the declared payload
/// is read: a gzip bomb stops there.
fn read_idx(path: &Path, dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let bad = |message: String| TrainError::Format {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let mut header = Vec::new();
    reader
        .by_ref()
        .take(4 + 4 * dims as u64)
        .read_to_end(&mut header)
        .map_err(io(path))?;
    if header.len() < 4 + 4 * dims || header[..3] != [0, 0, 0x08] || header[3] as usize != dims {
        return Err(bad(format!(
            "not an IDX file of unsigned bytes with {dims} dimension(s) (magic 0x0000080{dims})"
        )));
    }
    let shape: Vec<usize> = header[4..]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    // At most three dimensions of `u32`: the product fits `u128`.
    let expected: u128 = shape.iter().map(|&d| d as u128).product();
    gs_lora_core::Limits::from_env()?.check_memory(
        || format!("{}: an IDX array of shape {shape:?}", path.display()),
        expected,
    )?;
    let expected = usize::try_from(expected)
        .map_err(|_| bad(format!("shape {shape:?} is too large for this machine")))?;
    let mut payload = Vec::new();
    reader
        .take(expected as u64 + 1)
        .read_to_end(&mut payload)
        .map_err(io(path))?;
    if payload.len() != expected {
        let found = if payload.len() > expected {
            format!("more than {expected}")
        } else {
            format!("{} (truncated?)", payload.len())
        };
        return Err(bad(format!(
            "shape {shape:?} needs {expected} bytes of data, found {found}"
        )));
    }
    Ok((shape, payload))
}

/// One split's images `[N, rows, cols]` and labels.
struct IdxSplit {
    images: Vec<u8>,
    rows: usize,
    cols: usize,
    labels: Vec<u8>,
}

fn read_split(dir: &Path, prefix: &str) -> Result<IdxSplit> {
    let find = |kind: &str| {
        let name = format!("{prefix}-{kind}-ubyte");
        idx_file(dir, &name)
            .ok_or_else(|| TrainError::Data(format!("{}: missing {name}[.gz]", dir.display())))
    };
    let (image_path, label_path) = (find("images-idx3")?, find("labels-idx1")?);
    let (shape, images) = read_idx(&image_path, 3)?;
    let (count, labels) = read_idx(&label_path, 1)?;
    if count[0] != shape[0] {
        return Err(TrainError::Data(format!(
            "{} holds {} images but {} holds {} labels",
            image_path.display(),
            shape[0],
            label_path.display(),
            count[0]
        )));
    }
    Ok(IdxSplit {
        images,
        rows: shape[1],
        cols: shape[2],
        labels,
    })
}

/// Loads the `train` and `t10k` (test) IDX pairs of `dir` as grey images; the validation split
/// is carved from the training images. Class names are Fashion-MNIST's when the folder's name
/// says `fashion`, the digits otherwise.
///
/// # Errors
/// Missing files, a wrong magic number, truncated data, or image and label counts that differ.
pub fn load_idx(dir: &Path, options: &LoadOptions) -> Result<Dataset> {
    let splits = [read_split(dir, "train")?, read_split(dir, "t10k")?];
    let num_classes = splits
        .iter()
        .flat_map(|s| s.labels.iter())
        .max()
        .map_or(0, |&m| m as usize + 1);
    let fashion = dir
        .to_string_lossy()
        .to_ascii_lowercase()
        .contains("fashion");
    let class_names = (0..num_classes)
        .map(|c| match FASHION_MNIST_CLASSES.get(c) {
            Some(name) if fashion && num_classes == 10 => name.to_string(),
            _ => c.to_string(),
        })
        .collect();
    let items = splits
        .iter()
        .zip([Split::Train, Split::Test])
        .enumerate()
        .flat_map(|(which, (split, kind))| {
            split
                .labels
                .iter()
                .enumerate()
                .map(move |(i, &label)| Item {
                    label: label as usize,
                    split: Some(kind),
                    locator: (which, i),
                })
        })
        .collect();
    let source = dir.display().to_string();
    let chosen = choose(Listing { class_names, items }, options, &source)?;
    let decoded = chosen.splits.clone().map(|items| {
        items
            .iter()
            .map(|item| {
                let (which, i) = item.locator;
                let split = &splits[which];
                let len = split.rows * split.cols;
                let pixels = split.images[i * len..(i + 1) * len].to_vec();
                Image::new(split.cols, split.rows, 1, pixels)
                    .ok_or_else(|| "empty image".to_string())
            })
            .collect()
    });
    let names = ["train", "t10k"];
    Ok(assemble(chosen, decoded, |(which, i)| {
        format!("{source}/{}[{i}]", names[*which])
    }))
}
