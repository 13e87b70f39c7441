//! An image-text pair's image, from the log to the model's pixels: inline bytes as sent, or
//! the file at its URL ([`super::fetch`]), checked as intake checks it, decoded, and refused
//! when the model would have to resize too many pixels.

use gata_contract::{DecodedImage, ImagePayload, Limits};
use gata_dva::Clip;

use super::fetch::{FetchFailure, Fetcher};

/// An image as it reaches the decoder: inline, or the bytes fetched from its URL.
pub(super) enum Raw {
    Inline(ImagePayload),
    Fetched { bytes: Vec<u8>, content_type: String },
}

impl Raw {
    /// The checked image file (same limits and type check as intake's).
    pub(super) fn check(self, limits: &Limits) -> std::result::Result<DecodedImage, FetchFailure> {
        let checked = match self {
            Raw::Inline(payload) => payload.decode(limits),
            Raw::Fetched { bytes, content_type } => DecodedImage::check(bytes, &content_type, "image.url", limits),
        };
        checked.map_err(|v| FetchFailure {
            code: if v.too_large { "image_too_large" } else { "undecodable_image" },
            reason: format!("{}: {}", v.field, v.reason),
        })
    }
}

/// The pixels of a checked image file, refused when `clip` would have to resize more than
/// `max_pixels` of them.
pub(super) fn decode(
    image: &DecodedImage,
    max_pixels: u64,
    clip: &Clip,
) -> std::result::Result<gata_dva::Rgb, FetchFailure> {
    let rgb = gata_dva::decode(&image.bytes, max_pixels)
        .map_err(|e| FetchFailure { code: "undecodable_image", reason: e.to_string() })?;
    clip.preprocessing()
        .check(rgb.width, rgb.height, max_pixels)
        .map_err(|e| FetchFailure { code: "image_too_large", reason: e.to_string() })?;
    Ok(rgb)
}

/// The image of `payload` as the decoder needs it: inline bytes as they are, a URL's fetched.
/// Inline bytes are decoded once, off the runtime, by [`Raw::check`]; the pair's form (URL
/// included) was already checked when it was admitted.
pub(super) async fn raw(fetcher: &Fetcher, payload: &ImagePayload) -> std::result::Result<Raw, FetchFailure> {
    let Some(url) = &payload.url else { return Ok(Raw::Inline(payload.clone())) };
    let unreachable = |reason: String| FetchFailure { code: "image_unreachable", reason: format!("{url}: {reason}") };
    let parsed = url::Url::parse(url).map_err(|e| unreachable(e.to_string()))?;
    let bytes = fetcher.fetch(&parsed).await.map_err(|f| FetchFailure { code: f.code, ..unreachable(f.reason) })?;
    Ok(Raw::Fetched { bytes, content_type: payload.content_type.clone() })
}
