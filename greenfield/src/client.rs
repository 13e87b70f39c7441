//! A storage-provider client: upload (with a creating transaction's hash, or delegated: the
//! provider creates the object on chain for the uploader), download (whole or a byte range),
//! object metadata and listing. Every request is signed with GNFD1-ECDSA; transport errors,
//! `429` and `5xx` answers are retried with exponential backoff.

use std::{ops::Range, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use crate::{
    GreenfieldError, Result,
    account::Account,
    auth::{self, Validity},
    xml::{ErrorBody, ListBody, ObjectInfo, ObjectMetaBody},
};

/// How to reach a storage provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpConfig {
    /// The provider's endpoint, e.g. `https://gnfd-testnet-sp1.bnbchain.org`.
    pub endpoint: Url,
    /// Attempts after the first for a failed request.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The first backoff; doubled on each retry, up to 30 s.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Per-request timeout.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_retries() -> u32 {
    4
}
fn default_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Who may read an uploaded object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Only the owner and those a policy grants.
    Private,
    /// Anyone.
    PublicRead,
    /// As the bucket says.
    Inherit,
}

impl Visibility {
    /// The number the `visibility` query parameter carries (Greenfield's `VisibilityType`).
    pub fn code(self) -> u8 {
        match self {
            Visibility::PublicRead => 1,
            Visibility::Private => 2,
            Visibility::Inherit => 3,
        }
    }
}

/// How an object is uploaded.
#[derive(Debug, Clone)]
pub enum Upload {
    /// The object was created on chain by this transaction (`MsgCreateObject`, carrying the
    /// object's integrity hashes, which the provider checks the payload against).
    Created {
        /// The creating transaction's hash.
        txn_hash: String,
    },
    /// The provider creates the object on chain itself, for the signer.
    Delegated {
        /// Who may read it.
        visibility: Visibility,
        /// Replace the content of an existing object instead of creating one.
        is_update: bool,
    },
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// The objects, by name.
    pub objects: Vec<ObjectInfo>,
    /// Pass to the next call for the next page; `None` when this was the last.
    pub next: Option<String>,
}

/// A signed client of one storage provider.
#[derive(Debug, Clone)]
pub struct SpClient {
    config: SpConfig,
    account: Account,
    http: reqwest::Client,
}

impl SpClient {
    /// A client signing as `account`.
    pub fn new(config: SpConfig, account: Account) -> Result<SpClient> {
        if !matches!(config.endpoint.scheme(), "http" | "https") || config.endpoint.host_str().is_none() {
            return Err(GreenfieldError::Config(format!("endpoint {} is not an http(s) URL", config.endpoint)));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| GreenfieldError::Config(format!("HTTP client: {e}")))?;
        Ok(SpClient { config, account, http })
    }

    /// The account requests are signed with.
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// Uploads `payload` as `bucket/object`.
    pub async fn put_object(
        &self,
        bucket: &str,
        object: &str,
        payload: Bytes,
        content_type: &str,
        upload: &Upload,
    ) -> Result<()> {
        check_object_name(object)?;
        let mut query = Vec::new();
        let mut headers = HeaderMap::new();
        match upload {
            Upload::Created { txn_hash } => {
                headers.insert(auth::TXN_HASH, header(txn_hash)?);
            }
            Upload::Delegated { visibility, is_update } => {
                query.push(("delegate".to_string(), String::new()));
                query.push(("is_update".to_string(), is_update.to_string()));
                query.push(("payload_size".to_string(), payload.len().to_string()));
                if !is_update {
                    query.push(("visibility".to_string(), visibility.code().to_string()));
                }
            }
        }
        headers.insert(http::header::CONTENT_TYPE, header(content_type)?);
        headers.insert(auth::CONTENT_SHA256, header(&hex::encode(Sha256::digest(&payload)))?);
        let target = Target { operation: "put", bucket, object, query };
        self.send(&target, Method::PUT, headers, Some(payload)).await?;
        Ok(())
    }

    /// Downloads `bucket/object`, or the byte `range` of it.
    pub async fn get_object(&self, bucket: &str, object: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        check_object_name(object)?;
        let mut headers = HeaderMap::new();
        if let Some(r) = range.filter(|r| !r.is_empty()) {
            headers.insert(http::header::RANGE, header(&format!("bytes={}-{}", r.start, r.end - 1))?);
        }
        let target = Target { operation: "get", bucket, object, query: Vec::new() };
        let response = self.send(&target, Method::GET, headers, None).await?;
        response.bytes().await.map_err(|source| target.transport(source))
    }

    /// The object's metadata, or `None` when there is no such object.
    pub async fn head_object(&self, bucket: &str, object: &str) -> Result<Option<ObjectInfo>> {
        check_object_name(object)?;
        let target = Target { operation: "head", bucket, object, query: vec![("object-meta".into(), String::new())] };
        match self.send(&target, Method::GET, HeaderMap::new(), None).await {
            Ok(response) => {
                let body: ObjectMetaBody = target.xml(response).await?;
                Ok((!body.object.removed).then_some(body.object.object_info))
            }
            Err(GreenfieldError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page (at most `max_keys`) of the objects whose name starts with `prefix`, after the
    /// page `continuation` ended (`None` for the first).
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        max_keys: u32,
        continuation: Option<&str>,
    ) -> Result<ListPage> {
        let query = vec![
            ("continuation-token".to_string(), continuation.unwrap_or("").to_string()),
            ("max-keys".to_string(), max_keys.to_string()),
            ("prefix".to_string(), prefix.to_string()),
        ];
        let target = Target { operation: "list", bucket, object: "", query };
        let response = self.send(&target, Method::GET, HeaderMap::new(), None).await?;
        let body: ListBody = target.xml(response).await?;
        Ok(ListPage {
            objects: body.objects.into_iter().filter(|o| !o.removed).map(|o| o.object_info).collect(),
            next: (body.is_truncated && !body.next_continuation_token.is_empty())
                .then_some(body.next_continuation_token),
        })
    }

    /// Every object whose name starts with `prefix`, following the pages.
    pub async fn list_all(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut all = Vec::new();
        let mut next = None;
        loop {
            let page = self.list_objects(bucket, prefix, 1000, next.as_deref()).await?;
            all.extend(page.objects);
            match page.next {
                Some(token) => next = Some(token),
                None => return Ok(all),
            }
        }
    }

    /// Sends a signed request, retrying transport errors, `429` and `5xx` with backoff.
    async fn send(
        &self,
        target: &Target<'_>,
        method: Method,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response> {
        let url = target.url(&self.config.endpoint);
        let host = host_of(&url);
        let mut attempt = 0;
        loop {
            let mut signed = headers.clone();
            let validity = Validity { now: chrono::Utc::now(), valid_for: chrono::Duration::minutes(15) };
            auth::sign(&self.account, &method, url.path(), url.query(), &host, &mut signed, validity)?;
            let mut request = self.http.request(method.clone(), url.clone()).headers(signed);
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let outcome = request.send().await;
            let retryable = match &outcome {
                Ok(r) => r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error(),
                Err(e) => e.is_connect() || e.is_timeout() || e.is_request(),
            };
            if retryable && attempt < self.config.retries {
                let wait = self.config.backoff.saturating_mul(1 << attempt.min(16)).min(Duration::from_secs(30));
                tracing::warn!(
                    operation = target.operation,
                    bucket = target.bucket,
                    object = target.object,
                    attempt,
                    ?wait,
                    "storage provider request failed; retrying"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            let response = outcome.map_err(|source| target.transport(source))?;
            if response.status().is_success() {
                return Ok(response);
            }
            return Err(target.refused(response).await);
        }
    }
}

/// Greenfield's object-name rules (greenfield `s3util.CheckValidObjectName`). Checked before
/// sending too: a URL library would silently resolve `a/../b` to another object.
pub fn check_object_name(name: &str) -> Result<()> {
    let bad = |reason: &str| GreenfieldError::ObjectName { name: name.to_string(), reason: reason.to_string() };
    if name.is_empty() || name.len() > 1024 {
        return Err(bad("an object name has 1 to 1024 bytes"));
    }
    if name.starts_with('/') || name.contains("//") || name.contains('\\') {
        return Err(bad("an object name must not start with '/' nor hold '//' or '\\'"));
    }
    if name.split('/').any(|part| part == ".." || part == ".") {
        return Err(bad("an object name must not hold '.' or '..' segments"));
    }
    Ok(())
}

/// A header value, or a config error naming it.
fn header(value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value).map_err(|_| GreenfieldError::Config(format!("{value:?} cannot be sent in a header")))
}

/// `host[:port]` as the Host header carries it (the port only when not the scheme's default).
fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// What one request addresses, for its URL and its errors.
struct Target<'a> {
    operation: &'static str,
    bucket: &'a str,
    object: &'a str,
    query: Vec<(String, String)>,
}

impl Target<'_> {
    /// Path-style URL: `{endpoint}/{bucket}/{object}?{query}`.
    fn url(&self, endpoint: &Url) -> Url {
        let mut url = endpoint.clone();
        let mut path = format!("/{}", self.bucket);
        if !self.object.is_empty() {
            path.push('/');
            path.push_str(&auth::encode_path(self.object));
        }
        url.set_path(&path);
        if self.query.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(self.query.iter());
        }
        url
    }

    fn name(&self) -> String {
        format!("{}/{}", self.bucket, self.object)
    }

    fn transport(&self, source: reqwest::Error) -> GreenfieldError {
        GreenfieldError::Transport { operation: self.operation, object: self.name(), source }
    }

    async fn refused(&self, response: reqwest::Response) -> GreenfieldError {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let (code, message) = match quick_xml::de::from_str::<ErrorBody>(&text) {
            Ok(body) => (body.code, body.message),
            Err(_) => ("Unknown".to_string(), text.chars().take(300).collect()),
        };
        GreenfieldError::Refused { operation: self.operation, object: self.name(), status, code, message }
    }

    async fn xml<T: serde::de::DeserializeOwned>(&self, response: reqwest::Response) -> Result<T> {
        let text = response.text().await.map_err(|source| self.transport(source))?;
        quick_xml::de::from_str(&text).map_err(|e| GreenfieldError::Answer {
            operation: self.operation,
            object: self.name(),
            reason: e.to_string(),
        })
    }
}

/// The continuation token of a listing that ended at `name`, as providers encode it.
pub fn continuation_token(name: &str) -> String {
    STANDARD.encode(name)
}
