//! DETR's training augmentation (Deformable DETR `datasets/coco.py`, `make_coco_transforms`
//! for `train`; PROTOCOL §1 E10): a horizontal flip with probability ½, then with probability ½
//! a multi-scale resize, else a resize, a random crop and a multi-scale resize. Boxes follow the
//! image; a box the crop leaves without area is dropped, as DETR drops it.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::boxes::CxCyWh;
use super::dataset::DetectionSample;
use super::matching::Target;
use crate::image::Image;

/// DETR's shorter sides of the multi-scale resize at an 800-pixel reference: 480, 512, …, 800.
const SCALES: [usize; 11] = [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800];
/// DETR's cap on the longer side at the 800-pixel reference.
const MAX_SIZE: usize = 1333;
/// DETR's shorter sides before a crop at the 800-pixel reference.
const CROP_SCALES: [usize; 3] = [400, 500, 600];
/// DETR's smallest and largest crop side at the 800-pixel reference.
const CROP_RANGE: (usize, usize) = (384, 600);

/// DETR's training augmentation at one image scale (construct with [`DetrAugment::for_side`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DetrAugment {
    /// Shorter sides the multi-scale resize picks from.
    pub scales: Vec<usize>,
    /// Largest longer side after the multi-scale resize.
    pub max_size: usize,
    /// Shorter sides of the resize before a crop.
    pub crop_scales: Vec<usize>,
    /// Smallest and largest side of a crop.
    pub crop_range: (usize, usize),
    /// The smallest side an output may have (the model's smallest input): sizes scaled below
    /// it are raised to it.
    pub min_side: usize,
}

impl DetrAugment {
    /// DETR's sizes for images loaded at shorter side `side`, scaled by `side / 800` (800, the
    /// reference's own evaluation size, gives DETR's 480–800, 1333, 400–600 and 384–600), none
    /// below `min_side`.
    pub fn for_side(side: usize, min_side: usize) -> Self {
        let scale = |pixels: usize| {
            (((pixels * side) as f64 / 800.0).round() as usize).max(min_side.max(1))
        };
        Self {
            scales: SCALES.iter().map(|&s| scale(s)).collect(),
            max_size: scale(MAX_SIZE),
            crop_scales: CROP_SCALES.iter().map(|&s| scale(s)).collect(),
            crop_range: (scale(CROP_RANGE.0), scale(CROP_RANGE.1)),
            min_side,
        }
    }

    /// `sample` augmented with the draws of `seed` (crowd regions follow the image too).
    pub fn apply(&self, sample: &DetectionSample, seed: u64) -> DetectionSample {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = sample.clone();
        if rng.random_bool(0.5) {
            out = flipped(&out);
        }
        let cap = Some(self.max_size);
        if rng.random_bool(0.5) {
            resized(&out, pick(&self.scales, &mut rng), cap, self.min_side)
        } else {
            let out = resized(&out, pick(&self.crop_scales, &mut rng), None, self.min_side);
            let out = self.random_crop(&out, &mut rng);
            resized(&out, pick(&self.scales, &mut rng), cap, self.min_side)
        }
    }

    /// DETR's `RandomSizeCrop`: a window of random width and height in `crop_range` (at most
    /// the image's), at a random place.
    fn random_crop(&self, sample: &DetectionSample, rng: &mut ChaCha8Rng) -> DetectionSample {
        let (w, h) = (sample.image.width(), sample.image.height());
        let (low, high) = self.crop_range;
        let side = |extent: usize, rng: &mut ChaCha8Rng| {
            let top = high.min(extent);
            if low >= top {
                top
            } else {
                rng.random_range(low..=top)
            }
        };
        let (cw, ch) = (side(w, rng), side(h, rng));
        let left = rng.random_range(0..=w - cw);
        let top = rng.random_range(0..=h - ch);
        crop(sample, left, top, cw, ch)
    }
}

/// One of `sizes`, uniformly.
fn pick(sizes: &[usize], rng: &mut ChaCha8Rng) -> usize {
    *sizes.choose(rng).expect("DETR's size lists are not empty")
}

/// `sample` mirrored left to right: `cx → 1 − cx`.
fn flipped(sample: &DetectionSample) -> DetectionSample {
    let flip = |targets: &[Target]| -> Vec<Target> {
        targets
            .iter()
            .map(|t| Target {
                bbox: [1.0 - t.bbox[0], t.bbox[1], t.bbox[2], t.bbox[3]],
                ..*t
            })
            .collect()
    };
    DetectionSample {
        image: sample.image.flipped_horizontally(),
        objects: flip(&sample.objects),
        crowd: flip(&sample.crowd),
    }
}

/// DETR's `resize`: the shorter side to `size`, aspect kept, the size lowered so the longer
/// side stays within `max_size` (truncating as DETR's `int`) but not below `min_side` (the
/// longer side then passes the cap). Normalised boxes are unchanged.
fn resized(
    sample: &DetectionSample,
    size: usize,
    max_size: Option<usize>,
    min_side: usize,
) -> DetectionSample {
    let (w, h) = (sample.image.width(), sample.image.height());
    let (shorter, longer) = (w.min(h) as f64, w.max(h) as f64);
    let mut size = size as f64;
    if let Some(max) = max_size
        && longer / shorter * size > max as f64
    {
        size = (max as f64 * shorter / longer).round();
    }
    let size = size.max(min_side as f64);
    let (nw, nh) = if w < h {
        (size as usize, (size * h as f64 / w as f64) as usize)
    } else {
        ((size * w as f64 / h as f64) as usize, size as usize)
    };
    let (nw, nh) = (nw.max(1), nh.max(1));
    DetectionSample {
        image: if (nw, nh) == (w, h) {
            sample.image.clone()
        } else {
            sample.image.resized(nw, nh)
        },
        ..sample.clone()
    }
}

/// The `width × height` window at `(left, top)` (inside the image), boxes clipped to it and
/// those left without area dropped.
fn crop(
    sample: &DetectionSample,
    left: usize,
    top: usize,
    width: usize,
    height: usize,
) -> DetectionSample {
    let (w, h) = (sample.image.width() as f64, sample.image.height() as f64);
    let clip = |targets: &[Target]| -> Vec<Target> {
        targets
            .iter()
            .filter_map(|t| {
                let [cx, cy, bw, bh] = t.bbox;
                let x0 = ((cx - bw / 2.0) * w - left as f64).clamp(0.0, width as f64);
                let x1 = ((cx + bw / 2.0) * w - left as f64).clamp(0.0, width as f64);
                let y0 = ((cy - bh / 2.0) * h - top as f64).clamp(0.0, height as f64);
                let y1 = ((cy + bh / 2.0) * h - top as f64).clamp(0.0, height as f64);
                (x1 > x0 && y1 > y0).then(|| {
                    let bbox: CxCyWh = [
                        (x0 + x1) / 2.0 / width as f64,
                        (y0 + y1) / 2.0 / height as f64,
                        (x1 - x0) / width as f64,
                        (y1 - y0) / height as f64,
                    ];
                    Target { bbox, ..*t }
                })
            })
            .collect()
    };
    DetectionSample {
        image: window(&sample.image, left, top, width, height),
        objects: clip(&sample.objects),
        crowd: clip(&sample.crowd),
    }
}

/// The crop window of `image`; [`DetrAugment::random_crop`] only draws windows inside it.
fn window(image: &Image, left: usize, top: usize, width: usize, height: usize) -> Image {
    image
        .cropped(left, top, width, height)
        .expect("the window lies inside the image")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 40 × 20 image whose pixel value is its column, with one box over columns 4–12 and
    /// rows 2–10 (normalised `[0.2, 0.3, 0.2, 0.4]`) and a crowd region on the right half.
    fn sample() -> DetectionSample {
        let pixels: Vec<u8> = (0..20)
            .flat_map(|_| (0..40u8).flat_map(|x| [x, x, x]))
            .collect();
        DetectionSample {
            image: Image::new(40, 20, 3, pixels).expect("image"),
            objects: vec![Target {
                label: 1,
                bbox: [0.2, 0.3, 0.2, 0.4],
            }],
            crowd: vec![Target {
                label: 0,
                bbox: [0.75, 0.5, 0.5, 1.0],
            }],
        }
    }

    fn close(a: [f64; 4], b: [f64; 4]) {
        assert!(
            a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9),
            "{a:?} vs {b:?}"
        );
    }

    /// The flip mirrors pixels and moves `cx` to `1 − cx`. Catches the box left in place or
    /// its width changed.
    #[test]
    fn a_flip_mirrors_pixels_and_boxes() {
        let flipped = flipped(&sample());
        assert_eq!(flipped.image.at(0, 5, 0), 39);
        assert_eq!(flipped.image.at(39, 5, 2), 0);
        close(flipped.objects[0].bbox, [0.8, 0.3, 0.2, 0.4]);
        close(flipped.crowd[0].bbox, [0.25, 0.5, 0.5, 1.0]);
    }

    /// A crop keeps the window's pixels and clips boxes to it by hand: the box (x 4–12, y 2–10)
    /// in the window x 8–28, y 4–14 becomes x 0–4, y 0–6 of 20 × 10; a window past it drops it.
    /// Catches boxes not shifted, not clipped, or kept without area.
    #[test]
    fn a_crop_clips_and_drops_boxes() {
        let cropped = crop(&sample(), 8, 4, 20, 10);
        assert_eq!((cropped.image.width(), cropped.image.height()), (20, 10));
        assert_eq!(cropped.image.at(0, 0, 0), 8);
        close(cropped.objects[0].bbox, [0.1, 0.3, 0.2, 0.6]);
        // Crowd region x 20–40 in the window x 8–28: x 12–20 of 20.
        close(cropped.crowd[0].bbox, [0.8, 0.5, 0.4, 1.0]);
        let past = crop(&sample(), 14, 0, 20, 20);
        assert!(past.objects.is_empty(), "{:?}", past.objects);
    }

    /// DETR's resize arithmetic: shorter side to the size, longer truncated, and the size
    /// lowered when the longer side would pass the cap (`round(max · short / long)`).
    #[test]
    fn a_resize_follows_detr_sizes() {
        let image = |s: &DetectionSample| (s.image.width(), s.image.height());
        assert_eq!(image(&resized(&sample(), 30, None, 1)), (60, 30));
        // 40 × 20 to shorter 30 with the longer capped at 50: size round(50 · 20 / 40) = 25.
        assert_eq!(image(&resized(&sample(), 30, Some(50), 1)), (50, 25));
        // ... but never below the smallest side.
        assert_eq!(image(&resized(&sample(), 30, Some(50), 28)), (56, 28));
        close(
            resized(&sample(), 30, None, 1).objects[0].bbox,
            sample().objects[0].bbox,
        );
    }

    /// Scaled sizes, and draws that repeat for a seed and vary over seeds, every output within
    /// the sizes and at least the smallest side. Catches an unseeded draw, sizes outside DETR's
    /// lists, and outputs the model cannot read.
    #[test]
    fn augmentation_is_seeded_and_keeps_detr_sizes() {
        let reference = DetrAugment::for_side(800, 32);
        assert_eq!(reference.scales.first(), Some(&480));
        assert_eq!(
            (reference.max_size, reference.crop_range),
            (1333, (384, 600))
        );
        let small = DetrAugment::for_side(16, 1);
        assert_eq!(small.scales[0], 10, "480 · 16 / 800 = 9.6");
        let augment = DetrAugment::for_side(20, 11);
        assert_eq!(augment.scales[0], 12);
        assert_eq!(
            augment.crop_scales[0], 11,
            "400 · 20 / 800 = 10, raised to 11"
        );
        let a = augment.apply(&sample(), 3);
        assert_eq!(a, augment.apply(&sample(), 3));
        let shapes: std::collections::HashSet<(usize, usize)> = (0..40)
            .map(|seed| {
                let out = augment.apply(&sample(), seed);
                let (w, h) = (out.image.width(), out.image.height());
                assert!(w.min(h) >= 11, "{w} × {h}");
                assert!(
                    augment.scales.contains(&w.min(h)) || w.max(h) <= augment.max_size,
                    "{w} × {h}"
                );
                (w, h)
            })
            .collect();
        assert!(shapes.len() > 2, "{shapes:?}");
    }
}
