//! Labelled image sets: the embedded synthetic default, split into train / validation / test.

mod synthetic;

pub use synthetic::{SyntheticShapes, SyntheticShapesConfig};

/// Images of one split, `[C, H, W]` each in `[0, 1]`, with their class labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageSet {
    /// Side length of the square images.
    pub image_size: usize,
    /// Channels per image.
    pub channels: usize,
    /// Pixel values, image after image, `C·H·W` each.
    pub pixels: Vec<f32>,
    /// Class of each image.
    pub labels: Vec<usize>,
}

impl ImageSet {
    /// An empty set of `channels × image_size × image_size` images.
    pub fn new(channels: usize, image_size: usize) -> Self {
        Self {
            image_size,
            channels,
            pixels: Vec::new(),
            labels: Vec::new(),
        }
    }

    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.image_size * self.image_size
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Appends one image.
    pub fn push(&mut self, pixels: &[f32], label: usize) {
        debug_assert_eq!(pixels.len(), self.image_len());
        self.pixels.extend_from_slice(pixels);
        self.labels.push(label);
    }

    /// The pixels of image `index`.
    pub fn image(&self, index: usize) -> &[f32] {
        let len = self.image_len();
        &self.pixels[index * len..(index + 1) * len]
    }

    /// Indices of the images whose class is in `classes`.
    pub fn indices_of(&self, classes: &[usize]) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| classes.contains(&self.labels[i]))
            .collect()
    }
}

/// A dataset with its class names and three splits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// Name of each class, indexed by label.
    pub class_names: Vec<String>,
    /// Training images.
    pub train: ImageSet,
    /// Validation images: model selection and reported metrics.
    pub val: ImageSet,
    /// Test images: never read by training or model selection.
    pub test: ImageSet,
}

impl Dataset {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
}
