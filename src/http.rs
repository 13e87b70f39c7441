//! The one HTTP listener of `gata serve`: intake and SQL routes under `/v1` (behind bearer
//! tokens when configured), `/healthz`, `/readyz` and `/metrics`, with a concurrency limit and
//! a request timeout.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use gata_infra::config::{HttpConfig, Token};
use gata_query_api::Catalog;
use prometheus::Registry;
use rdkafka::producer::{FutureProducer, Producer};
use serde_json::json;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// What the operational routes look at.
#[derive(Clone)]
pub struct Ops {
    pub registry: Registry,
    pub producer: FutureProducer,
    pub catalog: Arc<Catalog>,
}

/// The application router: the routes of the roles this process runs, plus health and metrics.
pub fn app(
    cfg: &HttpConfig,
    ingest: Option<gata_ingest::IngestState>,
    query: Option<gata_query_api::QueryState>,
    ops: Ops,
) -> Router {
    let tokens: Arc<Vec<Token>> = Arc::new(cfg.tokens.clone());
    let api = Router::new()
        .merge(ingest.map(gata_ingest::router).unwrap_or_default())
        .merge(query.map(gata_query_api::router).unwrap_or_default())
        .layer(middleware::from_fn_with_state(tokens, require_token));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
        .merge(api)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, cfg.request_timeout))
        .layer(ConcurrencyLimitLayer::new(cfg.max_concurrency))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response()
}

/// With tokens configured, every `/v1` request needs `Authorization: Bearer <token>`.
/// Without tokens (allowed only on loopback) the API is open, as one local admin.
async fn require_token(State(tokens): State<Arc<Vec<Token>>>, req: Request, next: Next) -> Response {
    if tokens.is_empty() {
        return next.run(req).await;
    }
    let presented =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if tokens.iter().any(|k| constant_time_eq(k.0.as_bytes(), t.as_bytes())) => next.run(req).await,
        Some(_) => error(StatusCode::UNAUTHORIZED, "unauthorized", "the bearer token is not valid"),
        None => error(StatusCode::UNAUTHORIZED, "unauthorized", "send Authorization: Bearer <token>"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Ready when the broker answers a metadata request and the lake tables can be read.
async fn readyz(State(ops): State<Ops>) -> Response {
    let producer = ops.producer.clone();
    let broker = tokio::task::spawn_blocking(move || {
        producer.client().fetch_metadata(None, Duration::from_secs(2)).map(|m| m.brokers().len())
    })
    .await;
    if !matches!(broker, Ok(Ok(n)) if n > 0) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable", "the Kafka broker does not answer");
    }
    if let Err(e) = ops.catalog.latest().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, "lake_unavailable", &e.to_string());
    }
    Json(json!({ "status": "ready" })).into_response()
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    metrics_page(&ops.registry)
}

/// `registry` in Prometheus' text exposition format, as `/metrics` answers it.
pub fn metrics_page(registry: &prometheus::Registry) -> impl IntoResponse + use<> {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], gata_infra::telemetry::render(registry))
}
