//! GNFD1-ECDSA, the request signature storage providers check (greenfield-common's
//! `GetMsgToSignInGNFD1Auth`): the canonical request — method, encoded path, sorted query, the
//! signed headers as `name:value` lines, the host, the signed header names — is hashed with
//! keccak-256 and signed with the account's secp256k1 key; the header reads
//! `Authorization: GNFD1-ECDSA, Signature=<hex of r ‖ s ‖ v>`.
//!
//! The signed headers are those of greenfield-common's list whose Go canonical form is the listed
//! spelling: a Go server canonicalizes incoming names, so `X-Gnfd-Object-ID` and `Content-MD5`
//! never match there and are not signed by either side here.

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::{
    GreenfieldError, Result,
    account::{Account, Address, keccak256, recover},
};

/// The scheme name in the `Authorization` header.
pub const SCHEME: &str = "GNFD1-ECDSA";
/// `X-Gnfd-Date`: when the request was signed.
pub const DATE: &str = "x-gnfd-date";
/// `X-Gnfd-Expiry-Timestamp`: until when the signature holds.
pub const EXPIRY: &str = "x-gnfd-expiry-timestamp";
/// `X-Gnfd-Content-Sha256`: the hex SHA-256 of a body the signature covers.
pub const CONTENT_SHA256: &str = "x-gnfd-content-sha256";
/// `X-Gnfd-Txn-Hash`: the transaction that created the object being uploaded.
pub const TXN_HASH: &str = "x-gnfd-txn-hash";
/// `X-Gnfd-User-Address`: the account the request acts for.
pub const USER_ADDRESS: &str = "x-gnfd-user-address";
/// SHA-256 of the empty string: what clients put in `X-Gnfd-Content-Sha256` for streamed bodies.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The longest validity a signature may claim (seven days).
pub const MAX_EXPIRY: chrono::Duration = chrono::Duration::days(7);
/// The date format of `X-Gnfd-Date` and `X-Gnfd-Expiry-Timestamp`.
const DATE_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Signed header names, sorted: greenfield-common's `supportHeads` as a Go server matches them.
const SIGNED: [&str; 11] = [
    "content-type",
    "range",
    CONTENT_SHA256,
    DATE,
    EXPIRY,
    "x-gnfd-piece-index",
    "x-gnfd-redundancy-index",
    "x-gnfd-resource",
    TXN_HASH,
    "x-gnfd-unsigned-msg",
    USER_ADDRESS,
];

/// Go's `url.QueryEscape`: everything but `A-Za-z0-9-_.~` escaped (space as `%20` once the
/// canonical form replaces `+`).
const QUERY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// greenfield-common's `EncodePath`: `A-Za-z0-9-_.~/` kept, every other UTF-8 byte `%XX`.
const PATH_ESCAPE: &AsciiSet = &QUERY_ESCAPE.remove(b'/');

/// A path as Greenfield encodes it in URLs and canonical requests (from its decoded form).
pub fn encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH_ESCAPE).to_string()
}

/// The parts of an HTTP request the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method.
    pub method: &'a Method,
    /// The path as sent (percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The host, with a port when not the scheme's default.
    pub host: &'a str,
    /// The headers.
    pub headers: &'a HeaderMap,
}

/// The canonical request string that is hashed and signed.
pub fn canonical_request(parts: RequestParts<'_>) -> String {
    let path = percent_decode_str(parts.path).decode_utf8_lossy();
    let mut query: Vec<(String, String)> = form_urlencoded_pairs(parts.query.unwrap_or(""));
    // Go's url.Values.Encode sorts by key, keeping each key's values in order.
    query.sort_by(|a, b| a.0.cmp(&b.0));
    let query = query
        .iter()
        .map(|(k, v)| format!("{}={}", utf8_percent_encode(k, QUERY_ESCAPE), utf8_percent_encode(v, QUERY_ESCAPE)))
        .collect::<Vec<_>>()
        .join("&");
    let mut out = format!("{}\n{}\n{}\n", parts.method, encode_path(&path), query);
    let mut signed = Vec::new();
    for name in SIGNED {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            continue;
        }
        out.push_str(&format!("{name}:{}\n", values.join(",")));
        signed.push(name);
    }
    out.push_str(parts.host);
    out.push_str("\n\n");
    out.push_str(&signed.join(";"));
    out
}

/// Splits `a=1&b=x+y` into decoded pairs, as Go's `url.ParseQuery` does.
fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (decode(k), decode(v))
        })
        .collect()
}

/// When a signature is made and how long it holds (at most [`MAX_EXPIRY`]).
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// The signing time (`X-Gnfd-Date`).
    pub now: DateTime<Utc>,
    /// How long after it the signature is accepted.
    pub valid_for: chrono::Duration,
}

/// Adds the date, expiry and content hash headers, then the `Authorization` header signing all.
pub fn sign(
    account: &Account,
    method: &Method,
    path: &str,
    query: Option<&str>,
    host: &str,
    headers: &mut HeaderMap,
    Validity { now, valid_for }: Validity,
) -> Result<()> {
    let stamp = |t: DateTime<Utc>| HeaderValue::from_str(&t.format(DATE_FORMAT).to_string()).expect("ASCII");
    headers.insert(DATE, stamp(now));
    headers.insert(EXPIRY, stamp(now + valid_for.min(MAX_EXPIRY)));
    if !headers.contains_key(CONTENT_SHA256) {
        headers.insert(CONTENT_SHA256, HeaderValue::from_static(EMPTY_SHA256));
    }
    let digest = keccak256(canonical_request(RequestParts { method, path, query, host, headers }).as_bytes());
    let signature = account.sign_digest(&digest)?;
    let value = format!("{SCHEME}, Signature={}", hex::encode(signature));
    headers.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&value).expect("ASCII"));
    Ok(())
}

/// Checks a signed request as a storage provider does: the scheme, the signature over the
/// canonical request, and an expiry in the future but at most [`MAX_EXPIRY`] away. Returns the
/// signer's address.
pub fn verify(parts: RequestParts<'_>, now: DateTime<Utc>) -> Result<Address> {
    let refuse = |reason: String| GreenfieldError::Signature(reason);
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refuse("no Authorization header".into()))?;
    let (scheme, rest) = auth.split_once(',').ok_or_else(|| refuse(format!("malformed Authorization {auth:?}")))?;
    if scheme.trim() != SCHEME {
        return Err(refuse(format!("unsupported scheme {:?}; expected {SCHEME}", scheme.trim())));
    }
    let signature =
        rest.trim().strip_prefix("Signature=").ok_or_else(|| refuse("Authorization lacks Signature=".into()))?;
    let signature = hex::decode(signature).map_err(|_| refuse("signature is not hex".into()))?;
    let expiry = parts
        .headers
        .get(EXPIRY)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::NaiveDateTime::parse_from_str(v, DATE_FORMAT).ok())
        .ok_or_else(|| refuse(format!("missing or malformed {EXPIRY}")))?
        .and_utc();
    if expiry < now {
        return Err(refuse(format!("signature expired at {expiry}")));
    }
    if expiry > now + MAX_EXPIRY {
        return Err(refuse(format!("expiry {expiry} is more than 7 days ahead")));
    }
    let digest = keccak256(canonical_request(parts).as_bytes());
    Ok(recover(&digest, &signature)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn canonical_request_follows_greenfield_common() {
        let h = headers(&[
            ("X-Gnfd-Date", "2024-01-02T03:04:05Z"),
            ("Content-Type", "application/octet-stream"),
            ("X-Gnfd-Content-Sha256", EMPTY_SHA256),
            ("X-Gnfd-Object-ID", "7"),
            ("Content-MD5", "abc"),
            ("User-Agent", "gata"),
            ("X-Gnfd-Expiry-Timestamp", "2024-01-02T03:09:05Z"),
            ("Range", "bytes=0-  9"),
        ]);
        let method = Method::PUT;
        let canonical = canonical_request(RequestParts {
            method: &method,
            path: "/gata/lake/silver%20chat/part-0.parquet",
            query: Some("payload_size=10&delegate&visibility=1&is_update=false&x=a+b"),
            host: "sp.example:9033",
            headers: &h,
        });
        assert_eq!(
            canonical,
            "PUT\n/gata/lake/silver%20chat/part-0.parquet\n\
             delegate=&is_update=false&payload_size=10&visibility=1&x=a%20b\n\
             content-type:application/octet-stream\n\
             range:bytes=0- 9\n\
             x-gnfd-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-gnfd-date:2024-01-02T03:04:05Z\n\
             x-gnfd-expiry-timestamp:2024-01-02T03:09:05Z\n\
             sp.example:9033\n\n\
             content-type;range;x-gnfd-content-sha256;x-gnfd-date;x-gnfd-expiry-timestamp"
        );
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let account =
            Account::from_private_key_hex("289c2857d4598e37fb9647507e47a309d6133539bf21a8b9cb6df88fd5232032").unwrap();
        let now = Utc::now();
        let mut h = headers(&[("Content-Type", "application/octet-stream")]);
        let method = Method::GET;
        let validity = Validity { now, valid_for: chrono::Duration::minutes(5) };
        sign(&account, &method, "/b/o", Some("object-meta"), "127.0.0.1:9", &mut h, validity).unwrap();
        fn parts<'a>(h: &'a HeaderMap, path: &'a str) -> RequestParts<'a> {
            RequestParts { method: &Method::GET, path, query: Some("object-meta"), host: "127.0.0.1:9", headers: h }
        }
        assert_eq!(verify(parts(&h, "/b/o"), now).unwrap(), account.address());
        assert_ne!(verify(parts(&h, "/b/other"), now).unwrap(), account.address());
        let mut typed = h.clone();
        typed.insert("content-type", HeaderValue::from_static("text/plain"));
        assert_ne!(verify(parts(&typed, "/b/o"), now).unwrap(), account.address());
        // Unsigned headers may change freely.
        let mut agent = h.clone();
        agent.insert("user-agent", HeaderValue::from_static("other"));
        assert_eq!(verify(parts(&agent, "/b/o"), now).unwrap(), account.address());
        let later = now + chrono::Duration::minutes(6);
        assert!(verify(parts(&h, "/b/o"), later).unwrap_err().to_string().contains("expired"));
        let mut bearer = h.clone();
        bearer.insert("authorization", HeaderValue::from_static("Bearer x"));
        assert!(verify(parts(&bearer, "/b/o"), now).is_err());
    }
}
