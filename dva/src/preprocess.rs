//! CLIP's image preprocessing, exactly: decode (PNG, JPEG, WebP), convert to RGB, resize the
//! shortest side to the model's size with bicubic filtering, centre-crop, normalise with the
//! model card's mean and std, lay out as CHW `f32`.
//!
//! The resize reproduces Pillow's `Image.resize(..., BICUBIC)` on 8-bit images — the one CLIP's
//! reference preprocessing uses — including its separable two-pass filter (horizontal, then
//! vertical), its kernel (a = −0.5, support widened by the downscale factor), its 22-bit
//! fixed-point coefficients and its rounding, so the pixels that reach the model are the
//! reference's pixels.

use crate::{DvaError, Result};

/// The preprocessing constants of a model (from its model card).
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessing {
    /// Side of the square input (224).
    pub size: u32,
    /// Per-channel mean (RGB).
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB).
    pub std: [f32; 3],
}

impl Default for Preprocessing {
    /// OpenAI CLIP's constants, digit for digit as published.
    #[allow(clippy::excessive_precision)]
    fn default() -> Self {
        Self {
            size: 224,
            mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            std: [0.268_629_54, 0.261_302_58, 0.275_777_11],
        }
    }
}

/// An 8-bit RGB image, rows top to bottom, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

/// Decodes PNG, JPEG or WebP bytes to RGB (alpha dropped, grey expanded), refusing images with
/// more than `max_pixels` pixels before decoding them.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<Rgb> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DvaError::Image(format!("cannot read the image: {e}")))?;
    let format = reader.format().ok_or_else(|| DvaError::Image("not a PNG, JPEG or WebP image".into()))?;
    if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::WebP) {
        return Err(DvaError::Image(format!("{format:?} images are not accepted; send PNG, JPEG or WebP")));
    }
    if format == image::ImageFormat::Jpeg && !ends_with_eoi(bytes) {
        // The JPEG decoder would fill the missing part with grey; Pillow refuses it, and so do we.
        return Err(DvaError::Image("truncated JPEG: no end-of-image marker".into()));
    }
    let (w, h) = reader.into_dimensions().map_err(|e| DvaError::Image(format!("corrupt {format:?}: {e}")))?;
    if w == 0 || h == 0 || u64::from(w) * u64::from(h) > max_pixels {
        return Err(DvaError::Image(format!("{w}x{h} is empty or larger than {max_pixels} pixels")));
    }
    let decoded = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| DvaError::Image(format!("corrupt {format:?}: {e}")))?
        .into_rgb8();
    Ok(Rgb { width: decoded.width(), height: decoded.height(), pixels: decoded.into_raw() })
}

/// Whether JPEG bytes end with the end-of-image marker (trailing zero padding allowed).
fn ends_with_eoi(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    bytes[..end].ends_with(&[0xff, 0xd9])
}

/// Pillow's bicubic kernel (a = −0.5).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point precision of Pillow's 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// For each output index: the first input index, and the fixed-point weights of the inputs
/// from there.
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

fn coefficients(in_size: usize, out_size: usize) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filter_scale;
        // C's (int) truncates toward zero; negative starts are clamped to 0 right after.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut total = 0.0;
        for (x, slot) in k.iter_mut().enumerate().take(xmax) {
            let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            *slot = w;
            total += w;
        }
        for (x, w) in k.iter().enumerate().take(xmax) {
            let w = if total != 0.0 { w / total } else { *w };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            weights[xx * ksize + x] = if fixed < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        bounds.push((xmin, xmax));
    }
    Coefficients { bounds, ksize, weights }
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes to `width` x `height` as Pillow's `resize(..., BICUBIC)` does on RGB images.
pub fn resize_bicubic(img: &Rgb, width: u32, height: u32) -> Rgb {
    let (in_w, in_h) = (img.width as usize, img.height as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let horizontal = out_w != in_w;
    let vertical = out_h != in_h;
    let cv = coefficients(in_h, out_h);
    // Rows of the source the vertical pass reads.
    let first = cv.bounds.first().map_or(0, |b| b.0);
    let last = cv.bounds.last().map_or(in_h, |b| b.0 + b.1);
    let round = 1i32 << (PRECISION_BITS - 1);

    // The source of the vertical pass: the image itself, or the horizontal pass's rows.
    let (mut src, mut src_w, mut row0) = (std::borrow::Cow::Borrowed(&img.pixels[..]), in_w, 0usize);
    if horizontal {
        let ch = coefficients(in_w, out_w);
        let rows = if vertical { first..last } else { 0..in_h };
        let mut out = Vec::with_capacity(rows.len() * out_w * 3);
        for y in rows.clone() {
            let line = &img.pixels[y * in_w * 3..(y + 1) * in_w * 3];
            for (xx, &(xmin, n)) in ch.bounds.iter().enumerate() {
                let k = &ch.weights[xx * ch.ksize..xx * ch.ksize + n];
                let mut acc = [round; 3];
                for (x, w) in k.iter().enumerate() {
                    let p = &line[(xmin + x) * 3..(xmin + x) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += i32::from(p[c]) * w;
                    }
                }
                out.extend(acc.map(clip8));
            }
        }
        (src, src_w, row0) = (std::borrow::Cow::Owned(out), out_w, rows.start);
    }
    if !vertical {
        return Rgb { width, height, pixels: src.into_owned() };
    }
    // Each output row sums whole source rows, weighted: the same integer sums as Pillow's
    // column by column (integer addition in any order), read row by row.
    let row_len = src_w * 3;
    let mut out = Vec::with_capacity(out_w * out_h * 3);
    let mut acc = vec![0i32; row_len];
    for (yy, &(ymin, n)) in cv.bounds.iter().enumerate() {
        acc.fill(round);
        for (y, &w) in cv.weights[yy * cv.ksize..yy * cv.ksize + n].iter().enumerate() {
            let start = (ymin - row0 + y) * row_len;
            for (a, p) in acc.iter_mut().zip(&src[start..start + row_len]) {
                *a += i32::from(*p) * w;
            }
        }
        out.extend(acc.iter().map(|a| clip8(*a)));
    }
    Rgb { width, height, pixels: out }
}

impl Preprocessing {
    /// The size the shortest side is resized to, and the other side, as torchvision computes
    /// it (`int(size * long / short)`).
    fn resized(&self, width: u32, height: u32) -> (u32, u32) {
        let s = u64::from(self.size);
        if height < width {
            ((s * u64::from(width) / u64::from(height)) as u32, self.size)
        } else {
            (self.size, (s * u64::from(height) / u64::from(width)) as u32)
        }
    }

    /// Refuses an image whose resize (shortest side to `size`, before the crop) would hold more
    /// than `max_pixels` pixels: a long thin image (8192 x 1) decodes cheaply but would resize to
    /// hundreds of millions of pixels. Call before [`Preprocessing::tensor`].
    pub fn check(&self, width: u32, height: u32, max_pixels: u64) -> Result<()> {
        let (short, long) = (u64::from(width.min(height)).max(1), u64::from(width.max(height)));
        let side = u64::from(self.size);
        let pixels = (side * long / short).saturating_mul(side);
        if pixels > max_pixels {
            return Err(DvaError::Image(format!(
                "a {width}x{height} image resizes to {pixels} pixels before the crop, more than the {max_pixels} allowed"
            )));
        }
        Ok(())
    }

    /// Resizes, centre-crops and normalises `img` into a `3 x size x size` CHW tensor.
    pub fn tensor(&self, img: &Rgb) -> Vec<f32> {
        let (w, h) = self.resized(img.width, img.height);
        let resized = resize_bicubic(img, w, h);
        let size = self.size as usize;
        let (top, left) = ((h as usize - size) / 2, (w as usize - size) / 2);
        // Each channel's normalised value of each of the 256 levels, computed once.
        let levels: [[f32; 256]; 3] = std::array::from_fn(|c| {
            std::array::from_fn(|v| ((v as f64 / 255.0 - f64::from(self.mean[c])) / f64::from(self.std[c])) as f32)
        });
        let mut out = vec![0f32; 3 * size * size];
        for y in 0..size {
            for x in 0..size {
                let p = ((top + y) * w as usize + left + x) * 3;
                for (c, level) in levels.iter().enumerate() {
                    out[c * size * size + y * size + x] = level[usize::from(resized.pixels[p + c])];
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_thin_images_are_refused_before_resizing() {
        let p = Preprocessing::default();
        assert!(p.check(640, 480, 40_000_000).is_ok());
        let err = p.check(8192, 1, 40_000_000).expect_err("8192x1 resizes to 411 M pixels");
        assert!(err.to_string().contains("more than the 40000000 allowed"), "{err}");
        assert!(p.check(1, 40_000_000, 40_000_000).is_err());
    }

    fn gradient(w: u32, h: u32) -> Rgb {
        let pixels =
            (0..h).flat_map(|y| (0..w).flat_map(move |x| [(x * 7 % 256) as u8, (y * 3 % 256) as u8, 128])).collect();
        Rgb { width: w, height: h, pixels }
    }

    #[test]
    fn weights_sum_to_one_and_identity_is_a_copy() {
        for (i, o) in [(655, 224), (224, 224), (100, 224), (7, 3)] {
            let c = coefficients(i, o);
            for (xx, &(_, n)) in c.bounds.iter().enumerate() {
                let sum: i64 = c.weights[xx * c.ksize..xx * c.ksize + n].iter().map(|w| i64::from(*w)).sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= n as i64, "{i}->{o} @ {xx}: {sum}");
            }
        }
        let img = gradient(30, 20);
        assert_eq!(resize_bicubic(&img, 30, 20), img);
    }

    #[test]
    fn the_shortest_side_becomes_the_size_and_the_crop_is_square() {
        let p = Preprocessing::default();
        assert_eq!(p.resized(655, 450), (326, 224));
        assert_eq!(p.resized(300, 400), (224, 298));
        let t = p.tensor(&gradient(300, 260));
        assert_eq!(t.len(), 3 * 224 * 224);
        // Blue is a flat 128: normalised identically everywhere.
        let blue = &t[2 * 224 * 224..];
        assert!(blue.iter().all(|v| (v - blue[0]).abs() < 1e-6));
    }

    #[test]
    fn junk_bytes_and_huge_images_are_refused() {
        assert!(matches!(decode(b"not an image", 1 << 24), Err(DvaError::Image(_))));
        let mut png = Vec::new();
        image::RgbImage::new(64, 64)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encode");
        assert_eq!(decode(&png, 1 << 24).expect("decodes").width, 64);
        assert!(matches!(decode(&png, 100), Err(DvaError::Image(_))));
        assert!(matches!(decode(&png[..40], 1 << 24), Err(DvaError::Image(_))));
        let mut jpeg = Vec::new();
        image::RgbImage::new(64, 64)
            .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .expect("encode");
        assert!(decode(&jpeg, 1 << 24).is_ok());
        let err = decode(&jpeg[..jpeg.len() - 10], 1 << 24).expect_err("truncated");
        assert!(err.to_string().contains("truncated JPEG"), "{err}");
    }
}
