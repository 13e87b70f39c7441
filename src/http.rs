//! The one HTTP listener of `gata serve`: intake and SQL routes under `/v1` and the review
//! page (each request authenticated to a principal when `auth.principals` are configured),
//! `/healthz`, `/readyz`, `/metrics` and `/openapi.json`, with a concurrency limit that holds
//! a streamed response's slot until its body is sent, a request timeout and a time limit on
//! streamed bodies. Every request gets an id (`x-request-id`); every error has the one body
//! of `gata_api`. Unknown routes answer a JSON 404.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use gata_api::Problem;
use gata_infra::{
    auth::{Authenticator, Principal},
    config::HttpConfig,
};
use gata_query_api::Catalog;
use prometheus::Registry;
use rdkafka::producer::{FutureProducer, Producer};
use serde_json::json;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

/// What the operational routes look at.
#[derive(Clone)]
pub struct Ops {
    pub registry: Registry,
    pub producer: FutureProducer,
    pub catalog: Arc<Catalog>,
    /// The last readiness answer and when it was found.
    pub readiness: Arc<Mutex<Option<(Instant, Readiness)>>>,
}

/// Ready, or which dependency is not and why.
pub type Readiness = Result<(), (&'static str, String)>;

/// How long a readiness answer is reused: `/readyz` is unauthenticated, so a flood of it costs
/// one broker round trip and one catalog read per interval, not one per request.
const READINESS_TTL: Duration = Duration::from_secs(1);

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
    validation: Option<crate::validation::Validation>,
    ops: Ops,
) -> Router {
    let auth = Arc::new(auth);
    let (market, sharing) = market.unzip();
    let links = market.clone().map(|m| crate::signin::link_router(auth.clone(), m)).unwrap_or_default();
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
        .merge(crate::signin::whoami_router())
        .merge(links)
        .merge(validation.map(crate::validation::router).unwrap_or_default())
        .layer(middleware::from_fn_with_state(auth.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .with_state(ops)
        .merge(api)
        .merge(crate::signin::router(auth))
        // Pre-signed Delta Sharing file URLs carry their own credential; the marketplace page
        // holds no data (it calls the API with the token a visitor gives it).
        .merge(sharing.map(gata_marketplace::sharing::files_router).unwrap_or_default())
        .merge(gata_marketplace::routes::page_router())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no_route", "no such route; see /openapi.json") })
        .layer(middleware::from_fn_with_state(cfg.request_timeout, time_limit))
        .layer(middleware::from_fn_with_state(
            Slots { permits: Arc::new(Semaphore::new(cfg.max_concurrency)), stream_timeout: cfg.stream_timeout },
            hold_slot,
        ))
        .layer(middleware::from_fn(gata_api::request_id::assign))
}

/// Answers 408 with a JSON reason when a request (its body read included) takes longer than
/// `http.request_timeout`.
async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request took longer than http.request_timeout ({})", humantime::format_duration(limit)),
        ),
    }
}

/// The request slots of [`HttpConfig::max_concurrency`].
#[derive(Clone)]
struct Slots {
    permits: Arc<Semaphore>,
    stream_timeout: Duration,
}

/// Waits for a request slot (waiters are bounded by `http.max_connections`) and keeps it until
/// the response body has been sent, or `http.stream_timeout` has passed, whichever is first.
async fn hold_slot(State(slots): State<Slots>, req: Request, next: Next) -> Response {
    let Ok(permit) = slots.permits.clone().acquire_owned().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down");
    };
    let (parts, body) = next.run(req).await.into_parts();
    let deadline = Box::pin(tokio::time::sleep(slots.stream_timeout));
    Response::from_parts(parts, Body::new(SlotBody { body, _permit: permit, deadline }))
}

/// A response body that holds its request slot and stops at its deadline.
struct SlotBody {
    body: Body,
    _permit: OwnedSemaphorePermit,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for SlotBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            let late = std::io::Error::new(std::io::ErrorKind::TimedOut, "http.stream_timeout passed");
            return std::task::Poll::Ready(Some(Err(axum::Error::new(late))));
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The shared JSON error answer (`gata_api`) with `status`, `code` and `message`.
pub fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    Problem::new(status, code, message).into_response()
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
            return error(StatusCode::FORBIDDEN, "host_not_allowed", why);
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

/// Ready when the broker answers a metadata request and the lake tables can be read. One
/// check runs at a time and its answer is reused for [`READINESS_TTL`].
async fn readyz(State(ops): State<Ops>) -> Response {
    let mut last = ops.readiness.lock().await;
    let fresh = last.as_ref().filter(|(at, _)| at.elapsed() < READINESS_TTL).map(|(_, r)| r.clone());
    let readiness = match fresh {
        Some(r) => r,
        None => {
            let r = check_readiness(&ops).await;
            *last = Some((Instant::now(), r.clone()));
            r
        }
    };
    drop(last);
    match readiness {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err((code, why)) => error(StatusCode::SERVICE_UNAVAILABLE, code, why),
    }
}

async fn check_readiness(ops: &Ops) -> Readiness {
    let producer = ops.producer.clone();
    let broker = tokio::task::spawn_blocking(move || {
        producer.client().fetch_metadata(None, Duration::from_secs(2)).map(|m| m.brokers().len())
    })
    .await;
    if !matches!(broker, Ok(Ok(n)) if n > 0) {
        return Err(("broker_unavailable", "the Kafka broker does not answer".into()));
    }
    ops.catalog.latest().await.map(drop).map_err(|e| ("lake_unavailable", e.to_string()))
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    metrics_page(&ops.registry)
}

/// `registry` in Prometheus' text exposition format, as `/metrics` answers it.
pub fn metrics_page(registry: &prometheus::Registry) -> impl IntoResponse + use<> {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], gata_infra::telemetry::render(registry))
}
