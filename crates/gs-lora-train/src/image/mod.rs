//! Images as both model families read them: one decoded image kept compactly (8-bit grey or
//! RGB at, at most, the size it is used at), its preprocessing into model inputs, and the
//! shapes the generated datasets draw.

mod preprocess;
pub(crate) mod shapes;

pub use preprocess::{Augment, Normalization, Preprocess};

use image::imageops::FilterType;
use image::{DynamicImage, ImageBuffer, Luma, Rgb};

/// An 8-bit image, rows of interleaved channels (`[H, W, C]`), grey (`C = 1`) or RGB (`C = 3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    width: usize,
    height: usize,
    channels: usize,
    pixels: Vec<u8>,
}

impl Image {
    /// An image from its pixels, `[height, width, channels]` row-major; `None` when the length
    /// does not match or `channels` is not 1 or 3.
    pub fn new(width: usize, height: usize, channels: usize, pixels: Vec<u8>) -> Option<Self> {
        let valid = matches!(channels, 1 | 3)
            && width > 0
            && height > 0
            && pixels.len() == width * height * channels;
        valid.then_some(Self {
            width,
            height,
            channels,
            pixels,
        })
    }

    /// Decodes a PNG or JPEG file's bytes; grey images stay grey, everything else becomes RGB.
    ///
    /// # Errors
    /// The decoder's message when the bytes are not a readable image (truncated, unknown format).
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let decoded = image::load_from_memory(bytes).map_err(|err| err.to_string())?;
        let (width, height) = (decoded.width() as usize, decoded.height() as usize);
        let grey = matches!(
            decoded,
            DynamicImage::ImageLuma8(_)
                | DynamicImage::ImageLumaA8(_)
                | DynamicImage::ImageLuma16(_)
                | DynamicImage::ImageLumaA16(_)
        );
        let (channels, pixels) = if grey {
            (1, decoded.into_luma8().into_raw())
        } else {
            (3, decoded.into_rgb8().into_raw())
        };
        Self::new(width, height, channels, pixels).ok_or_else(|| "the image is empty".to_string())
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// 1 (grey) or 3 (RGB).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The pixel values, `[H, W, C]` row-major.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The value of channel `channel` at column `x`, row `y`.
    pub fn at(&self, x: usize, y: usize, channel: usize) -> u8 {
        self.pixels[(y * self.width + x) * self.channels + channel]
    }

    /// This image resized (bilinear with antialiasing, as PIL's) so its shorter side is `side`,
    /// keeping the aspect ratio; `self` unchanged when it already is.
    pub fn resized_shorter(&self, side: usize) -> Image {
        let shorter = self.width.min(self.height);
        if shorter == side {
            return self.clone();
        }
        let scale = side as f64 / shorter as f64;
        let width = ((self.width as f64 * scale).round() as usize).max(side);
        let height = ((self.height as f64 * scale).round() as usize).max(side);
        self.resized(width, height)
    }

    /// This image resized to `width × height` (bilinear with antialiasing, as PIL's), the
    /// aspect ratio not kept.
    pub fn resized(&self, width: usize, height: usize) -> Image {
        let (w, h) = (self.width as u32, self.height as u32);
        let (nw, nh) = (width as u32, height as u32);
        let pixels = if self.channels == 1 {
            let buffer = ImageBuffer::<Luma<u8>, _>::from_raw(w, h, self.pixels.as_slice())
                .expect("length checked at construction");
            image::imageops::resize(&buffer, nw, nh, FilterType::Triangle).into_raw()
        } else {
            let buffer = ImageBuffer::<Rgb<u8>, _>::from_raw(w, h, self.pixels.as_slice())
                .expect("length checked at construction");
            image::imageops::resize(&buffer, nw, nh, FilterType::Triangle).into_raw()
        };
        Image {
            width,
            height,
            channels: self.channels,
            pixels,
        }
    }

    /// This image mirrored left to right.
    pub fn flipped_horizontally(&self) -> Image {
        let row = self.width * self.channels;
        let mut pixels = Vec::with_capacity(self.pixels.len());
        for line in self.pixels.chunks(row) {
            for pixel in line.chunks(self.channels).rev() {
                pixels.extend_from_slice(pixel);
            }
        }
        Image {
            pixels,
            ..self.clone()
        }
    }

    /// The `width × height` window of this image whose top-left pixel is `(left, top)`, or
    /// `None` when the window does not lie inside the image or is empty.
    pub fn cropped(&self, left: usize, top: usize, width: usize, height: usize) -> Option<Image> {
        if width == 0 || height == 0 || left + width > self.width || top + height > self.height {
            return None;
        }
        let row = self.width * self.channels;
        let mut pixels = Vec::with_capacity(width * height * self.channels);
        for y in top..top + height {
            let start = y * row + left * self.channels;
            pixels.extend_from_slice(&self.pixels[start..start + width * self.channels]);
        }
        Some(Image {
            width,
            height,
            channels: self.channels,
            pixels,
        })
    }

    /// This image shrunk so its shorter side is at most `side` (never enlarged): how loaders
    /// keep large photographs compact.
    pub fn shrunk_to(self, side: usize) -> Image {
        if self.width.min(self.height) > side {
            self.resized_shorter(side)
        } else {
            self
        }
    }
}
