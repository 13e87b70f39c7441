//! Dual AI-human validation, the human half: reviewers label image-text pairs.
//!
//! - `GET /review/label`: the labelling page. One pair at a time from the queue; `a` accepts,
//!   `r` rejects, `s` skips, and the next pair follows at once. It holds no data and calls
//!   the API with the bearer token given in its form or as `#token=`.
//! - `GET /v1/review/queue?limit=n`: the pairs most worth a human look, that this reviewer has
//!   not labelled: those whose DVA score is nearest its version's accept threshold, those
//!   judges disagree on (DVA versions or workers that split, reviewers who labelled it
//!   differently), and a random audit sample (a different one per reviewer), interleaved.
//! - `POST /v1/review/labels {pair_id, decision, reason?, queue?}`: the label, produced (with
//!   the record MAC) to `gata.review_labels.v1` and landing in `review_labels`. An identical
//!   label has the same id and lands once; a changed mind is a new label, and the newest
//!   counts.
//! - `GET /v1/review/agreement`: Fleiss' kappa over the pairs labelled by two reviewers or
//!   more ([`agreement`]).
//!
//! Reviewers are principals with the `reviewer` role (or operators and admins); each is held
//! to the `rate.labels` limit.

pub mod agreement;

use std::{sync::Arc, time::Duration};

use aide::axum::{
    ApiRouter,
    routing::{get_with, post_with},
};
use axum::{
    Extension, Json,
    extract::{Query, State, rejection::QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::Utc;
use gata_api::{ApiError, JsonBody, openapi::refusals};
use gata_contract::{Limits, ReviewLabel, ReviewQueue, Verdict, Violation, topics::REVIEW_LABELS};
use gata_infra::{
    auth::Principal,
    rate::RateLimits,
    record_mac::{RecordMac, send_signed},
};
use gata_lakehouse::deltalake::datafusion::common::ScalarValue;
use gata_query_api::sql::SqlEngine;
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use self::agreement::{Agreement, Tally, agreement};

/// Most pairs one queue request returns.
pub const MAX_QUEUE: usize = 50;

/// The labelling service.
#[derive(Clone)]
pub struct Labelling {
    inner: Arc<Inner>,
}

struct Inner {
    engine: SqlEngine,
    producer: FutureProducer,
    mac: Option<RecordMac>,
    rates: Arc<RateLimits>,
    limits: Limits,
}

impl Labelling {
    /// The service over the lake (`engine`), producing labels with `producer` (and `mac`),
    /// validated under `limits`.
    pub fn new(
        engine: SqlEngine,
        producer: FutureProducer,
        mac: Option<RecordMac>,
        rates: Arc<RateLimits>,
        limits: Limits,
    ) -> Self {
        Labelling { inner: Arc::new(Inner { engine, producer, mac, rates, limits }) }
    }
}

/// Why a labelling request is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelError {
    /// The caller may not label.
    #[error("labelling needs the reviewer, operator or admin role")]
    NotAReviewer,
    /// No such image-text pair in the lake.
    #[error("no image-text pair {0} in the lake")]
    UnknownPair(Uuid),
    /// The label breaks the contract.
    #[error("the label is invalid")]
    Invalid(Vec<Violation>),
    /// The query string does not parse.
    #[error("{0}")]
    BadQuery(String),
    /// The queue's size is out of range.
    #[error("limit={0}; expected 1 to {MAX_QUEUE}")]
    BadLimit(usize),
    /// The reviewer's rate limit is spent.
    #[error("labelling is rate limited; retry after {0} s")]
    RateLimited(u64),
    /// The lake could not be read, or the log did not take the label.
    #[error("{0}")]
    Unavailable(&'static str),
}

impl ApiError for LabelError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NotAReviewer => (StatusCode::FORBIDDEN, "forbidden"),
            Self::UnknownPair(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::BadQuery(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Invalid(v) if v.iter().any(|v| v.too_large) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::Invalid(_) | Self::BadLimit(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            Self::Invalid(violations) => serde_json::to_value(violations).ok(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited(after) => Some(*after),
            _ => None,
        }
    }
}

impl aide::OperationOutput for LabelError {
    type Inner = gata_api::openapi::ErrorBody;
}

impl IntoResponse for LabelError {
    fn into_response(self) -> Response {
        gata_api::respond(&self)
    }
}

type Result<T, E = LabelError> = std::result::Result<T, E>;

/// The labelling API (behind authentication).
pub fn router(l: Labelling) -> ApiRouter {
    let tag = "review";
    ApiRouter::new()
        .api_route(
            "/v1/review/queue",
            get_with(queue, |op| {
                let op = op.id("review_queue").tag(tag).summary("Pairs most worth a reviewer's look").description(
                    "Not yet labelled by the caller: DVA scores nearest their version's accept threshold, pairs \
                     judges disagree on, and a random audit sample, interleaved.",
                );
                refusals(op, &[400, 403, 422, 429, 503])
            }),
        )
        .api_route(
            "/v1/review/labels",
            post_with(label, |op| {
                let op = op.id("review_label").tag(tag).summary("A reviewer's accept or reject of one pair").description(
                    "Produced to gata.review_labels.v1 and landing in review_labels. An identical label (same pair, \
                     reviewer, decision and reason) has the same id and lands once; the newest label of a reviewer \
                     counts.",
                );
                refusals(op.response::<202, Json<LabelReceipt>>(), &[403, 404, 413, 422, 429, 503])
            }),
        )
        .api_route(
            "/v1/review/agreement",
            get_with(agreement_of, |op| {
                refusals(
                    op.id("review_agreement").tag(tag).summary("Fleiss' kappa over pairs labelled twice or more"),
                    &[403, 429, 503],
                )
            }),
        )
        .with_state(l)
}

/// The labelling page (public: it holds no data).
pub fn page_router() -> ApiRouter {
    ApiRouter::new().api_route(
        "/review/label",
        get_with(
            || async { axum::response::Html(include_str!("label.html")) },
            |op| {
                op.id("review_label_page").tag("review").summary(
                    "The labelling page: one pair at a time, a to accept, r to reject, s to skip (public: it holds \
                     no data and calls the API with the bearer token given in its form or as #token=)",
                )
            },
        ),
    )
}

/// The caller, if it may label, after its rate limit.
fn reviewer<'p>(l: &Labelling, p: &'p Principal) -> Result<&'p str> {
    if !p.role.labels() {
        return Err(LabelError::NotAReviewer);
    }
    l.inner.rates.labels.take(&p.name, 1.0).map_err(|l| LabelError::RateLimited(l.retry_after_secs()))?;
    Ok(&p.name)
}

/// Runs `sql` over the lake as the platform (the caller's role was checked).
async fn rows(l: &Labelling, sql: &str, params: Vec<ScalarValue>) -> Result<Vec<Map<String, Value>>> {
    let answer = l.inner.engine.run(&Principal::local_admin(), sql, params).await.map_err(|e| {
        tracing::warn!(error = %e, "reading the lake for labelling failed");
        LabelError::Unavailable("the lake could not be read; retry")
    })?;
    Ok(answer.rows)
}

fn text<'a>(row: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    row.get(key).and_then(Value::as_str)
}

/// `GET /v1/review/queue` parameters.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct QueueQuery {
    /// Pairs wanted (default 10).
    #[schemars(range(min = 1, max = MAX_QUEUE))]
    limit: Option<usize>,
}

/// The queue (`GET /v1/review/queue`).
#[derive(Serialize, schemars::JsonSchema)]
struct Queue {
    /// Pairs in the order to review them.
    items: Vec<QueueItem>,
}

/// One pair to review.
#[derive(Serialize, schemars::JsonSchema)]
struct QueueItem {
    /// The pair's event id (`pair_id` of the label).
    pair_id: Uuid,
    /// Its contributor.
    contributor_id: String,
    /// Its caption.
    caption: String,
    /// Where the page loads its image.
    image: String,
    /// Why it is in the queue.
    queue: ReviewQueue,
    /// Labels it has from other reviewers.
    labels: u64,
    /// Its DVA scores, one per scorer version.
    scores: Vec<ScoreView>,
}

/// One DVA score of a queued pair.
#[derive(Serialize, schemars::JsonSchema)]
struct ScoreView {
    /// The scorer version (`dva/<model>@<hash>`, a trained head's, the validators').
    scorer_version: String,
    /// In [-1, 1].
    score: f64,
    /// Its verdict.
    verdict: Verdict,
}

/// Candidates of the three queues: each ranked by its own order, the first `$2` of each kept.
/// A version's threshold is its lowest accepted score (or its highest, when it accepted none);
/// images that could not be scored (score −1) are not worth a look.
const QUEUE_SQL: &str = "WITH s AS (
  SELECT subject_event_id AS pair, scorer_version, score, verdict, consensus_agreement FROM quality_scores
  WHERE subject_kind = 'image_text_pair' AND scorer_version LIKE 'dva/%' AND score > -1.0),
t AS (SELECT scorer_version, COALESCE(MIN(CASE WHEN verdict = 'accept' THEN score END), MAX(score)) AS threshold
  FROM s GROUP BY scorer_version),
j AS (SELECT s.pair, MIN(ABS(s.score - t.threshold)) AS distance, COUNT(DISTINCT s.verdict) AS verdicts,
  MIN(COALESCE(s.consensus_agreement, 1.0)) AS agreement FROM s JOIN t ON s.scorer_version = t.scorer_version
  GROUP BY s.pair),
l AS (SELECT subject_event_id AS pair, COUNT(DISTINCT decision) AS decisions, COUNT(*) AS labels,
  MAX(CASE WHEN reviewer = $1 THEN 1 ELSE 0 END) AS mine FROM review_labels GROUP BY subject_event_id),
c AS (SELECT j.pair, j.distance, COALESCE(l.labels, 0) AS labels,
  (j.verdicts > 1 OR j.agreement < 1.0 OR COALESCE(l.decisions, 0) > 1) AS disputed,
  COALESCE(l.decisions, 0) AS decisions, j.agreement, md5(concat(j.pair, '/', $1)) AS draw
  FROM j LEFT JOIN l ON l.pair = j.pair WHERE COALESCE(l.mine, 0) = 0),
r AS (SELECT c.*, ROW_NUMBER() OVER (ORDER BY distance, pair) AS near_rank,
  ROW_NUMBER() OVER (PARTITION BY disputed ORDER BY decisions DESC, agreement, pair) AS dispute_rank,
  ROW_NUMBER() OVER (ORDER BY draw) AS audit_rank FROM c)
SELECT r.pair, r.labels, r.near_rank, CASE WHEN r.disputed THEN r.dispute_rank END AS dispute_rank, r.audit_rank,
  p.contributor_id, p.caption
FROM r JOIN image_text_pairs p ON p.event_id = r.pair
WHERE r.near_rank <= $2 OR (r.disputed AND r.dispute_rank <= $2) OR r.audit_rank <= $2";

async fn queue(
    State(l): State<Labelling>,
    Extension(p): Extension<Principal>,
    query: Result<Query<QueueQuery>, QueryRejection>,
) -> Result<Json<Queue>> {
    let Query(q) = query.map_err(|e| LabelError::BadQuery(e.body_text()))?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=MAX_QUEUE).contains(&limit) {
        return Err(LabelError::BadLimit(limit));
    }
    let name = reviewer(&l, &p)?;
    let params = vec![ScalarValue::Utf8(Some(name.to_string())), ScalarValue::Int64(Some(limit as i64))];
    let candidates = rows(&l, QUEUE_SQL, params).await?;
    let rank = |row: &Map<String, Value>, key: &str| row.get(key).and_then(Value::as_u64);
    // Interleaved: nearest the threshold, disputed, audit, then again, each pair once.
    let mut picked: Vec<(Uuid, ReviewQueue, &Map<String, Value>)> = Vec::new();
    for i in 1..=limit as u64 {
        for (key, queue) in [
            ("near_rank", ReviewQueue::NearThreshold),
            ("dispute_rank", ReviewQueue::Disagreement),
            ("audit_rank", ReviewQueue::Audit),
        ] {
            let found = candidates.iter().find(|row| rank(row, key) == Some(i));
            let Some((row, id)) = found.and_then(|row| Some((row, text(row, "pair")?.parse::<Uuid>().ok()?))) else {
                continue;
            };
            if picked.len() < limit && !picked.iter().any(|(p, ..)| *p == id) {
                picked.push((id, queue, row));
            }
        }
    }
    let ids: Vec<String> = picked.iter().map(|(id, ..)| format!("'{id}'")).collect();
    let scores = if ids.is_empty() {
        Vec::new()
    } else {
        let sql = format!(
            "SELECT subject_event_id, scorer_version, score, verdict FROM quality_scores \
             WHERE subject_event_id IN ({}) AND scorer_version LIKE 'dva/%' ORDER BY scorer_version",
            ids.join(",")
        );
        rows(&l, &sql, Vec::new()).await?
    };
    let items = picked
        .into_iter()
        .map(|(id, queue, row)| QueueItem {
            pair_id: id,
            contributor_id: text(row, "contributor_id").unwrap_or_default().to_string(),
            caption: text(row, "caption").unwrap_or_default().to_string(),
            image: format!("/review/images/{id}"),
            queue,
            labels: row.get("labels").and_then(Value::as_u64).unwrap_or(0),
            scores: scores
                .iter()
                .filter(|s| text(s, "subject_event_id") == Some(id.to_string().as_str()))
                .filter_map(|s| {
                    Some(ScoreView {
                        scorer_version: text(s, "scorer_version")?.to_string(),
                        score: s.get("score")?.as_f64()?,
                        verdict: if text(s, "verdict")? == "accept" { Verdict::Accept } else { Verdict::Reject },
                    })
                })
                .collect(),
        })
        .collect();
    Ok(Json(Queue { items }))
}

/// A label (`POST /v1/review/labels`).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct LabelRequest {
    /// The image-text pair's event id.
    pair_id: Uuid,
    /// Accept or reject.
    decision: Verdict,
    /// Why, in a few words.
    #[schemars(length(min = 1, max = gata_contract::MAX_LABEL_REASON_BYTES))]
    reason: Option<String>,
    /// The queue it came from (default `browse`).
    queue: Option<ReviewQueue>,
}

/// The label as recorded.
#[derive(Serialize, schemars::JsonSchema)]
struct LabelReceipt {
    /// The label's event id (the same for an identical label).
    label_id: Uuid,
    /// The pair labelled.
    pair_id: Uuid,
    /// Who labelled it.
    reviewer: String,
    /// The decision.
    decision: Verdict,
}

async fn label(
    State(l): State<Labelling>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<LabelRequest>,
) -> Result<(StatusCode, Json<LabelReceipt>)> {
    let name = reviewer(&l, &p)?.to_string();
    let found = rows(
        &l,
        "SELECT contributor_id FROM image_text_pairs WHERE event_id = $1 LIMIT 1",
        vec![ScalarValue::Utf8(Some(req.pair_id.to_string()))],
    )
    .await?;
    let contributor_id =
        found.first().and_then(|r| text(r, "contributor_id")).ok_or(LabelError::UnknownPair(req.pair_id))?;
    let reason = req.reason.map(|r| r.trim().to_string());
    let label = ReviewLabel {
        event_id: ReviewLabel::id_for(req.pair_id, &name, req.decision, reason.as_deref()),
        subject_event_id: req.pair_id,
        contributor_id: contributor_id.to_string(),
        reviewer: name,
        decision: req.decision,
        reason,
        queue: req.queue.unwrap_or(ReviewQueue::Browse),
        labelled_at: Utc::now(),
    };
    let violations = label.violations(&l.inner.limits);
    if !violations.is_empty() {
        return Err(LabelError::Invalid(violations));
    }
    produce(&l, &label).await.map_err(|e| {
        tracing::warn!(error = %e, "a review label was not acknowledged");
        LabelError::Unavailable("the label was not recorded; send it again")
    })?;
    let receipt = LabelReceipt {
        label_id: label.event_id,
        pair_id: label.subject_event_id,
        reviewer: label.reviewer,
        decision: label.decision,
    };
    Ok((StatusCode::ACCEPTED, Json(receipt)))
}

async fn produce(l: &Labelling, label: &ReviewLabel) -> Result<(), rdkafka::error::KafkaError> {
    let (producer, mac, key) = (&l.inner.producer, l.inner.mac.as_ref(), label.subject_event_id.to_string());
    send_signed(producer, mac, REVIEW_LABELS, &key, &label.to_json(), Duration::from_secs(10)).await
}

/// The common table `votes(subject_event_id, accepts, labels)`: each labelled pair with its
/// reviewers' newest labels, one per reviewer, and how many of them accept. Agreement and
/// training (`gata dva train`) both start from it.
pub const LABEL_VOTES: &str = "WITH newest AS (SELECT subject_event_id, reviewer, decision FROM (
  SELECT subject_event_id, reviewer, decision, ROW_NUMBER() OVER (PARTITION BY subject_event_id, reviewer
    ORDER BY labelled_at DESC, kafka_offset DESC) AS n FROM review_labels) WHERE n = 1),
votes AS (SELECT subject_event_id, SUM(CASE WHEN decision = 'accept' THEN 1 ELSE 0 END) AS accepts, COUNT(*) AS labels
  FROM newest GROUP BY subject_event_id)";

/// The votes tallied: how many pairs got each (accepts, labels).
const TALLY: &str = "SELECT accepts, labels, COUNT(*) AS pairs, \
  (SELECT COUNT(DISTINCT reviewer) FROM review_labels) AS reviewers FROM votes GROUP BY accepts, labels";

async fn agreement_of(State(l): State<Labelling>, Extension(p): Extension<Principal>) -> Result<Json<Agreement>> {
    reviewer(&l, &p)?;
    let found = rows(&l, &format!("{LABEL_VOTES}\n{TALLY}"), Vec::new()).await?;
    let count = |row: &Map<String, Value>, key: &str| row.get(key).and_then(Value::as_u64).unwrap_or(0);
    let tallies: Vec<Tally> = found
        .iter()
        .map(|row| Tally { accepts: count(row, "accepts"), labels: count(row, "labels"), pairs: count(row, "pairs") })
        .collect();
    let reviewers = found.first().map_or(0, |row| count(row, "reviewers") as usize);
    Ok(Json(agreement(&tallies, reviewers)))
}
