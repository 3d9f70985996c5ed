//! What every loader shares: the listing of a source's images, the seeded choice of which
//! images go to which split, and the assembly of the decoded images into a [`Dataset`].

use std::collections::BTreeMap;

use gs_lora_core::lora::derive_seed;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{Dataset, Image, ImageSet, LoadOptions};
use crate::error::{Result, TrainError};

/// The split a source assigns an image to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Split {
    Train,
    Val,
    Test,
}

/// One image of a source, before decoding.
#[derive(Debug, Clone)]
pub(crate) struct Item<L> {
    /// Index into the listing's class names.
    pub label: usize,
    /// The source's split, `None` when it has none.
    pub split: Option<Split>,
    /// Where the loader finds the image (a path, an archive entry, an index).
    pub locator: L,
}

/// A source's classes and images.
#[derive(Debug, Clone)]
pub(crate) struct Listing<L> {
    pub class_names: Vec<String>,
    pub items: Vec<Item<L>>,
}

impl<L> Listing<L> {
    /// A listing of items named by class: classes are numbered in name order.
    pub fn by_class_name(items: Vec<(String, Option<Split>, L)>) -> Self {
        let mut names: BTreeMap<String, usize> =
            items.iter().map(|(name, _, _)| (name.clone(), 0)).collect();
        names
            .values_mut()
            .enumerate()
            .for_each(|(label, slot)| *slot = label);
        let items = items
            .into_iter()
            .map(|(name, split, locator)| Item {
                label: names[&name],
                split,
                locator,
            })
            .collect();
        Self {
            class_names: names.into_keys().collect(),
            items,
        }
    }
}

/// The items chosen for each split, in a deterministic order.
pub(crate) struct Chosen<L> {
    pub class_names: Vec<String>,
    pub splits: [Vec<Item<L>>; 3],
    pub split_seed: u64,
    /// The share of training images set aside for validation (0: the source's own split).
    pub val_fraction: f64,
}

/// Applies `options` to `listing`: keeps the first `max_classes` classes, carves a validation
/// split out of the training images when the source has none (`val_fraction` of each class,
/// seeded), and caps the images per class of each split.
pub(crate) fn choose<L: Clone>(
    listing: Listing<L>,
    options: &LoadOptions,
    source: &str,
) -> Result<Chosen<L>> {
    options.validate()?;
    let Listing {
        mut class_names,
        items,
    } = listing;
    if class_names.is_empty() || items.is_empty() {
        return Err(TrainError::Data(format!("{source}: no images found")));
    }
    let kept = options
        .max_classes
        .map_or(class_names.len(), |n| n.min(class_names.len()));
    class_names.truncate(kept);

    // Per class and source split, in listing order.
    let mut groups: BTreeMap<(usize, Option<Split>), Vec<Item<L>>> = BTreeMap::new();
    for item in items.into_iter().filter(|item| item.label < kept) {
        groups
            .entry((item.label, item.split))
            .or_default()
            .push(item);
    }
    let has_val = groups.keys().any(|(_, split)| *split == Some(Split::Val));
    let mut splits: [Vec<Item<L>>; 3] = Default::default();
    for ((label, split), mut group) in groups {
        group.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(
            options.seed,
            label as u64 * 4 + split.map_or(3, |s| s as u64),
        )));
        match split {
            Some(Split::Train) | None if !has_val => {
                let val = val_count(group.len(), options.val_fraction);
                let train = group.split_off(val);
                splits[Split::Val as usize].extend(cap(group, options.eval_per_class));
                splits[Split::Train as usize].extend(cap(train, options.train_per_class));
            }
            Some(Split::Train) | None => {
                splits[Split::Train as usize].extend(cap(group, options.train_per_class));
            }
            Some(split) => splits[split as usize].extend(cap(group, options.eval_per_class)),
        }
    }
    for (label, name) in class_names.iter().enumerate() {
        if !splits[Split::Train as usize]
            .iter()
            .any(|item| item.label == label)
        {
            return Err(TrainError::Data(format!(
                "{source}: class `{name}` has no training image"
            )));
        }
    }
    Ok(Chosen {
        class_names,
        splits,
        split_seed: options.seed,
        val_fraction: if has_val { 0.0 } else { options.val_fraction },
    })
}

/// Validation images of a class of `n` when a fraction goes to validation: rounded, at least
/// one when the fraction is positive, and never the class's last image.
fn val_count(n: usize, fraction: f64) -> usize {
    if fraction <= 0.0 || n < 2 {
        return 0;
    }
    ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
}

fn cap<L>(mut group: Vec<Item<L>>, limit: Option<usize>) -> Vec<Item<L>> {
    if let Some(limit) = limit {
        group.truncate(limit);
    }
    group
}

/// Builds the dataset from the chosen items and their decoded images (`Err` = unreadable,
/// with the reason, skipped and counted).
pub(crate) fn assemble<L>(
    chosen: Chosen<L>,
    decoded: [Vec<std::result::Result<Image, String>>; 3],
    describe: impl Fn(&L) -> String,
) -> Dataset {
    let mut skipped = Vec::new();
    let mut sets: [ImageSet; 3] = Default::default();
    for ((items, images), set) in chosen.splits.iter().zip(decoded).zip(&mut sets) {
        for (item, image) in items.iter().zip(images) {
            match image {
                Ok(image) => set.push(image, item.label),
                Err(reason) => skipped.push(format!("{}: {reason}", describe(&item.locator))),
            }
        }
    }
    if let Some(first) = skipped.first() {
        eprintln!(
            "warning: skipped {} unreadable image(s); first: {first}",
            skipped.len()
        );
    }
    let [train, val, test] = sets;
    Dataset {
        class_names: chosen.class_names,
        train,
        val,
        test,
        skipped,
        split_seed: chosen.split_seed,
        val_fraction: chosen.val_fraction,
    }
}

/// Decodes an image file's bytes and shrinks it to `options.max_side`.
pub(crate) fn decode(bytes: &[u8], options: &LoadOptions) -> std::result::Result<Image, String> {
    let image = Image::decode(bytes)?;
    Ok(match options.max_side {
        Some(side) => image.shrunk_to(side),
        None => image,
    })
}

/// Reads and decodes the chosen image files in parallel; a file over the size limit is
/// reported unreadable without being read.
pub(crate) fn decode_files(
    chosen: &Chosen<std::path::PathBuf>,
    options: &LoadOptions,
) -> Result<[Vec<std::result::Result<Image, String>>; 3]> {
    use rayon::prelude::*;
    let limits = gs_lora_core::Limits::from_env()?;
    Ok(chosen.splits.each_ref().map(|items| {
        items
            .par_iter()
            .map(|item| {
                let path = &item.locator;
                let size = std::fs::metadata(path)
                    .map_err(|err| err.to_string())?
                    .len();
                limits
                    .check_file(|| "the file".into(), size.into())
                    .map_err(|err| err.to_string())?;
                let bytes = std::fs::read(path).map_err(|err| err.to_string())?;
                decode(&bytes, options)
            })
            .collect()
    }))
}
