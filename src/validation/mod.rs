//! Validators from outside, over HTTP: they never touch Kafka.
//!
//! - `POST /v1/validation/leases {count}`: a signed-in wallet leases image-text pairs (each
//!   with an expiry). Pairs come from the lake: not yet scored by the validators' consensus, not
//!   voted on by this account, not held by it. Gold pairs, generated with a known
//!   answer and a fresh event id, are mixed in invisibly: every lease until the account
//!   qualifies, `validation.gold_share` of them after.
//! - `DELETE /v1/validation/leases/{id}`: gives a lease back.
//! - `POST /v1/validation/votes {lease_id, score, signature}`: the vote, signed (EIP-712
//!   `Vote(string leaseId,string pairId,string score)`) by the account. A gold vote grades the
//!   account; a vote on a real pair is produced to the votes topic (with the record MAC) under
//!   the account's address as worker id, only while the account is qualified. The answer is the
//!   same either way, so a validator cannot tell gold from real.
//! - `GET /v1/validation/me`: the account's gold record and whether its votes count.
//!
//! One account holds at most one replica of a pair (a pair it holds or voted on is not leased
//! to it; a vote sent twice has one id and counts once), has at most
//! [`book::MAX_OPEN_PER_ACCOUNT`] open leases, and is held to the `validation` rate limit.
//! Gold records are journaled to `<data_dir>/validation/gold.jsonl`, so they outlive a restart
//! (each instance keeps its own).

pub mod book;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use aide::axum::{
    ApiRouter,
    routing::{delete_with, get_with, post_with},
};
use axum::{
    Extension, Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use gata_api::{ApiError, JsonBody, PathParams, openapi::refusals};
use gata_contract::{
    topics::DVA_VOTES,
    {Event, EventKind, LogPosition, QualityScore, ScoreReason, SubScores, Verdict, vote_digest},
};
use gata_infra::{
    auth::Principal,
    config::ValidationConfig,
    rate::RateLimits,
    record_mac::{RecordMac, send_signed},
    workload::Workload,
};
use gata_query_api::sql::SqlEngine;
use gata_wallet::{Address, parse_signature, recover};
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use self::book::{Book, Qualification, Subject};

/// Gold pairs generated at start: half captioned truthfully, half not.
const GOLD_PAIRS: usize = 24;

/// One pair with a known answer.
struct Gold {
    caption: String,
    image_base64: String,
    accept: bool,
}

/// The validation service.
#[derive(Clone)]
pub struct Validation {
    inner: Arc<Inner>,
}

struct Inner {
    book: Mutex<Book>,
    engine: SqlEngine,
    producer: FutureProducer,
    mac: Option<RecordMac>,
    rates: Arc<RateLimits>,
    cfg: ValidationConfig,
    chain_id: u64,
    gold: Vec<Gold>,
}

/// Captions no generated image shows.
const WRONG_CAPTIONS: [&str; 4] = [
    "A crowded city street at night in the rain",
    "Two dogs playing with a ball on a beach",
    "A bowl of ramen with chopsticks",
    "cheap pills http://spam.example",
];

fn gold_pairs() -> Vec<Gold> {
    let mut workload = Workload::new(0x601d, 4);
    let mut out = Vec::with_capacity(GOLD_PAIRS);
    while out.len() < GOLD_PAIRS {
        let Event::ImageTextPair(pair) = workload.image_pair() else { continue };
        if !pair.caption.ends_with("background") {
            continue; // a bot's or spammer's caption: not a truthful one
        }
        let Some(image_base64) = pair.image.base64 else { continue };
        let accept = out.len() % 2 == 0;
        let caption = if accept { pair.caption } else { WRONG_CAPTIONS[out.len() / 2 % WRONG_CAPTIONS.len()].into() };
        out.push(Gold { caption, image_base64, accept });
    }
    out
}

impl Validation {
    /// The service over the lake (`engine`), producing votes with `producer` (and `mac`), its
    /// validators' gold records kept in `journal`.
    pub fn new(
        cfg: ValidationConfig,
        engine: SqlEngine,
        producer: FutureProducer,
        mac: Option<RecordMac>,
        rates: Arc<RateLimits>,
        chain_id: u64,
        journal: &std::path::Path,
    ) -> std::io::Result<Validation> {
        let book = Mutex::new(Book::open_journal(journal)?);
        let inner = Inner { book, engine, producer, mac, rates, cfg, chain_id, gold: gold_pairs() };
        Ok(Validation { inner: Arc::new(inner) })
    }

    fn qualification(&self) -> Qualification {
        Qualification { after: self.inner.cfg.qualify_after, accuracy: self.inner.cfg.min_accuracy }
    }
}

/// Why a validation request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The account holds as many open leases as it may.
    #[error("{0} leases are open already; vote on or release some first")]
    TooManyOpen(usize),
    /// The book is full.
    #[error("too many open leases on this server; retry later")]
    Full,
    /// No such lease (never issued, voted on already, released or expired).
    #[error("no open lease {0}: it expired, was released or was voted on")]
    Unknown(Uuid),
    /// Another account's lease.
    #[error("lease {0} is not yours")]
    NotYours(Uuid),
    /// Not a signed-in wallet.
    #[error("validators sign in with a wallet (POST /v1/auth/siwe)")]
    NoWallet,
    /// The account's validation rate limit is spent.
    #[error("validation requests are rate limited; retry after {0} s")]
    RateLimited(u64),
    /// The score is out of range.
    #[error("score is a decimal number in [-1, 1]")]
    BadScore,
    /// A lease asks for too few or too many pairs.
    #[error("count={0}; a lease takes 1 to {max} pairs", max = book::MAX_OPEN_PER_ACCOUNT)]
    BadCount(usize),
    /// The signature is malformed or another key's.
    #[error("{0}")]
    BadSignature(String),
    /// The lake could not be read, or the log did not take the vote.
    #[error("{0}")]
    Unavailable(&'static str),
    /// The lease book's lock is poisoned.
    #[error("the lease book is unavailable")]
    Internal,
}

impl ApiError for ValidationError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::TooManyOpen(_) | Self::Full => (StatusCode::TOO_MANY_REQUESTS, "lease"),
            Self::Unknown(_) => (StatusCode::CONFLICT, "lease"),
            Self::NotYours(_) | Self::NoWallet => (StatusCode::FORBIDDEN, "forbidden"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::BadScore | Self::BadCount(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::BadSignature(_) => (StatusCode::UNAUTHORIZED, "bad_signature"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited(after) => Some(*after),
            _ => None,
        }
    }
}

impl aide::OperationOutput for ValidationError {
    type Inner = gata_api::openapi::ErrorBody;
}

impl IntoResponse for ValidationError {
    fn into_response(self) -> Response {
        gata_api::respond(&self)
    }
}

type Result<T, E = ValidationError> = std::result::Result<T, E>;

/// The validation routes (behind authentication).
pub fn router(v: Validation) -> ApiRouter {
    let tag = "validation";
    ApiRouter::new()
        .api_route(
            "/v1/validation/leases",
            post_with(lease, |op| {
                let op = op
                    .id("validation_lease")
                    .tag(tag)
                    .summary("A signed-in wallet leases image-text pairs to vote on")
                    .description(
                        "Pairs not yet decided by the validators' consensus and never leased to this account; gold \
                     pairs with known answers are mixed in invisibly (every lease until the account qualifies, \
                     validation.gold_share after). At most 16 open leases per account; each expires after \
                     validation.lease_ttl.",
                    );
                refusals(op, &[403, 429, 503])
            }),
        )
        .api_route(
            "/v1/validation/leases/{id}",
            delete_with(release, |op| {
                refusals(op.id("validation_release").tag(tag).summary("Gives a lease back unused"), &[403, 409, 429])
            }),
        )
        .api_route(
            "/v1/validation/votes",
            post_with(vote, |op| {
                let op = op.id("validation_vote").tag(tag).summary("A signed vote on a leased pair").description(
                    "score is a decimal in [-1, 1] as a string; signature is the account's EIP-712 signature of \
                     Vote(string leaseId,string pairId,string score) in the domain {name: Gata, version: 1, \
                     chainId: auth.wallet.chain_id}. The answer is the same for gold and real pairs; a real \
                     pair's vote reaches the DVA consensus (scorer version validation.scorer_version) only while \
                     the account is qualified.",
                );
                refusals(op.response::<202, Json<VoteReceipt>>(), &[401, 403, 409, 429, 503])
            }),
        )
        .api_route(
            "/v1/validation/me",
            get_with(me, |op| {
                refusals(
                    op.id("validation_me")
                        .tag(tag)
                        .summary("The validator's gold record, whether its votes count, and its open leases"),
                    &[403, 429],
                )
            }),
        )
        .with_state(v)
}

/// The caller's address, after its rate limit.
fn validator(v: &Validation, p: &Principal) -> Result<Address> {
    let address = p.address.ok_or(ValidationError::NoWallet)?;
    v.inner
        .rates
        .validation
        .take(&address.to_string(), 1.0)
        .map_err(|l| ValidationError::RateLimited(l.retry_after_secs()))?;
    Ok(address)
}

/// Runs `f` on the lease book (never across an await).
fn with_book<T>(v: &Validation, f: impl FnOnce(&mut Book) -> T) -> Result<T> {
    let mut book = v.inner.book.lock().map_err(|_| ValidationError::Internal)?;
    Ok(f(&mut book))
}

/// A real pair to lease, from the lake.
struct Candidate {
    pair: Uuid,
    subject: Subject,
    view: Value,
}

/// Pairs not yet decided by the validators' consensus and never voted on by `account`.
async fn candidates(v: &Validation, account: &Address, limit: usize) -> Result<Vec<Candidate>> {
    let version = &v.inner.cfg.scorer_version;
    let sql = format!(
        "SELECT p.event_id, p.contributor_id, p.caption, p.image_content_type, encode(p.image, 'base64') AS image, \
         p.image_url, CAST(p.occurred_at AS BIGINT) AS occurred_us, e.topic, e.part, e.off \
         FROM image_text_pairs p \
         JOIN (SELECT event_id, MIN(kafka_topic) AS topic, MIN(kafka_partition) AS part, MIN(kafka_offset) AS off \
               FROM events WHERE event_type = 'image_text_pair' GROUP BY event_id) e ON e.event_id = p.event_id \
         WHERE p.event_id NOT IN (SELECT subject_event_id FROM quality_scores WHERE scorer_version = '{version}') \
         AND p.event_id NOT IN (SELECT subject_event_id FROM dva_votes WHERE validator = '{account}') \
         ORDER BY p.received_at, p.event_id LIMIT {limit}"
    );
    let answer = v.inner.engine.run(&Principal::local_admin(), &sql, Vec::new()).await.map_err(|e| {
        tracing::warn!(error = %e, "finding pairs to lease failed");
        ValidationError::Unavailable("the lake could not be read; retry")
    })?;
    let text = |row: &serde_json::Map<String, Value>, k: &str| row.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(answer
        .rows
        .iter()
        .filter_map(|row| {
            let pair: Uuid = text(row, "event_id")?.parse().ok()?;
            let occurred_at = DateTime::<Utc>::from_timestamp_micros(row.get("occurred_us")?.as_i64()?)?;
            let source = LogPosition {
                topic: text(row, "topic")?,
                partition: i32::try_from(row.get("part")?.as_i64()?).ok()?,
                offset: row.get("off")?.as_i64()?,
            };
            let subject = Subject { contributor_id: text(row, "contributor_id")?, occurred_at, source };
            let view = json!({
                "event_id": pair,
                "caption": text(row, "caption")?,
                "image": {"content_type": text(row, "image_content_type")?, "base64": text(row, "image"), "url": text(row, "image_url")},
            });
            Some(Candidate { pair, subject, view })
        })
        .collect())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct LeaseRequest {
    /// Pairs wanted (1..=16).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = book::MAX_OPEN_PER_ACCOUNT))]
    count: usize,
}

fn one() -> usize {
    1
}

/// A random draw in [0, 1) from the operating system's generator.
fn draw() -> f64 {
    (Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0
}

async fn lease(
    State(v): State<Validation>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<LeaseRequest>,
) -> Result<Json<Leases>> {
    let count = req.count;
    if !(1..=book::MAX_OPEN_PER_ACCOUNT).contains(&count) {
        return Err(ValidationError::BadCount(count));
    }
    let address = validator(&v, &p)?;
    let account = address.to_string();
    let qualified = with_book(&v, |b| b.record(&account).qualifies(v.qualification()))?;
    let real = if qualified { candidates(&v, &address, count * 4).await? } else { Vec::new() };
    let ttl = chrono::Duration::from_std(v.inner.cfg.lease_ttl).unwrap_or(chrono::Duration::minutes(10));
    let now = Utc::now();
    let mut real = real.into_iter();
    let mut leases = Vec::new();
    let mut book = v.inner.book.lock().map_err(|_| ValidationError::Internal)?;
    while leases.len() < count {
        let gold = !qualified || draw() < v.inner.cfg.gold_share;
        let next = if gold { None } else { real.find(|c| !book.has_seen(&account, c.pair)) };
        let (pair, answer, subject, view) = match next {
            Some(c) => (c.pair, None, Some(c.subject), c.view),
            None if !gold && !leases.is_empty() => break, // nothing more to vote on now
            None => {
                let g = &v.inner.gold[(Uuid::new_v4().as_u128() % v.inner.gold.len() as u128) as usize];
                let id = Uuid::now_v7();
                let view = json!({"event_id": id, "caption": g.caption,
                    "image": {"content_type": "image/png", "base64": g.image_base64, "url": null}});
                (id, Some(g.accept), None, view)
            }
        };
        match book.lease(&account, pair, answer, subject, ttl, v.inner.cfg.max_leases, now) {
            Ok(l) => leases.push(Offer { lease_id: l.id, expires_at: l.expires_at, pair: view }),
            Err(e) if leases.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    Ok(Json(Leases { leases }))
}

async fn release(
    State(v): State<Validation>,
    Extension(p): Extension<Principal>,
    PathParams(LeasePath { id }): PathParams<LeasePath>,
) -> Result<StatusCode> {
    let address = validator(&v, &p)?;
    with_book(&v, |b| b.release(&address.to_string(), id, Utc::now()))??;
    Ok(StatusCode::NO_CONTENT)
}

/// Pairs leased to vote on (`POST /v1/validation/leases`).
#[derive(Serialize, schemars::JsonSchema)]
struct Leases {
    /// One per pair.
    leases: Vec<Offer>,
}

/// One leased pair.
#[derive(Serialize, schemars::JsonSchema)]
struct Offer {
    /// The lease, for the vote.
    lease_id: Uuid,
    /// Until when a vote is taken.
    expires_at: DateTime<Utc>,
    /// The pair: `event_id`, `caption` and `image` (`content_type`, `base64` or `url`).
    pair: Value,
}

/// The answer to a vote: the same for gold and real pairs.
#[derive(Serialize, schemars::JsonSchema)]
struct VoteReceipt {
    /// The lease voted on.
    lease_id: Uuid,
    /// Always true: the vote is taken.
    recorded: bool,
}

/// The `{id}` of a lease.
#[derive(Deserialize, schemars::JsonSchema)]
struct LeasePath {
    /// The lease id.
    id: Uuid,
}

/// A signed vote.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct VoteRequest {
    /// The lease voted on.
    lease_id: Uuid,
    /// In [-1, 1], as a decimal string exactly as signed.
    score: String,
    /// EIP-712 signature of `Vote(string leaseId,string pairId,string score)`.
    signature: String,
}

async fn vote(
    State(v): State<Validation>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<VoteRequest>,
) -> Result<(StatusCode, Json<VoteReceipt>)> {
    let address = validator(&v, &p)?;
    let score = req.score.parse::<f64>().ok().filter(|s| (-1.0..=1.0).contains(s)).ok_or(ValidationError::BadScore)?;
    let account = address.to_string();
    let pair = with_book(&v, |b| b.leased_pair(&account, req.lease_id, Utc::now()))??;
    let signer = parse_signature(&req.signature)
        .and_then(|s| recover(&vote_digest(v.inner.chain_id, req.lease_id, pair, &req.score), &s))
        .map_err(|e| ValidationError::BadSignature(e.to_string()))?;
    if signer != address {
        return Err(ValidationError::BadSignature(format!("the vote is signed by {signer}, not by {address}")));
    }
    let accept = score >= v.inner.cfg.threshold;
    let (lease, record) = with_book(&v, |b| b.vote(&account, req.lease_id, accept, Utc::now()))??;
    if let Some(subject) = lease.subject.filter(|_| record.qualifies(v.qualification())) {
        let vote = cast(&v.inner.cfg, &account, lease.pair, subject, score, accept);
        produce(&v, &vote).await.map_err(|e| {
            tracing::warn!(error = %e, "a validator's vote was not acknowledged");
            ValidationError::Unavailable("the vote was not recorded; vote again")
        })?;
    }
    Ok((StatusCode::ACCEPTED, Json(VoteReceipt { lease_id: lease.id, recorded: true })))
}

/// The vote record of `account` on `pair`.
fn cast(cfg: &ValidationConfig, account: &str, pair: Uuid, subject: Subject, score: f64, accept: bool) -> QualityScore {
    let reasons = if accept {
        Vec::new()
    } else {
        vec![ScoreReason {
            code: "caption_mismatch".into(),
            penalty: 1.0,
            detail: format!("a validator scored the caption's agreement {score} (threshold {})", cfg.threshold),
        }]
    };
    QualityScore {
        event_id: QualityScore::vote_id_for(&cfg.scorer_version, account, pair),
        contributor_id: subject.contributor_id,
        subject_event_id: pair,
        subject_kind: EventKind::ImageTextPair,
        scorer_version: cfg.scorer_version.clone(),
        score,
        verdict: if accept { Verdict::Accept } else { Verdict::Reject },
        sub_scores: SubScores::default(),
        reasons,
        language: None,
        occurred_at: subject.occurred_at,
        scored_at: Utc::now(),
        source: subject.source,
        model: None,
        timings: None,
        validator: Some(account.to_string()),
        consensus: None,
    }
}

async fn produce(v: &Validation, vote: &QualityScore) -> Result<(), rdkafka::error::KafkaError> {
    let (producer, mac) = (&v.inner.producer, v.inner.mac.as_ref());
    send_signed(producer, mac, DVA_VOTES, &vote.contributor_id, &vote.to_json(), Duration::from_secs(10)).await
}

/// A validator's standing (`GET /v1/validation/me`).
#[derive(Serialize, schemars::JsonSchema)]
struct Standing {
    /// The validator's address.
    validator: String,
    /// Gold pairs answered.
    gold_answered: u32,
    /// Gold pairs answered right.
    gold_correct: u32,
    /// Whether its votes on real pairs count.
    qualified: bool,
    /// Leases it holds now.
    open_leases: usize,
}

async fn me(State(v): State<Validation>, Extension(p): Extension<Principal>) -> Result<Json<Standing>> {
    let account = validator(&v, &p)?.to_string();
    let (record, open) = with_book(&v, |b| (b.record(&account), b.open(&account, Utc::now())))?;
    Ok(Json(Standing {
        qualified: record.qualifies(v.qualification()),
        validator: account,
        gold_answered: record.answered,
        gold_correct: record.correct,
        open_leases: open,
    }))
}
