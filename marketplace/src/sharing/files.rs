//! Pre-signed file URLs: signed with HMAC-SHA256 over the answer id and expiry, served without
//! a bearer token, with range requests, streamed from disk.

use std::{
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

use aide::axum::{ApiRouter, routing::get_with};
use axum::{
    body::Body,
    extract::{Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
};
use gata_api::{
    PathParams,
    openapi::{IdPath, refusals_in},
};
use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::Deserialize;
use sha2::Sha256;

use super::{Answer, ShareErrorBody, Sharing, error, not_found};

/// The pre-signed file route (no bearer token: the signature is the credential).
pub fn router(sharing: Sharing) -> ApiRouter {
    ApiRouter::new()
        .api_route(
            "/delta-sharing/files/{id}",
            get_with(file, |op| {
                let op = op
                    .id("sharing_file")
                    .tag("delta-sharing")
                    .summary(
                        "A pre-signed Parquet file (no bearer token: expires and sig in the query are the \
                         credential); supports Range requests",
                    )
                    .response_with::<200, Vec<u8>, _>(|r| r.description("The file"))
                    .response_with::<206, Vec<u8>, _>(|r| r.description("The range asked for"));
                refusals_in::<ShareErrorBody>(op, &[403, 404])
            }),
        )
        .with_state(sharing)
}

/// Bytes read from disk per chunk of a served file.
const CHUNK: u64 = 64 << 10;

/// `len` bytes of the file at `path` from `start`, streamed in chunks.
async fn file_body(path: PathBuf, start: u64, len: u64) -> std::io::Result<Body> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let chunks = futures::stream::try_unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let n = left.min(CHUNK);
        let mut chunk = vec![0u8; n as usize];
        file.read_exact(&mut chunk).await?;
        Ok::<_, std::io::Error>(Some((axum::body::Bytes::from(chunk), (file, left - n))))
    });
    Ok(Body::from_stream(chunks))
}

/// HMAC-SHA256 (RFC 2104) of `data` under `key`.
fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The signature of a file URL: HMAC-SHA256 of `id/expires`, hex.
pub(super) fn sign(key: &[u8; 32], id: &str, expires: u64) -> String {
    hex::encode(hmac_sha256(key, format!("{id}/{expires}").as_bytes()))
}

/// The query of a pre-signed URL.
#[derive(Debug, Deserialize, JsonSchema)]
struct Signed {
    /// When the URL expires, in seconds since the epoch.
    expires: u64,
    /// Its signature.
    sig: String,
}

async fn file(
    State(s): State<Sharing>,
    PathParams(IdPath { id }): PathParams<IdPath>,
    signed: Result<Query<Signed>, QueryRejection>,
    headers: HeaderMap,
) -> Answer {
    let Ok(Query(signed)) = signed else {
        return Err(error(StatusCode::FORBIDDEN, "PERMISSION_DENIED", "a file URL needs its expires and sig"));
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let expected = sign(&s.key, &id, signed.expires);
    let same = gata_infra::auth::constant_time_eq(expected.as_bytes(), signed.sig.as_bytes());
    if !same || signed.expires < now || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "the URL's signature is not valid or it has expired",
        ));
    }
    let path = s.dir.join(format!("{id}.parquet"));
    let total = tokio::fs::metadata(&path).await.map_err(|_| not_found("file"))?.len();
    let range = headers.get(header::RANGE).and_then(|r| r.to_str().ok()).and_then(|r| byte_range(r, total));
    let (start, end) = range.unwrap_or((0, total.saturating_sub(1)));
    let len = if total == 0 { 0 } else { end - start + 1 };
    let body = file_body(path, start, len).await.map_err(|_| not_found("file"))?;
    // The length is known: clients such as fsspec seek only in files that state it.
    let kind = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (header::CONTENT_LENGTH, len.to_string()),
    ];
    Ok(match range {
        Some(_) => {
            let content_range = [(header::CONTENT_RANGE, format!("bytes {start}-{end}/{total}"))];
            (StatusCode::PARTIAL_CONTENT, kind, content_range, body).into_response()
        }
        None => (kind, body).into_response(),
    })
}

/// A single `bytes=a-b`, `bytes=a-` or `bytes=-n` range within `total` bytes, as (first, last).
pub fn byte_range(header: &str, total: u64) -> Option<(u64, u64)> {
    let spec = header.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => (total.checked_sub(n.parse().ok()?)?, total.checked_sub(1)?),
        (a, "") => (a.parse().ok()?, total.checked_sub(1)?),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(total.checked_sub(1)?)),
    };
    (start <= end && end < total).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 1 and 2.
        let tc1 = hmac_sha256(&[0x0b; 20], b"Hi There");
        assert_eq!(hex::encode(tc1), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        let tc2 = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(tc2), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let key = [7u8; 32];
        assert_ne!(sign(&key, "abc", 10), sign(&key, "abc", 11));
    }
}
