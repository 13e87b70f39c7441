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
#[schemars(transform = crate::fresh_event_id)]
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
    /// The principal that submitted the event, recorded by intake (a client never sends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
    /// The author's EIP-712 signature (`0x` + 130 hex digits) over the event's canonical bytes
    /// ([`super::Event::signing_digest`]), checked by intake against `contributor_id`, an
    /// address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The image: its bytes inline (base64) or an `http(s)` URL the DVA fetches. Exactly one of
/// `base64` and `url` is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagePayload {
    /// `image/png`, `image/jpeg`, `image/webp` or `image/gif`; must match the bytes (for a URL:
    /// the bytes fetched).
    pub content_type: String,
    /// The image file, standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// Where to fetch the image file (`http` or `https`, at most 2048 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Longest image URL accepted.
pub const MAX_IMAGE_URL_BYTES: usize = 2048;

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

    /// The format with this MIME type.
    pub fn of_content_type(content_type: &str) -> Option<Self> {
        [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Webp, ImageFormat::Gif]
            .into_iter()
            .find(|f| f.content_type() == content_type)
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

/// Where a checked payload's image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckedImage {
    /// Inline, decoded and checked.
    Inline(DecodedImage),
    /// To be fetched from this URL (checked when fetched, by [`DecodedImage::check`]).
    Url(url::Url),
}

impl ImagePayload {
    /// Checks the payload: an inline image is decoded and checked whole ([`Self::decode`]); a
    /// URL must be `http(s)` with a host, and `content_type` one the platform accepts.
    pub fn check(&self, limits: &Limits) -> Result<CheckedImage, Violation> {
        match (&self.base64, &self.url) {
            (Some(_), None) => self.decode(limits).map(CheckedImage::Inline),
            (None, Some(url)) => {
                if url.len() > MAX_IMAGE_URL_BYTES {
                    return Err(Violation::too_large(
                        "image.url",
                        format!("is {} bytes; at most {MAX_IMAGE_URL_BYTES}", url.len()),
                    ));
                }
                let parsed = url::Url::parse(url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .ok_or_else(|| Violation::new("image.url", "must be an http(s) URL with a host"))?;
                if ImageFormat::of_content_type(&self.content_type).is_none() {
                    return Err(Violation::new(
                        "image.content_type",
                        format!("is {:?}; must be image/png, image/jpeg, image/webp or image/gif", self.content_type),
                    ));
                }
                Ok(CheckedImage::Url(parsed))
            }
            (Some(_), Some(_)) => Err(Violation::new("image", "give either base64 or url, not both")),
            (None, None) => Err(Violation::new("image", "needs base64 (the image inline) or url (where to fetch it)")),
        }
    }

    /// Decodes and checks an inline image: real base64, a supported format matching
    /// `content_type`, a readable header, within the size limits.
    pub fn decode(&self, limits: &Limits) -> Result<DecodedImage, Violation> {
        let b64 = self.base64.as_deref().ok_or_else(|| Violation::new("image.base64", "is missing"))?;
        let max_b64 = limits.max_image_bytes.div_ceil(3) * 4 + 4;
        if b64.len() > max_b64 {
            return Err(Violation::too_large(
                "image.base64",
                format!("image is larger than {} bytes", limits.max_image_bytes),
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| Violation::new("image.base64", format!("is not valid base64: {e}")))?;
        DecodedImage::check(bytes, &self.content_type, "image.base64", limits)
    }
}

impl DecodedImage {
    /// Checks an image file (`field` names where it came from in errors): within the size
    /// limits, a supported format matching `content_type`, a readable header.
    pub fn check(bytes: Vec<u8>, content_type: &str, field: &str, limits: &Limits) -> Result<DecodedImage, Violation> {
        if bytes.len() > limits.max_image_bytes {
            return Err(Violation::too_large(
                field,
                format!("image is {} bytes; at most {}", bytes.len(), limits.max_image_bytes),
            ));
        }
        let format =
            ImageFormat::sniff(&bytes).ok_or_else(|| Violation::new(field, "is not a PNG, JPEG, WebP or GIF image"))?;
        if format.content_type() != content_type {
            return Err(Violation::new(
                "image.content_type",
                format!("is {content_type:?} but the bytes are {}", format.content_type()),
            ));
        }
        let size = imagesize::blob_size(&bytes)
            .map_err(|e| Violation::new(field, format!("image header is unreadable: {e}")))?;
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
        if let Err(v) = self.image.check(limits) {
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

    fn inline(content_type: &str, base64: String) -> ImagePayload {
        ImagePayload { content_type: content_type.into(), base64: Some(base64), url: None }
    }

    fn by_url(content_type: &str, url: &str) -> ImagePayload {
        ImagePayload { content_type: content_type.into(), base64: None, url: Some(url.into()) }
    }

    #[test]
    fn urls_must_be_http_with_a_known_type_and_exclusive_with_inline_bytes() {
        let limits = Limits::default();
        let ok = by_url("image/jpeg", "https://images.example.org/latte.jpg").check(&limits).expect("url");
        assert!(matches!(ok, CheckedImage::Url(u) if u.host_str() == Some("images.example.org")));
        for (payload, field, says) in [
            (by_url("image/jpeg", "ftp://example.org/a.jpg"), "image.url", "http(s)"),
            (by_url("image/jpeg", "not a url"), "image.url", "http(s)"),
            (by_url("image/tiff", "https://example.org/a.tif"), "image.content_type", "must be image/png"),
            (by_url("image/png", &format!("https://example.org/{}", "a".repeat(3000))), "image.url", "at most"),
            (
                ImagePayload { url: Some("https://example.org/a.png".into()), ..inline("image/png", png_1x1()) },
                "image",
                "not both",
            ),
            (ImagePayload { content_type: "image/png".into(), base64: None, url: None }, "image", "needs base64"),
        ] {
            let err = payload.check(&limits).expect_err(field);
            assert_eq!(err.field, field, "{err:?}");
            assert!(err.reason.contains(says), "{err:?}");
        }
    }

    #[test]
    fn a_real_png_decodes_with_its_size_and_address() {
        let img = inline("image/png", png_1x1()).decode(&Limits::default()).expect("png");
        assert_eq!((img.width, img.height, img.format), (1, 1, ImageFormat::Png));
        assert_eq!(img.sha256.len(), 64);
    }

    #[test]
    fn not_an_image_mismatched_type_and_too_large_are_refused() {
        let limits = Limits::default();
        let text = base64::engine::general_purpose::STANDARD.encode(b"hello, not an image");
        let err = inline("image/png", text).decode(&limits).expect_err("text");
        assert!(err.reason.contains("not a PNG"));
        let err = inline("image/jpeg", png_1x1()).decode(&limits).expect_err("type");
        assert_eq!(err.field, "image.content_type");
        let small = Limits { max_image_bytes: 10, ..Limits::default() };
        let err = inline("image/png", png_1x1()).decode(&small).expect_err("big");
        assert!(err.too_large);
        let err = inline("image/png", "!!!".into()).decode(&limits).expect_err("b64");
        assert!(err.reason.contains("base64"));
    }
}
