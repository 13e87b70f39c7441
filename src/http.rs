//! The one HTTP listener of `gata serve`: intake and SQL routes under `/v1` and the review
//! page (each request authenticated to a principal when `auth.principals` are configured),
//! `/healthz`, `/readyz`, `/metrics` and `/openapi.json`, with a concurrency limit and a
//! request timeout. Unknown routes answer a JSON 404.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use gata_infra::{
    auth::{Authenticator, Principal},
    config::HttpConfig,
};
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

/// The OpenAPI 3 description of this API (checked in as `docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../docs/openapi.json");

/// The application router: the routes of the roles this process runs, plus health, metrics
/// and the API description.
pub fn app(
    cfg: &HttpConfig,
    auth: Authenticator,
    ingest: Option<gata_ingest::IngestState>,
    query: Option<gata_query_api::QueryState>,
    market: Option<(gata_marketplace::Marketplace, gata_marketplace::sharing::Sharing)>,
    ops: Ops,
) -> Router {
    let (market, sharing) = market.unzip();
    let ingest = ingest
        .map(|state| gata_ingest::router(state).route_layer(middleware::from_fn(require_submitter)))
        .unwrap_or_default();
    let metrics_route = if cfg.public_metrics {
        Router::new().route("/metrics", get(metrics))
    } else {
        Router::new().route("/metrics", get(metrics).route_layer(middleware::from_fn(require_operator)))
    };
    let api = Router::new()
        .merge(ingest)
        .merge(query.map(gata_query_api::router).unwrap_or_default())
        .merge(market.map(gata_marketplace::router).unwrap_or_default())
        .merge(sharing.clone().map(gata_marketplace::sharing::router).unwrap_or_default())
        .merge(metrics_route.with_state(ops.clone()))
        .layer(middleware::from_fn_with_state(Arc::new(auth), authenticate));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .with_state(ops)
        .merge(api)
        // Pre-signed Delta Sharing file URLs carry their own credential; the marketplace page
        // holds no data (it calls the API with the token a visitor gives it).
        .merge(sharing.map(gata_marketplace::sharing::files_router).unwrap_or_default())
        .merge(gata_marketplace::routes::page_router())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no_route", "no such route; see /openapi.json") })
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, cfg.request_timeout))
        .layer(ConcurrencyLimitLayer::new(cfg.max_concurrency))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response()
}

/// Resolves the caller to a principal (`Authorization: Bearer <token>`) and hands it to the
/// routes. Without principals configured (allowed only on loopback) everyone is a local admin.
async fn authenticate(State(auth): State<Arc<Authenticator>>, mut req: Request, next: Next) -> Response {
    if !auth.enabled() {
        // Open mode trusts every caller as the local admin, so it answers only requests
        // addressed to a loopback name (a rebinding web page sends its own).
        let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok());
        if let Some(host) = host.filter(|h| !gata_infra::auth::is_loopback_host(h)) {
            let why = format!("open mode (no principals configured) answers loopback host names only, not {host:?}");
            return error(StatusCode::FORBIDDEN, "host_not_allowed", &why);
        }
    }
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match auth.authorize(header) {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(why) => error(StatusCode::UNAUTHORIZED, "unauthorized", why),
    }
}

fn allow(req: &Request, rule: impl Fn(&Principal) -> bool) -> bool {
    req.extensions().get::<Principal>().is_some_and(rule)
}

/// Intake is for contributors, operators and admins.
async fn require_submitter(req: Request, next: Next) -> Response {
    if allow(&req, |p| p.role.submits()) {
        next.run(req).await
    } else {
        error(StatusCode::FORBIDDEN, "forbidden", "this principal may not submit events")
    }
}

/// Operation pages are for operators and admins.
async fn require_operator(req: Request, next: Next) -> Response {
    if allow(&req, |p| p.role.operates()) {
        next.run(req).await
    } else {
        error(StatusCode::FORBIDDEN, "forbidden", "only operators may read this")
    }
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
