//! A loopback storage provider for tests and local runs, enforcing what a real provider
//! enforces on the requests this client makes:
//!
//! - every object request is signed with GNFD1-ECDSA, unexpired, and the recovered signer is
//!   who it acts for (anonymous reads only of public objects; metadata and listings are chain
//!   data and public, but a signature given must still verify);
//! - uploads: the bucket exists; the signer owns it or holds a write grant; the object name is
//!   valid; a delegated upload's `payload_size` is the body's length; an existing object is
//!   refused unless `is_update`; an upload naming a creating transaction is refused unless the
//!   emulated chain knows it, and then the payload must match its integrity hashes; a body
//!   whose `X-Gnfd-Content-Sha256` is not the empty-string hash must hash to it;
//! - downloads of private objects: the owner, or an account the bucket's or object's policy
//!   allows to read; ranges are served as `206`.
//!
//! Objects and their integrity hashes (computed as Greenfield computes them) live in memory.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::Utc;
use sha2::{Digest, Sha256};

mod chain;

use chain::{account, broadcast, head_object};

use crate::{
    Address,
    auth::{self, RequestParts},
    chain::AccountState,
    client::{check_object_name, continuation_token},
    integrity_hashes,
    policy::{Action, EFFECT_ALLOW, EFFECT_DENY, Statement, bucket_grn, object_grn},
    tags::Tag,
    xml::{ErrorBody, ListBody, ObjectInfo, ObjectMeta, ObjectMetaBody},
};

/// The chain id the emulator answers as.
pub const CHAIN_ID: &str = "greenfield_9000-121";

/// An object created on chain by a transaction and not yet uploaded.
#[derive(Debug, Clone)]
pub struct PendingObject {
    /// Its bucket.
    pub bucket: String,
    /// Its name.
    pub object: String,
    /// Its owner (the transaction's signer).
    pub owner: Address,
    /// The size the transaction declared.
    pub size: u64,
    /// The integrity hashes the transaction declared.
    pub checksums: Vec<[u8; 32]>,
    /// Public or private.
    pub public: bool,
    /// The declared content type.
    pub content_type: String,
}

#[derive(Debug, Default)]
struct Bucket {
    owner: Option<Address>,
    objects: BTreeMap<String, Stored>,
}

#[derive(Debug, Clone)]
struct Stored {
    info: ObjectInfo,
    public: bool,
    payload: Bytes,
    /// Set by `MsgSetTag`.
    tags: Vec<Tag>,
}

#[derive(Debug, Default)]
struct Chain {
    buckets: HashMap<String, Bucket>,
    /// Creating transactions by hash (lowercase hex).
    pending: HashMap<String, PendingObject>,
    /// Policies by resource GRN and principal account.
    policies: HashMap<(String, Address), Vec<Statement>>,
    /// Accounts by address: number and sequence.
    accounts: HashMap<Address, AccountState>,
    /// `(bucket)` → accounts allowed to create objects besides the owner.
    writers: HashMap<String, Vec<Address>>,
    next_id: u64,
}

/// The emulator's shared state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Emulator {
    chain: Arc<Mutex<Chain>>,
    /// The provider's own address: the creator of delegated uploads.
    operator: Address,
    chain_id: String,
}

impl Emulator {
    /// An emulator whose delegated uploads are created by `operator`, its chain answering as
    /// [`CHAIN_ID`].
    pub fn new(operator: Address) -> Emulator {
        Emulator { chain: Arc::default(), operator, chain_id: CHAIN_ID.to_string() }
    }

    /// The emulated chain's id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    fn chain(&self) -> MutexGuard<'_, Chain> {
        self.chain.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates `bucket` owned by `owner` (what `MsgCreateBucket` does on chain).
    pub fn create_bucket(&self, bucket: &str, owner: Address) {
        self.chain().buckets.entry(bucket.to_string()).or_default().owner = Some(owner);
    }

    /// Lets `account` create objects in `bucket`.
    pub fn allow_write(&self, bucket: &str, account: Address) {
        self.chain().writers.entry(bucket.to_string()).or_default().push(account);
    }

    /// Records an object created on chain by transaction `txn_hash`, awaiting its upload.
    pub fn record_created(&self, txn_hash: &str, object: PendingObject) {
        self.chain().pending.insert(txn_hash.to_ascii_lowercase(), object);
    }

    /// The router: `/{bucket}` lists, `/{bucket}/{*object}` uploads, downloads and answers
    /// `?object-meta`; the chain's gateway answers `/cosmos/auth/v1beta1/accounts/{address}`
    /// `/cosmos/tx/v1beta1/txs` and `/greenfield/storage/head_object/{bucket}/{object}` on the same
    /// address.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/cosmos/auth/v1beta1/accounts/{address}", get(account))
            .route("/cosmos/tx/v1beta1/txs", post(broadcast))
            .route("/greenfield/storage/head_object/{bucket}/{*object}", get(head_object))
            .route("/{bucket}", get(list))
            .route("/{bucket}/{*object}", get(read).put(upload))
            .with_state(self.clone())
    }

    /// Serves on `addr` until the process ends; returns the bound address at once.
    pub async fn spawn(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let router = self.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "storage-provider emulator stopped");
            }
        });
        Ok(bound)
    }

    /// Whether a policy lets `account` read `bucket/object`: an allowing statement for
    /// `ACTION_GET_OBJECT` (or all actions) in the object's policy, or in the bucket's policy with
    /// a resource pattern matching the object's name (matched as the chain matches it: a regular
    /// expression found anywhere in the name), unexpired, and no denying one.
    fn may_read(chain: &Chain, bucket: &str, object: &str, account: Address) -> bool {
        let name = object_grn(bucket, object);
        let now = Utc::now().timestamp();
        let object_policy = chain.policies.get(&(name.clone(), account)).into_iter().flatten();
        let bucket_policy = chain
            .policies
            .get(&(bucket_grn(bucket), account))
            .into_iter()
            .flatten()
            .filter(|s| s.resources.iter().any(|r| regex::Regex::new(r).is_ok_and(|r| r.is_match(&name))));
        let mut allowed = false;
        for statement in object_policy.chain(bucket_policy) {
            let lapsed = statement.expiration_time.as_ref().is_some_and(|t| t.seconds <= now);
            if lapsed || !statement.covers(Action::GetObject) {
                continue;
            }
            if statement.effect == EFFECT_DENY {
                return false;
            }
            allowed |= statement.effect == EFFECT_ALLOW;
        }
        allowed
    }

    /// The state of `address`, opened (as if funded) on first use.
    fn account_state(chain: &mut Chain, address: Address) -> AccountState {
        let next = chain.accounts.len() as u64 + 1;
        *chain.accounts.entry(address).or_insert(AccountState { number: next, sequence: 0 })
    }
}

/// An error answer as providers send it.
fn refuse(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ErrorBody { code: code.to_string(), message: message.into() };
    let xml = quick_xml::se::to_string(&body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/xml")], xml).into_response()
}

fn xml_answer<T: serde::Serialize>(body: &T) -> Response {
    match quick_xml::se::to_string(body) {
        Ok(xml) => ([(header::CONTENT_TYPE, "application/xml")], xml).into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()),
    }
}

/// The signer of `request`, `None` when unsigned, or why its signature is refused.
fn signer(method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> Result<Option<Address>, String> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let parts = RequestParts { method, path: uri.path(), query: uri.query(), host, headers };
    let address = auth::verify(parts, Utc::now()).map_err(|e| e.to_string())?;
    let claimed = headers.get(auth::USER_ADDRESS).and_then(|v| v.to_str().ok());
    if claimed.is_some_and(|claimed| claimed.parse::<Address>().ok() != Some(address)) {
        return Err("the signer is not X-Gnfd-User-Address".into());
    }
    Ok(Some(address))
}

async fn upload(
    State(emulator): State<Emulator>,
    Path((bucket, object)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let signer = match signer(&parts.method, &parts.uri, &parts.headers) {
        Ok(Some(address)) => address,
        Ok(None) => return refuse(StatusCode::FORBIDDEN, "AccessDenied", "uploads must be signed"),
        Err(reason) => return refuse(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", reason),
    };
    if let Err(e) = check_object_name(&object) {
        return refuse(StatusCode::BAD_REQUEST, "InvalidObjectName", e.to_string());
    }
    let payload = match axum::body::to_bytes(body, 256 * 1024 * 1024).await {
        Ok(bytes) => bytes,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "InvalidPayload", e.to_string()),
    };
    let declared = parts.headers.get(auth::CONTENT_SHA256).and_then(|v| v.to_str().ok()).unwrap_or(auth::EMPTY_SHA256);
    if declared != auth::EMPTY_SHA256 && declared != hex::encode(Sha256::digest(&payload)) {
        return refuse(StatusCode::BAD_REQUEST, "ChecksumMismatch", "the body does not hash to X-Gnfd-Content-Sha256");
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let hashes = {
        let payload = payload.clone();
        match tokio::task::spawn_blocking(move || integrity_hashes(&payload)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()),
            Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()),
        }
    };
    let txn = parts.headers.get(auth::TXN_HASH).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
    let mut chain = emulator.chain();
    let Some(owner) = chain.buckets.get(&bucket).map(|b| b.owner) else {
        return refuse(StatusCode::NOT_FOUND, "NoSuchBucket", format!("bucket {bucket} does not exist"));
    };
    let (creator, public, object_owner) = if let Some(txn) = txn {
        let Some(pending) = chain.pending.get(&txn).cloned() else {
            return refuse(StatusCode::BAD_REQUEST, "NoSuchTransaction", format!("no object was created by {txn}"));
        };
        if pending.bucket != bucket || pending.object != object {
            return refuse(StatusCode::BAD_REQUEST, "InvalidTransaction", "the transaction created another object");
        }
        if pending.owner != signer {
            return refuse(StatusCode::FORBIDDEN, "AccessDenied", "only the object's creator may upload its payload");
        }
        if pending.size != payload.len() as u64 || pending.checksums != hashes.hashes {
            return refuse(
                StatusCode::BAD_REQUEST,
                "ChecksumMismatch",
                "the payload's integrity hashes differ from those the creating transaction declared",
            );
        }
        chain.pending.remove(&txn);
        (signer, pending.public, signer)
    } else if query.contains_key("delegate") {
        let may_write = owner == Some(signer) || chain.writers.get(&bucket).is_some_and(|w| w.contains(&signer));
        if !may_write {
            return refuse(StatusCode::FORBIDDEN, "AccessDenied", format!("{signer} may not write to bucket {bucket}"));
        }
        let size: Option<u64> = query.get("payload_size").and_then(|s| s.parse().ok());
        if size != Some(payload.len() as u64) {
            return refuse(StatusCode::BAD_REQUEST, "InvalidPayloadSize", "payload_size is not the body's length");
        }
        let is_update = query.get("is_update").is_some_and(|v| v == "true");
        let exists = chain.buckets.get(&bucket).is_some_and(|b| b.objects.contains_key(&object));
        if exists && !is_update {
            return refuse(StatusCode::CONFLICT, "ObjectAlreadyExists", format!("{bucket}/{object} exists"));
        }
        if is_update && !exists {
            return refuse(StatusCode::NOT_FOUND, "NoSuchKey", format!("{bucket}/{object} does not exist"));
        }
        let public = query.get("visibility").is_some_and(|v| v == "1");
        (emulator.operator, public, owner.unwrap_or(signer))
    } else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "an upload names its creating transaction or is delegated",
        );
    };
    chain.next_id += 1;
    let info = ObjectInfo {
        owner: object_owner.to_string(),
        creator: creator.to_string(),
        bucket_name: bucket.clone(),
        object_name: object.clone(),
        id: chain.next_id,
        payload_size: payload.len() as u64,
        visibility: if public { "VISIBILITY_TYPE_PUBLIC_READ" } else { "VISIBILITY_TYPE_PRIVATE" }.to_string(),
        content_type,
        create_at: Utc::now().timestamp(),
        object_status: "OBJECT_STATUS_SEALED".to_string(),
        checksums: ObjectInfo::encode_checksums(&hashes.hashes),
    };
    let bucket_entry = chain.buckets.entry(bucket).or_default();
    bucket_entry.objects.insert(object, Stored { info, public, payload, tags: Vec::new() });
    StatusCode::OK.into_response()
}

async fn read(
    State(emulator): State<Emulator>,
    Path((bucket, object)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let signer = match signer(&parts.method, &parts.uri, &parts.headers) {
        Ok(signer) => signer,
        Err(reason) => return refuse(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", reason),
    };
    let chain = emulator.chain();
    let Some(entry) = chain.buckets.get(&bucket) else {
        return refuse(StatusCode::NOT_FOUND, "NoSuchBucket", format!("bucket {bucket} does not exist"));
    };
    let Some(stored) = entry.objects.get(&object) else {
        return refuse(StatusCode::NOT_FOUND, "NoSuchKey", format!("{bucket}/{object} does not exist"));
    };
    if query.contains_key("object-meta") {
        return xml_answer(&ObjectMetaBody { object: ObjectMeta { object_info: stored.info.clone(), removed: false } });
    }
    let allowed = stored.public
        || signer.is_some_and(|s| {
            entry.owner == Some(s)
                || stored.info.owner == s.to_string()
                || Emulator::may_read(&chain, &bucket, &object, s)
        });
    if !allowed {
        let who = signer.map_or("an anonymous caller".to_string(), |s| s.to_string());
        return refuse(StatusCode::FORBIDDEN, "AccessDenied", format!("{who} may not read {bucket}/{object}"));
    }
    let len = stored.payload.len() as u64;
    match parts.headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => (StatusCode::OK, [(header::CONTENT_TYPE, stored.info.content_type.clone())], stored.payload.clone())
            .into_response(),
        Some(range) => match parse_range(range, len) {
            Some((start, end)) => (
                StatusCode::PARTIAL_CONTENT,
                [(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"))],
                stored.payload.slice(start as usize..=end as usize),
            )
                .into_response(),
            None => refuse(StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange", format!("{range} of {len} bytes")),
        },
    }
}

/// `bytes=a-b` or `bytes=a-` within an object of `len` bytes: inclusive bounds.
fn parse_range(range: &str, len: u64) -> Option<(u64, u64)> {
    let (start, end) = range.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = if end.trim().is_empty() { len.checked_sub(1)? } else { end.trim().parse().ok()? };
    (start <= end && end < len).then_some((start, end))
}

async fn list(
    State(emulator): State<Emulator>,
    Path(bucket): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(reason) = signer(&parts.method, &parts.uri, &parts.headers) {
        return refuse(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", reason);
    }
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let max_keys: usize =
        query.get("max-keys").and_then(|m| m.parse().ok()).filter(|m| *m > 0).unwrap_or(1000).min(1000);
    let after = match query.get("continuation-token").filter(|t| !t.is_empty()) {
        Some(token) => {
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD.decode(token).ok().and_then(|b| String::from_utf8(b).ok()) {
                Some(name) if name.starts_with(&prefix) => Some(name),
                _ => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        "InvalidArgument",
                        "continuation-token does not match prefix",
                    );
                }
            }
        }
        None => None,
    };
    let chain = emulator.chain();
    let Some(entry) = chain.buckets.get(&bucket) else {
        return refuse(StatusCode::NOT_FOUND, "NoSuchBucket", format!("bucket {bucket} does not exist"));
    };
    let matching = entry
        .objects
        .range(prefix.clone()..)
        .take_while(|(name, _)| name.starts_with(&prefix))
        .filter(|(name, _)| after.as_ref().is_none_or(|a| name.as_str() > a.as_str()));
    let mut objects: Vec<ObjectMeta> = Vec::new();
    let mut truncated = false;
    for (_, stored) in matching {
        if objects.len() == max_keys {
            truncated = true;
            break;
        }
        objects.push(ObjectMeta { object_info: stored.info.clone(), removed: false });
    }
    let next = if truncated {
        objects.last().map(|o| continuation_token(&o.object_info.object_name)).unwrap_or_default()
    } else {
        String::new()
    };
    xml_answer(&ListBody {
        key_count: objects.len() as u64,
        objects,
        is_truncated: truncated,
        next_continuation_token: next,
    })
}
