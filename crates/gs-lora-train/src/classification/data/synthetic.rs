//! The embedded default dataset: fine-grained classes of rendered shapes, generated from a seed.
//!
//! A class is a combination of a shape, a colour and a texture, so classes come in families
//! that differ in one attribute only; inside a class the position, scale, rotation, colour
//! shade, background and noise vary. Generation is deterministic given the seed and runs in
//! parallel, one image per task, without any download.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use gs_lora_core::lora::derive_seed;

use super::{Dataset, ImageSet};
use crate::image::Image;
use crate::image::shapes::{COLOURS, SHAPES, shape_contains};

const TEXTURES: [&str; 3] = ["solid", "striped", "dotted"];

/// How many images of which size [`SyntheticShapes`] generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticShapesConfig {
    /// Side of the square RGB images.
    pub image_size: usize,
    /// Training images per class.
    pub train_per_class: usize,
    /// Validation images per class.
    pub val_per_class: usize,
    /// Test images per class.
    pub test_per_class: usize,
    /// Seed of every random draw.
    pub seed: u64,
}

impl Default for SyntheticShapesConfig {
    fn default() -> Self {
        Self {
            image_size: 32,
            train_per_class: 120,
            val_per_class: 20,
            test_per_class: 20,
            seed: 0,
        }
    }
}

/// The generator of the embedded dataset: 60 classes (5 shapes × 4 colours × 3 textures).
#[derive(Debug, Clone, Copy, Default)]
pub struct SyntheticShapes;

impl SyntheticShapes {
    /// Number of classes.
    pub const NUM_CLASSES: usize = SHAPES.len() * COLOURS.len() * TEXTURES.len();

    /// The name of class `class`, e.g. `striped-blue-triangle`.
    pub fn class_name(class: usize) -> String {
        let (shape, colour, texture) = Self::attributes(class);
        format!(
            "{}-{}-{}",
            TEXTURES[texture], COLOURS[colour].0, SHAPES[shape]
        )
    }

    fn attributes(class: usize) -> (usize, usize, usize) {
        let shape = class % SHAPES.len();
        let colour = (class / SHAPES.len()) % COLOURS.len();
        let texture = class / (SHAPES.len() * COLOURS.len());
        (shape, colour, texture)
    }

    /// Generates the dataset.
    pub fn generate(config: &SyntheticShapesConfig) -> Dataset {
        let split = |split: u64, per_class: usize| {
            let size = config.image_size;
            let images: Vec<(usize, Image)> = (0..Self::NUM_CLASSES * per_class)
                .into_par_iter()
                .map(|i| {
                    let class = i % Self::NUM_CLASSES;
                    let seed = derive_seed(derive_seed(config.seed, split), i as u64);
                    (class, render(class, size, seed))
                })
                .collect();
            let mut set = ImageSet::default();
            images
                .into_iter()
                .for_each(|(class, image)| set.push(image, class));
            set
        };
        Dataset {
            class_names: (0..Self::NUM_CLASSES).map(Self::class_name).collect(),
            train: split(0, config.train_per_class),
            val: split(1, config.val_per_class),
            test: split(2, config.test_per_class),
            skipped: Vec::new(),
            split_seed: config.seed,
            val_fraction: 0.0,
        }
    }
}

/// Renders one `size × size` RGB image of `class`.
fn render(class: usize, size: usize, seed: u64) -> Image {
    let (shape, colour, texture) = SyntheticShapes::attributes(class);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s = size as f32;
    let (cx, cy) = (
        s / 2.0 + rng.random_range(-0.15..0.15) * s,
        s / 2.0 + rng.random_range(-0.15..0.15) * s,
    );
    let radius = s * rng.random_range(0.3..0.42);
    let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let shade = rng.random_range(0.8..1.15f32);
    let rgb = COLOURS[colour].1.map(|c| (c * shade).clamp(0.0, 1.0));
    let background: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.3..0.6));
    let stripe_period = rng.random_range(4.0..5.5f32);
    let noise = rng.random_range(0.02..0.08f32);
    let (sin, cos) = angle.sin_cos();

    let mut pixels = vec![0u8; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            // Object frame: centred, rotated, in units of the radius.
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let (u, v) = (
                (cos * dx + sin * dy) / radius,
                (-sin * dx + cos * dy) / radius,
            );
            let inside = shape_contains(shape, u, v);
            let painted = inside
                && match texture {
                    0 => true,
                    1 => ((u * radius / stripe_period).floor() as i32).rem_euclid(2) == 0,
                    _ => {
                        let (fu, fv) = ((u * radius / 5.0).fract(), (v * radius / 5.0).fract());
                        let (fu, fv) = (fu.abs() - 0.5, fv.abs() - 0.5);
                        fu * fu + fv * fv <= 0.09
                    }
                };
            for c in 0..3 {
                let base = if painted {
                    rgb[c]
                } else if inside {
                    // Unpainted parts of a texture keep most of the colour, so the silhouette
                    // (the shape) stays visible under every texture.
                    0.7 * rgb[c] + 0.3 * background[c]
                } else {
                    background[c]
                };
                let value = base + noise * (rng.random::<f32>() - 0.5) * 2.0;
                pixels[(y * size + x) * 3 + c] = (value.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    Image::new(size, size, 3, pixels).expect("3 × size² values")
}
