//! Every data format on small generated data: image folders (flat, nested, with splits), zip
//! archives, CUB-200-2011, IDX files; splits, caps, unreadable images and bad layouts.
//!
//! Each image is a constant grey level that encodes its class (`40 · label`), so every test can
//! check that no image was given a wrong label. The split tests also make every image distinct
//! (by its size, or by its pixels for IDX), so an image loaded into two splits is seen.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use gs_lora_train::TrainError;
use gs_lora_train::classification::data::{Dataset, ImageSet, LoadOptions};
use gs_lora_train::image::Image;
use tempfile::TempDir;

/// A fresh, empty temporary directory for `name`, removed when dropped.
fn temp_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("gs-lora-data-{name}-"))
        .tempdir()
        .expect("temp dir")
}

/// The bytes of a `w × h` grey PNG of constant `level`.
fn png(level: u8, w: u32, h: u32) -> Vec<u8> {
    let image = image::GrayImage::from_pixel(w, h, image::Luma([level]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("png");
    bytes.into_inner()
}

/// The bytes of a `w × h` RGB JPEG of constant grey `level`.
fn jpeg(level: u8, w: u32, h: u32) -> Vec<u8> {
    let image = image::RgbImage::from_pixel(w, h, image::Rgb([level; 3]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Jpeg)
        .expect("jpeg");
    bytes.into_inner()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(path, bytes).expect("write");
}

/// Every image of `set` has the grey level of its label (JPEG within its rounding).
fn assert_labels_match_pixels(set: &ImageSet) {
    for (image, &label) in set.images.iter().zip(&set.labels) {
        let level = image.pixels()[0] as i32;
        assert!(
            (level - 40 * label as i32).abs() <= 2,
            "an image of level {level} is labelled {label}"
        );
    }
}

fn per_class(set: &ImageSet, classes: usize) -> Vec<usize> {
    (0..classes).map(|c| set.indices_of(&[c]).len()).collect()
}

#[test]
fn an_image_folder_without_splits_is_split_per_class_with_a_seed() {
    let root_dir = temp_dir("flat");
    let root = root_dir.path();
    for (class, name) in ["cat", "ant", "bee"].iter().enumerate() {
        let level = 40
            * ["ant", "bee", "cat"]
                .iter()
                .position(|n| n == name)
                .expect("name");
        for i in 0..10 {
            // Widths tell the images of a class apart.
            write(
                &root.join(name).join(format!("{i}.png")),
                &png(level as u8, 4 + i, 4),
            );
        }
        let _ = class;
    }
    write(&root.join("notes.txt"), b"not an image");
    let options = LoadOptions {
        val_fraction: 0.3,
        ..LoadOptions::default()
    };
    let data = Dataset::open(root, &options).expect("loads");
    assert_eq!(
        data.class_names,
        ["ant", "bee", "cat"],
        "classes in name order"
    );
    assert_eq!(per_class(&data.train, 3), [7, 7, 7]);
    assert_eq!(per_class(&data.val, 3), [3, 3, 3]);
    assert!(data.test.is_empty() && data.skipped.is_empty());
    assert_labels_match_pixels(&data.train);
    assert_labels_match_pixels(&data.val);
    let image = &data.train.images[0];
    assert_eq!(
        (image.height(), image.channels()),
        (4, 1),
        "grey PNGs stay grey at their size"
    );

    let again = Dataset::open(root, &options).expect("loads");
    assert_eq!(again, data, "the same seed gives the same split");
    let other = Dataset::open(
        root,
        &LoadOptions {
            seed: 1,
            ..options.clone()
        },
    )
    .expect("loads");
    assert_ne!(other.val, data.val, "another seed gives another split");

    let capped = Dataset::open(
        root,
        &LoadOptions {
            max_classes: Some(2),
            train_per_class: Some(4),
            eval_per_class: Some(1),
            max_side: Some(2),
            ..options
        },
    )
    .expect("loads");
    assert_eq!(capped.class_names, ["ant", "bee"]);
    assert_eq!(per_class(&capped.train, 2), [4, 4]);
    assert_eq!(per_class(&capped.val, 2), [1, 1]);
    let image = &capped.train.images[0];
    assert_eq!(image.height(), 2, "shrunk to a shorter side of 2");
    assert!(image.width() >= 2);
    assert_labels_match_pixels(&capped.train);
}

#[test]
fn split_folders_and_nested_classes_are_recognised() {
    let root_dir = temp_dir("splits");
    let root = root_dir.path();
    for split in ["train", "val", "test"] {
        for (label, class) in ["a/x", "a/y", "b/x"].iter().enumerate() {
            let count = if split == "train" { 4 } else { 2 };
            for i in 0..count {
                let bytes = jpeg(40 * label as u8, 8, 8);
                write(
                    &root.join(split).join(class).join(format!("{i}.jpg")),
                    &bytes,
                );
            }
        }
    }
    let data = Dataset::open(root, &LoadOptions::default()).expect("loads");
    assert_eq!(data.class_names, ["a/x", "a/y", "b/x"]);
    assert_eq!(per_class(&data.train, 3), [4, 4, 4]);
    assert_eq!(
        per_class(&data.val, 3),
        [2, 2, 2],
        "the val/ folder, nothing carved"
    );
    assert_eq!(per_class(&data.test, 3), [2, 2, 2]);
    assert_eq!(data.train.images[0].channels(), 3, "JPEGs are RGB");
    for set in [&data.train, &data.val, &data.test] {
        assert_labels_match_pixels(set);
    }
}

#[test]
fn a_zip_archive_of_a_folder_loads_like_the_folder() {
    let dir_dir = temp_dir("zip");
    let dir = dir_dir.path();
    let path = dir.join("glyphs.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).expect("zip file"));
    let options = zip::write::SimpleFileOptions::default();
    for (label, class) in [
        "Greek/character01",
        "Greek/character02",
        "Latin/character01",
    ]
    .iter()
    .enumerate()
    {
        for i in 0..5 {
            let name = format!("images_background/{class}/{i}.png");
            zip.start_file(name, options).expect("entry");
            zip.write_all(&png(40 * label as u8, 5, 5)).expect("write");
        }
    }
    zip.start_file("images_background/Latin/character01/broken.png", options)
        .expect("entry");
    zip.write_all(&png(0, 5, 5)[..20]).expect("write");
    zip.finish().expect("zip");

    let data = Dataset::open(
        &path,
        &LoadOptions {
            val_fraction: 0.2,
            ..LoadOptions::default()
        },
    )
    .expect("loads");
    assert_eq!(
        data.class_names,
        [
            "Greek/character01",
            "Greek/character02",
            "Latin/character01"
        ],
        "the shared top folder is not part of the class name"
    );
    assert_eq!(
        data.train.len() + data.val.len(),
        15,
        "the broken image is skipped"
    );
    assert_eq!(data.skipped.len(), 1);
    assert!(data.skipped[0].contains("broken.png"), "{:?}", data.skipped);
    assert_labels_match_pixels(&data.train);
    assert_labels_match_pixels(&data.val);
}

/// Writes a CUB-200-2011 layout under `root`: `per_class` distinct JPEGs for each class, image
/// `i` of a class in the official training split when `is_train(i)`; returns the images made
/// with the split the index files give them.
fn write_cub(
    root: &Path,
    classes: &[&str],
    per_class: usize,
    is_train: impl Fn(usize) -> bool,
) -> Vec<(Option<&'static str>, Signature)> {
    let (mut images, mut labels, mut split) = (String::new(), String::new(), String::new());
    let mut made = Vec::new();
    let mut id = 0;
    for (label, class) in classes.iter().enumerate() {
        for i in 0..per_class {
            let bytes = distinct(jpeg, label, id);
            id += 1;
            let path = format!("{class}/{class}_{i}.jpg");
            write(&root.join("images").join(&path), &bytes);
            images += &format!("{id} {path}\n");
            labels += &format!("{id} {}\n", label + 1);
            split += &format!("{id} {}\n", u8::from(is_train(i)));
            made.push((
                Some(if is_train(i) { "train" } else { "test" }),
                decoded(&bytes),
            ));
        }
    }
    write(&root.join("images.txt"), images.as_bytes());
    write(&root.join("image_class_labels.txt"), labels.as_bytes());
    write(&root.join("train_test_split.txt"), split.as_bytes());
    let class_list: String = classes
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} {c}\n", i + 1))
        .collect();
    write(&root.join("classes.txt"), class_list.as_bytes());
    made
}

#[test]
fn cub_keeps_its_test_split_and_carves_validation_from_train() {
    let root_dir = temp_dir("cub");
    let root = root_dir.path();
    let classes = ["001.Albatross", "002.Auklet"];
    write_cub(root, &classes, 6, |i| i < 4);

    let options = LoadOptions {
        val_fraction: 0.25,
        ..LoadOptions::default()
    };
    let data = Dataset::open(root, &options).expect("loads");
    assert_eq!(data.class_names, classes);
    assert_eq!(per_class(&data.train, 2), [3, 3]);
    assert_eq!(per_class(&data.val, 2), [1, 1]);
    assert_eq!(per_class(&data.test, 2), [2, 2]);
    for set in [&data.train, &data.val, &data.test] {
        assert_labels_match_pixels(set);
    }

    write(&root.join("train_test_split.txt"), b"1 1\n");
    let err = Dataset::open(root, &options).expect_err("image 2 has no split");
    assert!(err.to_string().contains("image 2"), "{err}");
    write(&root.join("classes.txt"), b"1\n");
    let err = Dataset::open(root, &options).expect_err("malformed");
    assert!(
        err.to_string().contains("classes.txt") && err.to_string().contains("line 1"),
        "{err}"
    );
}

/// An IDX file of unsigned bytes with `shape` and `data`.
fn idx(shape: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, shape.len() as u8];
    shape
        .iter()
        .for_each(|d| bytes.extend_from_slice(&d.to_be_bytes()));
    bytes.extend_from_slice(data);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

#[test]
fn idx_files_load_gzipped_or_raw_with_fashion_names() {
    let root_dir = temp_dir("fashion-idx");
    let root = root_dir.path();
    let labels: Vec<u8> = (0..20).map(|i| (i % 4) as u8).collect();
    let pixels: Vec<u8> = labels
        .iter()
        .flat_map(|&l| std::iter::repeat_n(40 * l, 9))
        .collect();
    write(
        &root.join("train-images-idx3-ubyte.gz"),
        &gzip(&idx(&[20, 3, 3], &pixels)),
    );
    write(
        &root.join("train-labels-idx1-ubyte.gz"),
        &gzip(&idx(&[20], &labels)),
    );
    write(
        &root.join("t10k-images-idx3-ubyte"),
        &idx(&[8, 3, 3], &pixels[..72]),
    );
    write(
        &root.join("t10k-labels-idx1-ubyte"),
        &idx(&[8], &labels[..8]),
    );
    let data = Dataset::open(root, &LoadOptions::default()).expect("loads");
    assert_eq!(
        data.class_names,
        ["0", "1", "2", "3"],
        "digits unless 10 classes"
    );
    assert_eq!(per_class(&data.train, 4), [4, 4, 4, 4]);
    assert_eq!(per_class(&data.val, 4), [1, 1, 1, 1]);
    assert_eq!(per_class(&data.test, 4), [2, 2, 2, 2]);
    for set in [&data.train, &data.val, &data.test] {
        assert_labels_match_pixels(set);
    }

    write(
        &root.join("t10k-labels-idx1-ubyte"),
        &idx(&[7], &labels[..7]),
    );
    let err = Dataset::open(root, &LoadOptions::default()).expect_err("counts differ");
    assert!(
        err.to_string().contains("8 images") && err.to_string().contains("7 labels"),
        "{err}"
    );
    write(
        &root.join("t10k-images-idx3-ubyte"),
        &idx(&[8, 3, 3], &pixels[..50]),
    );
    let err = Dataset::open(root, &LoadOptions::default()).expect_err("truncated");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn the_installed_fashion_mnist_loads_when_present() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.is_dir() {
        let message = format!(
            "{} is absent (apt install dataset-fashion-mnist)",
            dir.display()
        );
        // CI installs the package and sets GS_LORA_REQUIRE_DATA=1: there, absence is a failure.
        assert!(
            std::env::var("GS_LORA_REQUIRE_DATA").as_deref() != Ok("1"),
            "GS_LORA_REQUIRE_DATA=1 but {message}"
        );
        eprintln!("SKIPPED: {message}");
        return;
    }
    let options = LoadOptions {
        train_per_class: Some(5),
        eval_per_class: Some(3),
        ..LoadOptions::default()
    };
    let data = Dataset::open(dir, &options).expect("loads");
    assert_eq!(data.class_names[0], "T-shirt/top");
    assert_eq!(data.class_names[9], "Ankle boot");
    assert_eq!(
        (data.train.len(), data.val.len(), data.test.len()),
        (50, 30, 30)
    );
    let image = &data.train.images[0];
    assert_eq!(
        (image.width(), image.height(), image.channels()),
        (28, 28, 1)
    );
}

#[test]
fn bad_layouts_are_refused_with_the_path() {
    let message = |root: &Path| {
        Dataset::open(root, &LoadOptions::default())
            .expect_err("refused")
            .to_string()
    };
    let missing = temp_dir("missing").path().join("nothing-here");
    assert!(message(&missing).contains("nothing-here"));

    let empty_dir = temp_dir("empty");
    let empty = empty_dir.path();
    std::fs::create_dir_all(empty.join("cat")).expect("dir");
    assert!(message(empty).contains("no images"), "{}", message(empty));

    let loose_dir = temp_dir("loose");
    let loose = loose_dir.path();
    write(&loose.join("a.png"), &png(0, 2, 2));
    write(&loose.join("cat/b.png"), &png(0, 2, 2));
    assert!(
        message(loose).contains("class folders"),
        "{}",
        message(loose)
    );

    let no_train_dir = temp_dir("no-train");
    let no_train = no_train_dir.path();
    write(&no_train.join("train/cat/a.png"), &png(0, 2, 2));
    write(&no_train.join("val/dog/a.png"), &png(40, 2, 2));
    assert!(message(no_train).contains("`dog` has no training image"));

    let bad_fraction = LoadOptions {
        val_fraction: 1.0,
        ..LoadOptions::default()
    };
    let err = Dataset::open(no_train, &bad_fraction).expect_err("refused");
    assert!(
        matches!(
            err,
            TrainError::Setting {
                name: "val_fraction",
                ..
            }
        ) && err.to_string().contains("found 1")
    );
}

// Split disjointness: every test below makes each image distinct (its size, or for IDX its
// pixels), loads the source with several seeds, and checks that no image is in two splits,
// that every image is loaded exactly once, and that the source's own validation and test
// images stay in those splits.

/// An image's content (width, height, channels, pixels).
type Signature = (usize, usize, usize, Vec<u8>);

fn signature(image: &Image) -> Signature {
    (
        image.width(),
        image.height(),
        image.channels(),
        image.pixels().to_vec(),
    )
}

/// The signature of an encoded image, as the loaders decode it.
fn decoded(bytes: &[u8]) -> Signature {
    signature(&Image::decode(bytes).expect("decodes"))
}

/// Image `id` of class `label`, encoded by `encode` (`png` or `jpeg`): grey level `40 · label`
/// and a size, `(4 + id % 8) × (4 + id / 8)`, no other image of the test has.
fn distinct(encode: fn(u8, u32, u32) -> Vec<u8>, label: usize, id: usize) -> Vec<u8> {
    encode(40 * label as u8, 4 + (id % 8) as u32, 4 + (id / 8) as u32)
}

/// Asserts that the splits of `data` share no image, that together they hold each image of
/// `made` exactly once, and that an image the source puts in `val` or `test` is there (one in
/// `train`, or in no split of the source's, is in `train` or the validation carved from it).
fn assert_splits_disjoint(what: &str, data: &Dataset, made: &[(Option<&str>, Signature)]) {
    let sources: BTreeMap<&Signature, Option<&str>> =
        made.iter().map(|(split, sig)| (sig, *split)).collect();
    assert_eq!(
        sources.len(),
        made.len(),
        "{what}: the test's images are distinct"
    );
    let mut loaded: BTreeMap<Signature, &str> = BTreeMap::new();
    for (split, set) in [
        ("train", &data.train),
        ("val", &data.val),
        ("test", &data.test),
    ] {
        assert_labels_match_pixels(set);
        for image in &set.images {
            if let Some(first) = loaded.insert(signature(image), split) {
                panic!(
                    "{what}: the {}x{} image is in both {first} and {split}",
                    image.width(),
                    image.height()
                );
            }
        }
    }
    assert_eq!(
        loaded.len(),
        made.len(),
        "{what}: every image loaded exactly once"
    );
    for (sig, split) in &loaded {
        let source = sources
            .get(sig)
            .unwrap_or_else(|| panic!("{what}: a {}x{} image nobody made", sig.0, sig.1));
        let allowed: &[&str] = match source {
            Some("val") => &["val"],
            Some("test") => &["test"],
            _ => &["train", "val"],
        };
        assert!(
            allowed.contains(split),
            "{what}: a {}x{} image of the source's {source:?} split loaded into {split}",
            sig.0,
            sig.1
        );
    }
    assert!(!data.val.is_empty(), "{what}: a validation split to check");
}

/// Opens `path` with several seeds (the split is seeded) and checks its splits against `made`.
fn assert_disjoint_for_seeds(what: &str, path: &Path, made: &[(Option<&str>, Signature)]) {
    for seed in 0..4 {
        let options = LoadOptions {
            val_fraction: 0.3,
            seed,
            ..LoadOptions::default()
        };
        let data = Dataset::open(path, &options).expect("loads");
        assert_splits_disjoint(&format!("{what}, seed {seed}"), &data, made);
    }
}

/// The files of an image folder of three classes of distinct PNGs, as `(path, source split,
/// bytes)`: 7 per class, or with split folders 5 / 2 / 2 in `train/`, `val/`, `test/`.
fn image_tree(with_splits: bool) -> Vec<(String, Option<&'static str>, Vec<u8>)> {
    let splits: &[(Option<&'static str>, usize)] = if with_splits {
        &[(Some("train"), 5), (Some("val"), 2), (Some("test"), 2)]
    } else {
        &[(None, 7)]
    };
    let mut files = Vec::new();
    let mut id = 0;
    for (label, class) in ["ant", "bee", "cat"].iter().enumerate() {
        for &(split, count) in splits {
            for i in 0..count {
                let folder = split.map_or(String::new(), |s| format!("{s}/"));
                files.push((
                    format!("{folder}{class}/{i}.png"),
                    split,
                    distinct(png, label, id),
                ));
                id += 1;
            }
        }
    }
    files
}

fn made_of(
    files: &[(String, Option<&'static str>, Vec<u8>)],
) -> Vec<(Option<&'static str>, Signature)> {
    files
        .iter()
        .map(|(_, split, bytes)| (*split, decoded(bytes)))
        .collect()
}

/// Catches an image folder loader that puts one file in two splits, even with every count
/// right: e.g. `listing::choose` giving the first validation slot to a training image
/// (`group[0] = train[0].clone()` after `split_off`, tried: only the four split tests here
/// fail), or a `val/` or `test/` file also listed for training.
#[test]
fn image_folder_splits_share_no_image() {
    for with_splits in [false, true] {
        let root_dir = temp_dir(&format!("disjoint-folder-{with_splits}"));
        let root = root_dir.path();
        let files = image_tree(with_splits);
        for (path, _, bytes) in &files {
            write(&root.join(path), bytes);
        }
        let what = format!("image folder (split folders: {with_splits})");
        assert_disjoint_for_seeds(&what, root, &made_of(&files));
    }
}

/// The same for zip archives (entries under a shared top folder): catches the mutations above
/// and a zip reader that lists an entry twice.
#[test]
fn zip_archive_splits_share_no_image() {
    for with_splits in [false, true] {
        let dir_dir = temp_dir(&format!("disjoint-zip-{with_splits}"));
        let dir = dir_dir.path();
        let path = dir.join("images.zip");
        let files = image_tree(with_splits);
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).expect("zip file"));
        for (name, _, bytes) in &files {
            zip.start_file(
                format!("images/{name}"),
                zip::write::SimpleFileOptions::default(),
            )
            .expect("entry");
            zip.write_all(bytes).expect("write");
        }
        zip.finish().expect("zip");
        let what = format!("zip archive (split folders: {with_splits})");
        assert_disjoint_for_seeds(&what, &path, &made_of(&files));
    }
}

/// Catches a CUB loader that lets an official test image (`is_training_image` 0) into
/// training or validation (e.g. the split flag read inverted for some images, or `choose`
/// grouping a class's images without their source split), and validation carved with overlap
/// (the `group[0] = train[0].clone()` mutation above).
#[test]
fn cub_splits_share_no_image() {
    let root_dir = temp_dir("disjoint-cub");
    let root = root_dir.path();
    let made = write_cub(root, &["001.A", "002.B", "003.C"], 8, |i| i % 3 != 0);
    assert_disjoint_for_seeds("CUB-200", root, &made);
}

/// Catches an IDX loader that carves validation out of the `t10k` (test) images or gives a
/// training image to two splits (the `group[0] = train[0].clone()` mutation above): every image
/// has pixel 0 at its class's grey level and its other eight pixels at its own index.
#[test]
fn idx_splits_share_no_image() {
    let root_dir = temp_dir("disjoint-idx");
    let root = root_dir.path();
    let mut made = Vec::new();
    for (prefix, split, count, offset) in [("train", "train", 24, 0), ("t10k", "test", 9, 24)] {
        let labels: Vec<u8> = (0..count).map(|i| (i % 3) as u8).collect();
        let mut pixels = Vec::new();
        for (i, &label) in labels.iter().enumerate() {
            let mut image = vec![(offset + i) as u8; 9];
            image[0] = 40 * label;
            made.push((
                Some(split),
                signature(&Image::new(3, 3, 1, image.clone()).expect("3x3 grey")),
            ));
            pixels.extend(image);
        }
        write(
            &root.join(format!("{prefix}-images-idx3-ubyte")),
            &idx(&[count as u32, 3, 3], &pixels),
        );
        write(
            &root.join(format!("{prefix}-labels-idx1-ubyte")),
            &idx(&[count as u32], &labels),
        );
    }
    assert_disjoint_for_seeds("IDX", root, &made);
}
