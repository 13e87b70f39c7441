//! The intake routes and the request flow: content type → body → parse/validate every event
//! → produce → 202 with receipts.

use std::{collections::HashMap, sync::Arc, time::Instant};

use aide::{
    axum::{
        ApiRouter,
        routing::{ApiMethodRouter, post_with},
    },
    openapi::{MediaType, RequestBody, SchemaObject},
    transform::TransformOperation,
};
use axum::{
    Extension, Json,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
};
use futures::StreamExt as _;
use gata_api::openapi::refusals;
use gata_contract::{ChatTurn, Event, EventKind, ImageTextPair, Preference, Violation};
use gata_infra::{auth::Principal, config::IngestConfig, rate::RateLimits};
use prometheus::Registry;
use rdkafka::producer::FutureProducer;

use crate::{
    IngestError, Result,
    error::LineProblem,
    metrics::IngestMetrics,
    produce::{Receipts, produce_all},
    turns::TurnIndex,
};

/// What a signed event costs in the rate limits, in events: checking its signature takes about
/// 60 times the CPU of parsing and validating it (the `provenance` benchmark).
const SIGNED_EVENT_COST: f64 = 50.0;

/// Turns remembered for checking preferences against their answers.
const TURN_INDEX_CAPACITY: usize = 200_000;

/// Everything the intake routes share.
#[derive(Clone)]
pub struct IngestState {
    producer: FutureProducer,
    cfg: Arc<IngestConfig>,
    turns: Arc<TurnIndex>,
    rates: Arc<RateLimits>,
    metrics: IngestMetrics,
    chain_id: u64,
}

impl IngestState {
    /// Intake producing through `producer`, held to `rates`, with its metrics on `registry`;
    /// signed events are checked against chain `chain_id` (`auth.wallet.chain_id`).
    pub fn new(
        cfg: IngestConfig,
        producer: FutureProducer,
        rates: Arc<RateLimits>,
        registry: &Registry,
        chain_id: u64,
    ) -> gata_infra::Result<Self> {
        Ok(Self {
            producer,
            cfg: Arc::new(cfg),
            turns: Arc::new(TurnIndex::new(TURN_INDEX_CAPACITY)),
            rates,
            metrics: IngestMetrics::register(registry)?,
            chain_id,
        })
    }

    /// Takes each event of `events` from the principal's and its contributor's rate limits (a
    /// signed one counts [`SIGNED_EVENT_COST`]).
    fn admit(&self, principal: Option<&Principal>, events: &[Event]) -> Result<()> {
        fn limited(limit: &'static str, who: &str) -> impl FnOnce(gata_infra::rate::Limited) -> IngestError {
            let who = who.to_string();
            move |l| IngestError::RateLimited { limit, who, retry_after: l.retry_after_secs() }
        }
        let cost = |e: &Event| if e.signature().is_some() { SIGNED_EVENT_COST } else { 1.0 };
        if let Some(p) = principal.filter(|p| !p.is_local_admin()) {
            let total: f64 = events.iter().map(cost).sum();
            self.rates.intake.take(&p.name, total).map_err(limited("intake_events", &p.name))?;
        }
        let mut per_contributor: HashMap<&str, f64> = HashMap::new();
        for e in events {
            *per_contributor.entry(e.contributor_id()).or_default() += cost(e);
        }
        for (who, n) in per_contributor {
            self.rates.contributors.take(who, n).map_err(limited("contributor_events", who))?;
        }
        Ok(())
    }
}

/// The intake routes, to be merged into the service's router.
pub fn router(state: IngestState) -> ApiRouter {
    ApiRouter::new()
        .api_route("/v1/chat-turns", intake::<ChatTurn>(EventKind::ChatTurn))
        .api_route("/v1/preferences", intake::<Preference>(EventKind::Preference))
        .api_route("/v1/image-text-pairs", intake::<ImageTextPair>(EventKind::ImageTextPair))
        .with_state(state)
}

/// The route taking events of `kind`, whose type is `T`.
fn intake<T: schemars::JsonSchema>(kind: EventKind) -> ApiMethodRouter<IngestState> {
    post_with(
        move |s: State<IngestState>, p: Option<Extension<Principal>>, h: HeaderMap, b: Body| accept(kind, s, p, h, b),
        move |op| described::<T>(op, kind),
    )
}

/// The description of the route taking events of kind `T`: one JSON event or NDJSON, each
/// event of `T`'s schema; 202 with receipts.
fn described<T: schemars::JsonSchema>(mut op: TransformOperation<'_>, kind: EventKind) -> TransformOperation<'_> {
    let name = kind.name();
    aide::generate::in_context(|ctx| {
        let mut content = gata_api::openapi::json_content::<T>(ctx);
        let lines = SchemaObject {
            json_schema: schemars::json_schema!({ "type": "string", "description": "One event per line." }),
            example: None,
            external_docs: None,
        };
        content.insert("application/x-ndjson".to_string(), MediaType { schema: Some(lines), ..Default::default() });
        let body = RequestBody { description: None, content, required: true, extensions: Default::default() };
        op.inner_mut().request_body = Some(aide::openapi::ReferenceOr::Item(body));
    });
    let op = op
        .id(&format!("submit_{name}s"))
        .tag("intake")
        .summary(&format!("Submit {name} events: one JSON event, or NDJSON (one event per line)"))
        .description(
            "Every line is checked before anything is produced; one bad event refuses the batch with the line \
             and field named. Roles: contributor (as its own contributor_id only: another is a 403 forbidden), \
             app (a trusted application, for any contributor), operator, admin. Intake records the submitting \
             principal in each event (submitted_by; a client that sends it gets a 422). An event may carry its \
             author's EIP-712 signature over its canonical bytes; contributor_id must then be the signer's \
             address, and a signature that does not recover to it is a 422. The body may be compressed with \
             Content-Encoding gzip or zstd: it is read up to ingest.max_body_bytes as sent and again \
             decompressed (413 past either); a broken stream is a 400 bad_encoding, another coding a 415 \
             unsupported_encoding.",
        )
        .response_with::<202, Json<Receipts>, _>(|r| r.description("Accepted: in the log, one receipt per event"));
    refusals(op, &[400, 403, 413, 415, 422, 429, 503])
}

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Framing {
    /// One JSON object.
    Single,
    /// One JSON object per line (NDJSON).
    Lines,
}

/// The events of a body as (1-based line, bytes): the whole body for [`Framing::Single`]; for
/// [`Framing::Lines`] every line without its `\r\n` or `\n`, blank lines skipped.
pub fn split_events(framing: Framing, body: &[u8]) -> Vec<(usize, &[u8])> {
    match framing {
        Framing::Single => vec![(1, body)],
        Framing::Lines => body
            .split(|b| *b == b'\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .collect(),
    }
}

fn framing(headers: &HeaderMap) -> Result<Framing> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(Framing::Single),
        "application/x-ndjson" | "application/jsonl" | "application/json-seq" | "application/x-jsonlines" => {
            Ok(Framing::Lines)
        }
        _ => Err(IngestError::UnsupportedMediaType(ct.to_string())),
    }
}

async fn accept(
    kind: EventKind,
    State(state): State<IngestState>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Receipts>)> {
    let started = Instant::now();
    let framing = framing(&headers)?;
    let encoding = Encoding::of(&headers)?;
    let limit = state.cfg.max_body_bytes;
    let bytes = encoding.decode(read_body(body, limit).await?, limit).await?;
    let (events, lines) = match parse(kind, framing, &bytes, &state) {
        Ok(parsed) => parsed,
        Err(err) => {
            if let IngestError::Invalid { problems, .. } = &err {
                state.metrics.events.with_label_values(&[kind.name(), "invalid"]).inc_by(problems.len() as u64);
            }
            return Err(err);
        }
    };
    let mut events = events;
    if let Err(err) = attribute(&mut events, &lines, principal.as_deref()) {
        state.metrics.events.with_label_values(&[kind.name(), "forbidden"]).inc_by(events.len() as u64);
        return Err(err);
    }
    if let Err(err) = state.admit(principal.as_deref(), &events) {
        state.metrics.events.with_label_values(&[kind.name(), "rate_limited"]).inc_by(events.len() as u64);
        return Err(err);
    }
    let events = match check_signatures(events, &lines, state.chain_id).await {
        Ok(events) => events,
        Err(err) => {
            state.metrics.events.with_label_values(&[kind.name(), "invalid"]).inc();
            return Err(err);
        }
    };
    let receipts = match produce_all(&state.producer, &events, state.cfg.produce_timeout).await {
        Ok(r) => r,
        Err(err) => {
            state.metrics.events.with_label_values(&[kind.name(), "unavailable"]).inc_by(events.len() as u64);
            return Err(err);
        }
    };
    for event in &events {
        if let Event::ChatTurn(turn) = event {
            state.turns.insert(&turn.turn_id, turn.response_ids().map(str::to_string).collect());
        }
    }
    state.metrics.events.with_label_values(&[kind.name(), "accepted"]).inc_by(events.len() as u64);
    state.metrics.ack_seconds.with_label_values(&[kind.name()]).observe(started.elapsed().as_secs_f64());
    Ok((StatusCode::ACCEPTED, Json(Receipts { accepted: receipts.len(), events: receipts })))
}

/// Pins every event to who may submit it and records that principal in it: a contributor
/// submits only as itself, a trusted app, an operator or an admin for anyone.
fn attribute(events: &mut [Event], lines: &[usize], principal: Option<&Principal>) -> Result<()> {
    let local;
    let principal = match principal {
        Some(p) => p,
        None => {
            local = Principal::local_admin();
            &local
        }
    };
    for (event, line) in events.iter_mut().zip(lines) {
        if !principal.role.submits_for_others() && principal.contributor_id.as_deref() != Some(event.contributor_id()) {
            let own = principal.contributor_id.as_deref().unwrap_or("nobody");
            let reason = format!(
                "{} submits as {own:?} only, and this event names contributor_id {:?}",
                principal.name,
                event.contributor_id()
            );
            return Err(IngestError::Forbidden { line: *line, reason });
        }
        event.set_submitted_by(&principal.name);
    }
    Ok(())
}

/// Checks the authors' signatures, off the async workers (about 200 µs each: see the
/// `provenance` benchmark). Runs after the rate limits, which charge a signed event
/// [`SIGNED_EVENT_COST`] events.
async fn check_signatures(events: Vec<Event>, lines: &[usize], chain_id: u64) -> Result<Vec<Event>> {
    if events.iter().all(|e| e.signature().is_none()) {
        return Ok(events);
    }
    let lines = lines.to_vec();
    let checked = tokio::task::spawn_blocking(move || {
        let problems: Vec<LineProblem> = events
            .iter()
            .zip(lines)
            .filter_map(|(e, line)| e.check_signature(chain_id).err().map(|v| (line, v)))
            .map(|(line, Violation { field, reason, .. })| LineProblem { line, field, reason })
            .collect();
        (events, problems)
    })
    .await;
    match checked {
        Ok((events, problems)) if problems.is_empty() => Ok(events),
        Ok((events, problems)) => {
            Err(IngestError::Invalid { total: events.len(), problems, malformed: false, too_large: false })
        }
        Err(e) => {
            tracing::error!(error = %e, "checking signatures failed");
            Err(IngestError::Internal("checking signatures failed"))
        }
    }
}

/// How a body is compressed (`Content-Encoding`). A compressed body counts against
/// `ingest.max_body_bytes` twice: as sent, and decompressed, so a small bomb that expands to
/// gigabytes is refused after `max_body_bytes` of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Result<Encoding> {
        let Some(value) = headers.get(header::CONTENT_ENCODING) else { return Ok(Encoding::Identity) };
        let unsupported = || IngestError::UnsupportedEncoding(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match value.to_str().map_err(|_| unsupported())?.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "zstd" => Ok(Encoding::Zstd),
            _ => Err(unsupported()),
        }
    }

    /// `body` decompressed, at most `limit` bytes, off the async workers (decompressing
    /// `limit` bytes takes milliseconds).
    async fn decode(self, body: axum::body::Bytes, limit: usize) -> Result<axum::body::Bytes> {
        let name = match self {
            Encoding::Identity => return Ok(body),
            Encoding::Gzip => "gzip",
            Encoding::Zstd => "zstd",
        };
        let bad = |e: std::io::Error| IngestError::BadEncoding { encoding: name, reason: e.to_string() };
        tokio::task::spawn_blocking(move || {
            let reader: Box<dyn std::io::Read> = match self {
                Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
                _ => Box::new(zstd::stream::read::Decoder::new(&body[..]).map_err(bad)?),
            };
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(reader, limit as u64 + 1), &mut out).map_err(bad)?;
            if out.len() > limit {
                return Err(IngestError::BodyTooLarge { limit });
            }
            Ok(out.into())
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, encoding = name, "decompressing a body failed");
            IngestError::Internal("decompressing the body failed")
        })?
    }
}

/// How much of an oversized body is read and thrown away, so the client (still sending) gets
/// its 413 instead of a reset connection; past this the connection is closed on it.
const DRAIN_FACTOR: usize = 4;

/// The body, at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes> {
    let mut frames = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = frames.next().await {
        let Ok(chunk) = chunk else { break };
        seen += chunk.len();
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        } else if seen > limit.saturating_mul(DRAIN_FACTOR) {
            break;
        }
    }
    if seen > limit {
        return Err(IngestError::BodyTooLarge { limit });
    }
    Ok(buf.into())
}

/// Parses and validates every event of the body, with the line each came from; any problem
/// rejects the whole request.
fn parse(kind: EventKind, framing: Framing, body: &[u8], state: &IngestState) -> Result<(Vec<Event>, Vec<usize>)> {
    let lines = split_events(framing, body);
    if lines.is_empty() || (framing == Framing::Single && body.iter().all(u8::is_ascii_whitespace)) {
        return Err(IngestError::Empty);
    }
    let max = state.cfg.max_batch_events;
    if lines.len() > max {
        return Err(IngestError::TooManyEvents { count: lines.len(), limit: max });
    }
    let (mut events, mut event_lines, mut problems) = (Vec::with_capacity(lines.len()), Vec::new(), Vec::new());
    let (mut malformed, mut too_large) = (false, false);
    for (line, json) in lines.iter().copied() {
        let parsed = Event::parse(kind, json, &state.cfg.limits).and_then(|e| match &e {
            _ if e.submitted_by().is_some() => {
                Err(vec![Violation::new("submitted_by", "is recorded by intake from the caller; leave it out")])
            }
            Event::Preference(p) => match state.turns.answers(&p.turn_id) {
                Some(answers) => {
                    let v = p.violations_against_turn(answers.iter().map(String::as_str));
                    if v.is_empty() { Ok(e) } else { Err(v) }
                }
                None => Ok(e),
            },
            _ => Ok(e),
        });
        match parsed {
            Ok(e) => {
                events.push(e);
                event_lines.push(line);
            }
            Err(violations) => {
                malformed |= serde_json::from_slice::<serde::de::IgnoredAny>(json).is_err();
                too_large |= violations.iter().any(|v| v.too_large);
                problems.extend(violations.into_iter().map(|Violation { field, reason, .. }| LineProblem {
                    line,
                    field,
                    reason,
                }));
            }
        }
    }
    if problems.is_empty() {
        Ok((events, event_lines))
    } else {
        Err(IngestError::Invalid { total: lines.len(), problems, malformed, too_large })
    }
}
