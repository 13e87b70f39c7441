//! The intake routes and the request flow: content type → body → parse/validate every event
//! → produce → 202 with receipts.

use std::{sync::Arc, time::Instant};

use axum::{
    Json, Router,
    body::{Body, to_bytes},
    extract::State,
    http::{HeaderMap, StatusCode, header},
    routing::post,
};
use gata_infra::{
    config::IngestConfig,
    contract::{Event, EventKind, Violation},
};
use prometheus::Registry;
use rdkafka::producer::FutureProducer;
use serde_json::{Value, json};

use crate::{IngestError, Result, error::LineProblem, metrics::IngestMetrics, produce::produce_all, turns::TurnIndex};

/// Turns remembered for checking preferences against their answers.
const TURN_INDEX_CAPACITY: usize = 200_000;

/// Everything the intake routes share.
#[derive(Clone)]
pub struct IngestState {
    producer: FutureProducer,
    cfg: Arc<IngestConfig>,
    turns: Arc<TurnIndex>,
    metrics: IngestMetrics,
}

impl IngestState {
    /// Intake producing through `producer`, with its metrics on `registry`.
    pub fn new(cfg: IngestConfig, producer: FutureProducer, registry: &Registry) -> gata_infra::Result<Self> {
        Ok(Self {
            producer,
            cfg: Arc::new(cfg),
            turns: Arc::new(TurnIndex::new(TURN_INDEX_CAPACITY)),
            metrics: IngestMetrics::register(registry)?,
        })
    }
}

/// The intake routes, to be merged into the service's router.
pub fn router(state: IngestState) -> Router {
    Router::new()
        .route("/v1/chat-turns", post(|s, h, b| accept(EventKind::ChatTurn, s, h, b)))
        .route("/v1/preferences", post(|s, h, b| accept(EventKind::Preference, s, h, b)))
        .route("/v1/image-text-pairs", post(|s, h, b| accept(EventKind::ImageTextPair, s, h, b)))
        .with_state(state)
}

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Single,
    Lines,
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
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>)> {
    let started = Instant::now();
    let framing = framing(&headers)?;
    let limit = state.cfg.max_body_bytes;
    let bytes = to_bytes(body, limit).await.map_err(|_| IngestError::BodyTooLarge { limit })?;
    let events = match parse(kind, framing, &bytes, &state) {
        Ok(events) => events,
        Err(err) => {
            if let IngestError::Invalid { problems, .. } = &err {
                state.metrics.events.with_label_values(&[kind.name(), "invalid"]).inc_by(problems.len() as u64);
            }
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
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": receipts.len(), "events": receipts }))))
}

/// Parses and validates every event of the body; any problem rejects the whole request.
fn parse(kind: EventKind, framing: Framing, body: &[u8], state: &IngestState) -> Result<Vec<Event>> {
    let lines: Vec<(usize, &[u8])> = match framing {
        Framing::Single => vec![(1, body)],
        Framing::Lines => body
            .split(|b| *b == b'\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .collect(),
    };
    if lines.is_empty() || (framing == Framing::Single && body.iter().all(u8::is_ascii_whitespace)) {
        return Err(IngestError::Empty);
    }
    let max = state.cfg.max_batch_events;
    if lines.len() > max {
        return Err(IngestError::TooManyEvents { count: lines.len(), limit: max });
    }
    let (mut events, mut problems) = (Vec::with_capacity(lines.len()), Vec::new());
    let (mut malformed, mut too_large) = (false, false);
    for (line, json) in lines.iter().copied() {
        let parsed = Event::parse(kind, json, &state.cfg.limits).and_then(|e| match &e {
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
            Ok(e) => events.push(e),
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
        Ok(events)
    } else {
        Err(IngestError::Invalid { total: lines.len(), problems, malformed, too_large })
    }
}
