//! The embedded detection set: scenes of a few coloured shapes on textured backgrounds,
//! generated from a seed, with exact boxes.
//!
//! A class is a shape and a colour (the shapes and colours of the classification set), so pairs
//! of classes differ in colour only. Each image holds one to `max_objects` objects of random
//! classes, sizes, rotations and shades that do not overlap, on a background of random colour,
//! stripes and noise. Boxes are the tight boxes of the painted pixels.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::dataset::{DetectionDataset, DetectionSample};
use super::matching::Target;
use crate::image::Image;
use crate::image::shapes::{COLOURS, SHAPES, shape_contains};
use gs_lora_core::lora::derive_seed;

/// Shapes used by the detection set (circle, bar, triangle, cross).
const DETECTION_SHAPES: usize = 4;
/// Colours used by the detection set (red, green).
const DETECTION_COLOURS: usize = 2;

/// The size of the embedded detection set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticScenesConfig {
    /// Side of the square RGB images.
    pub image_size: usize,
    /// Training images.
    pub train_images: usize,
    /// Validation images.
    pub val_images: usize,
    /// Most objects in one image (at least one).
    pub max_objects: usize,
    /// Seed of every random draw.
    pub seed: u64,
}

impl Default for SyntheticScenesConfig {
    fn default() -> Self {
        Self {
            image_size: 64,
            train_images: 2400,
            val_images: 400,
            max_objects: 3,
            seed: 0,
        }
    }
}

/// The generator of the embedded detection set: 8 classes (4 shapes × 2 colours).
#[derive(Debug, Clone, Copy, Default)]
pub struct SyntheticScenes;

impl SyntheticScenes {
    /// Number of classes.
    pub const NUM_CLASSES: usize = DETECTION_SHAPES * DETECTION_COLOURS;

    /// The name of class `class`, e.g. `green-triangle`.
    pub fn class_name(class: usize) -> String {
        let (shape, colour) = (class % DETECTION_SHAPES, class / DETECTION_SHAPES);
        format!("{}-{}", COLOURS[colour].0, SHAPES[shape])
    }

    /// Generates the dataset.
    pub fn generate(config: &SyntheticScenesConfig) -> DetectionDataset {
        let split = |split: u64, count: usize| -> Vec<DetectionSample> {
            (0..count)
                .into_par_iter()
                .map(|i| {
                    render_scene(
                        config,
                        derive_seed(derive_seed(config.seed, split), i as u64),
                    )
                })
                .collect()
        };
        DetectionDataset {
            class_names: (0..Self::NUM_CLASSES).map(Self::class_name).collect(),
            labels: (0..Self::NUM_CLASSES).collect(),
            train: split(0, config.train_images),
            val: split(1, config.val_images),
        }
    }
}

/// One object to paint: class, centre and radius in pixels, rotation, colour.
struct Placement {
    class: usize,
    centre: (f32, f32),
    radius: f32,
    angle: f32,
    rgb: [f32; 3],
}

impl Placement {
    fn contains(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.centre.0, y - self.centre.1);
        let (sin, cos) = self.angle.sin_cos();
        let (u, v) = (
            (cos * dx + sin * dy) / self.radius,
            (-sin * dx + cos * dy) / self.radius,
        );
        shape_contains(self.class % DETECTION_SHAPES, u, v)
    }
}

/// Draws up to `max_objects` non-overlapping placements (at least one).
fn place_objects(config: &SyntheticScenesConfig, rng: &mut ChaCha8Rng) -> Vec<Placement> {
    let s = config.image_size as f32;
    let count = rng.random_range(1..=config.max_objects.max(1));
    let mut placed: Vec<Placement> = Vec::with_capacity(count);
    for _ in 0..20 * count {
        if placed.len() == count {
            break;
        }
        let radius = s * rng.random_range(0.1..0.2);
        let centre = (
            rng.random_range(radius..s - radius),
            rng.random_range(radius..s - radius),
        );
        let apart = placed.iter().all(|p| {
            let (dx, dy) = (p.centre.0 - centre.0, p.centre.1 - centre.1);
            (dx * dx + dy * dy).sqrt() > 1.1 * (p.radius + radius)
        });
        let class = rng.random_range(0..SyntheticScenes::NUM_CLASSES);
        let angle = rng.random_range(0.0..std::f32::consts::TAU);
        let shade = rng.random_range(0.8..1.15f32);
        if apart {
            placed.push(Placement {
                class,
                centre,
                radius,
                angle,
                rgb: COLOURS[class / DETECTION_SHAPES]
                    .1
                    .map(|c| (c * shade).clamp(0.0, 1.0)),
            });
        }
    }
    placed
}

/// Renders one scene and measures each object's tight box.
fn render_scene(config: &SyntheticScenesConfig, seed: u64) -> DetectionSample {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let size = config.image_size;
    let placed = place_objects(config, &mut rng);
    let background: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.25..0.65));
    let stripe_angle = rng.random_range(0.0..std::f32::consts::PI);
    let stripe_period = rng.random_range(5.0..12.0f32);
    let stripe_depth = rng.random_range(0.0..0.12f32);
    let noise = rng.random_range(0.02..0.08f32);
    let (stripe_sin, stripe_cos) = stripe_angle.sin_cos();

    let mut extents = vec![(usize::MAX, usize::MAX, 0usize, 0usize); placed.len()];
    let mut pixels = vec![0u8; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let object = placed.iter().position(|p| p.contains(px, py));
            let stripe =
                (std::f32::consts::TAU * (stripe_cos * px + stripe_sin * py) / stripe_period).sin();
            for c in 0..3 {
                let base = match object {
                    Some(k) => placed[k].rgb[c],
                    None => background[c] + stripe_depth * stripe,
                };
                let value = base + noise * (rng.random::<f32>() - 0.5) * 2.0;
                pixels[(y * size + x) * 3 + c] = (value.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
            if let Some(k) = object {
                let e = &mut extents[k];
                *e = (e.0.min(x), e.1.min(y), e.2.max(x + 1), e.3.max(y + 1));
            }
        }
    }
    let s = size as f64;
    let objects = placed
        .iter()
        .zip(extents)
        .filter(|(_, (x0, _, x1, _))| x1 > x0)
        .map(|(p, (x0, y0, x1, y1))| Target {
            label: p.class,
            bbox: [
                (x0 + x1) as f64 / (2.0 * s),
                (y0 + y1) as f64 / (2.0 * s),
                (x1 - x0) as f64 / s,
                (y1 - y0) as f64 / s,
            ],
        })
        .collect();
    DetectionSample {
        image: Image::new(size, size, 3, pixels).expect("3 × size² values"),
        objects,
        crowd: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_enclose_exactly_the_painted_pixels_of_their_colour() {
        let config = SyntheticScenesConfig {
            train_images: 4,
            val_images: 0,
            ..SyntheticScenesConfig::default()
        };
        let data = SyntheticScenes::generate(&config);
        for sample in &data.train {
            assert!(!sample.objects.is_empty());
            for object in &sample.objects {
                let [cx, cy, w, h] = object.bbox.map(|v| v * 64.0);
                let (x0, y0) = (
                    (cx - w / 2.0).round() as usize,
                    (cy - h / 2.0).round() as usize,
                );
                let (x1, y1) = (
                    (cx + w / 2.0).round() as usize,
                    (cy + h / 2.0).round() as usize,
                );
                assert!(x0 < x1 && y0 < y1 && x1 <= 64 && y1 <= 64, "{object:?}");
                // The object's colour channel dominates somewhere inside its box.
                let channel = object.label / DETECTION_SHAPES;
                let strong = (y0..y1)
                    .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                    .filter(|&(x, y)| sample.image.at(x, y, channel) > 150)
                    .count();
                assert!(strong > 0, "{object:?}");
            }
        }
    }
}
