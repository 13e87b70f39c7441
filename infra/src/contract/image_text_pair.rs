//! `image_text_pair.v1`: an image with its caption and provenance.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::validate::{Checker, Limits, Violation};

/// An image and the caption that describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageTextPair {
    /// Client-chosen id (UUIDv7 recommended); assigned by intake when absent.
    #[serde(default = "Uuid::now_v7")]
    pub event_id: Uuid,
    /// Who submitted it.
    pub contributor_id: String,
    /// When it was submitted (RFC 3339).
    pub occurred_at: DateTime<Utc>,
    /// What the image shows, in the contributor's words.
    pub caption: String,
    /// The image itself.
    pub image: ImagePayload,
    /// Where the image comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// The image's license (SPDX id such as `CC-BY-4.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

/// Image bytes inline, base64-encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagePayload {
    /// `image/png`, `image/jpeg`, `image/webp` or `image/gif`; must match the bytes.
    pub content_type: String,
    /// The image file, standard base64.
    pub base64: String,
}

/// Image formats the platform accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// WebP.
    Webp,
    /// GIF.
    Gif,
}

impl ImageFormat {
    /// The MIME type.
    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Webp => "image/webp",
            ImageFormat::Gif => "image/gif",
        }
    }

    fn sniff(bytes: &[u8]) -> Option<Self> {
        match imagesize::image_type(bytes).ok()? {
            imagesize::ImageType::Png => Some(ImageFormat::Png),
            imagesize::ImageType::Jpeg => Some(ImageFormat::Jpeg),
            imagesize::ImageType::Webp => Some(ImageFormat::Webp),
            imagesize::ImageType::Gif => Some(ImageFormat::Gif),
            _ => None,
        }
    }
}

/// A checked image: its bytes, format, size and content address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedImage {
    /// The image file.
    pub bytes: Vec<u8>,
    /// Its format, sniffed from the bytes.
    pub format: ImageFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Lower-case hex SHA-256 of the bytes: the content address.
    pub sha256: String,
}

impl ImagePayload {
    /// Decodes and checks the image: real base64, a supported format matching `content_type`,
    /// a readable header, within the size limits.
    pub fn decode(&self, limits: &Limits) -> Result<DecodedImage, Violation> {
        let max_b64 = limits.max_image_bytes.div_ceil(3) * 4 + 4;
        if self.base64.len() > max_b64 {
            return Err(Violation::too_large(
                "image.base64",
                format!("image is larger than {} bytes", limits.max_image_bytes),
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.base64.trim())
            .map_err(|e| Violation::new("image.base64", format!("is not valid base64: {e}")))?;
        if bytes.len() > limits.max_image_bytes {
            return Err(Violation::too_large(
                "image.base64",
                format!("image is {} bytes; at most {}", bytes.len(), limits.max_image_bytes),
            ));
        }
        let format = ImageFormat::sniff(&bytes)
            .ok_or_else(|| Violation::new("image.base64", "is not a PNG, JPEG, WebP or GIF image"))?;
        if format.content_type() != self.content_type {
            return Err(Violation::new(
                "image.content_type",
                format!("is {:?} but the bytes are {}", self.content_type, format.content_type()),
            ));
        }
        let size = imagesize::blob_size(&bytes)
            .map_err(|e| Violation::new("image.base64", format!("image header is unreadable: {e}")))?;
        let (width, height) = (size.width as u32, size.height as u32);
        let max = limits.max_image_side;
        if width == 0 || height == 0 || width > max || height > max {
            return Err(Violation::too_large(
                "image",
                format!("is {width}x{height} pixels; each side must be 1 to {max}"),
            ));
        }
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Ok(DecodedImage { bytes, format, width, height, sha256 })
    }
}

impl ImageTextPair {
    /// Every rule this pair breaks.
    pub fn violations(&self, limits: &Limits) -> Vec<Violation> {
        let mut c = Checker::new(limits);
        c.id("contributor_id", &self.contributor_id);
        c.timestamp("occurred_at", self.occurred_at);
        c.text("caption", &self.caption);
        if let Err(v) = self.image.decode(limits) {
            c.out.push(v);
        }
        if let Some(url) = &self.source_url {
            let ok = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            c.require(ok, "source_url", "must be an http(s) URL");
        }
        if let Some(license) = &self.license {
            c.id("license", license);
        }
        c.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_1x1() -> String {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, 1, 1);
            enc.set_color(png::ColorType::Rgb);
            let mut w = enc.write_header().expect("header");
            w.write_image_data(&[255, 0, 0]).expect("pixel");
        }
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    #[test]
    fn a_real_png_decodes_with_its_size_and_address() {
        let img = ImagePayload { content_type: "image/png".into(), base64: png_1x1() }
            .decode(&Limits::default())
            .expect("png");
        assert_eq!((img.width, img.height, img.format), (1, 1, ImageFormat::Png));
        assert_eq!(img.sha256.len(), 64);
    }

    #[test]
    fn not_an_image_mismatched_type_and_too_large_are_refused() {
        let limits = Limits::default();
        let text = base64::engine::general_purpose::STANDARD.encode(b"hello, not an image");
        let err = ImagePayload { content_type: "image/png".into(), base64: text }.decode(&limits).expect_err("text");
        assert!(err.reason.contains("not a PNG"));
        let err =
            ImagePayload { content_type: "image/jpeg".into(), base64: png_1x1() }.decode(&limits).expect_err("type");
        assert_eq!(err.field, "image.content_type");
        let small = Limits { max_image_bytes: 10, ..Limits::default() };
        let err = ImagePayload { content_type: "image/png".into(), base64: png_1x1() }.decode(&small).expect_err("big");
        assert!(err.too_large);
        let err =
            ImagePayload { content_type: "image/png".into(), base64: "!!!".into() }.decode(&limits).expect_err("b64");
        assert!(err.reason.contains("base64"));
    }
}
