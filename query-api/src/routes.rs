//! The SQL routes. Each expects the caller's [`Principal`] in the request extensions (the
//! binary's authentication layer puts it there) and checks what that principal may do.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    body::Body,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use gata_api::JsonBody;
use gata_infra::{auth::Principal, config::QueryConfig};
use gata_lakehouse::deltalake::datafusion::common::ScalarValue;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Catalog, QueryError, Result,
    contributors::{self, ContributorRewards, ContributorScores, ScoresQuery},
    executor::Cap,
    formats::{self, Format},
    review::{self, ReviewQuery},
    sql::SqlEngine,
};

/// Everything the SQL routes share.
#[derive(Clone)]
pub struct QueryState {
    engine: SqlEngine,
    seconds: HistogramVec,
    answers: IntCounterVec,
}

impl QueryState {
    /// SQL over `catalog` with the limits of `cfg`, metrics on `registry`.
    pub fn new(catalog: Arc<Catalog>, cfg: QueryConfig, registry: &Registry) -> Result<Self> {
        let startup = |e: gata_infra::InfraError| QueryError::Startup(e.to_string());
        let prom = |e: prometheus::Error| QueryError::Startup(e.to_string());
        let seconds = gata_infra::telemetry::register(
            registry,
            HistogramVec::new(
                HistogramOpts::new("gata_query_seconds", "SQL query time to the first answer byte, by outcome")
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                &["outcome"],
            )
            .map_err(prom)?,
        )
        .map_err(startup)?;
        let answers = gata_infra::telemetry::register(
            registry,
            IntCounterVec::new(Opts::new("gata_query_answers_total", "SQL answers started, by format"), &["format"])
                .map_err(prom)?,
        )
        .map_err(startup)?;
        let engine = SqlEngine::new(catalog, cfg)?;
        gata_infra::telemetry::register(registry, engine.ends()).map_err(startup)?;
        Ok(Self { engine, seconds, answers })
    }

    /// The same state with every principal's SQL held to `rates.sql`.
    pub fn with_rate_limits(mut self, rates: Arc<gata_infra::rate::RateLimits>) -> Self {
        self.engine = self.engine.with_rate_limits(rates);
        self
    }

    /// The same state with `views` registered in every principal's session.
    pub fn with_views(mut self, views: Arc<dyn crate::Views>) -> Self {
        self.engine = self.engine.with_views(views);
        self
    }

    /// The engine, for Flight SQL.
    pub fn engine(&self) -> &SqlEngine {
        &self.engine
    }
}

/// The body of `POST /v1/sql`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    /// Values for `$1`, `$2`, … placeholders.
    #[serde(default)]
    params: Vec<Value>,
    /// A shorter time limit than `query.timeout` for this query, in milliseconds.
    timeout_ms: Option<u64>,
}

/// A JSON value as a SQL parameter.
fn param(value: &Value) -> Result<ScalarValue> {
    Ok(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        },
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        other => {
            return Err(QueryError::BadRequest(format!(
                "params take strings, numbers, booleans and null, not {other}"
            )));
        }
    })
}

/// `POST /v1/sql`, `GET /v1/tables`, `GET /v1/queries`, `DELETE /v1/queries/{id}`,
/// `GET /v1/contributors/{id}/scores`, `GET /v1/contributors/{id}/rewards` and the DVA review page (`GET /review`,
/// `GET /review/images/{id}`).
pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/v1/sql", post(sql))
        .route("/v1/tables", get(tables))
        .route("/v1/queries", get(queries))
        .route("/v1/queries/{id}", axum::routing::delete(cancel))
        .route("/v1/contributors/{id}/scores", get(contributor_scores))
        .route("/v1/contributors/{id}/rewards", get(contributor_rewards))
        .route("/review", get(review_page))
        .route("/review/images/{id}", get(review_image))
        .with_state(state)
}

fn require(allowed: bool, why: &'static str) -> Result<()> {
    if allowed { Ok(()) } else { Err(QueryError::Forbidden(why)) }
}

async fn sql(
    State(state): State<QueryState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<SqlRequest>,
) -> Result<Response> {
    require(principal.role.queries(), "this principal may not run SQL")?;
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))?;
    let params = req.params.iter().map(param).collect::<Result<Vec<_>>>()?;
    let timer = std::time::Instant::now();
    let engine = match req.timeout_ms {
        Some(ms) => state.engine.with_timeout(std::time::Duration::from_millis(ms)),
        None => state.engine.clone(),
    };
    let answer = answer(&engine, &principal, &req.sql, params, format).await;
    let outcome = if answer.is_ok() { "ok" } else { "error" };
    state.seconds.with_label_values(&[outcome]).observe(timer.elapsed().as_secs_f64());
    if answer.is_ok() {
        state.answers.with_label_values(&[format!("{format:?}").to_lowercase().as_str()]).inc();
    }
    answer
}

async fn answer(
    engine: &SqlEngine,
    principal: &Principal,
    sql: &str,
    params: Vec<ScalarValue>,
    format: Format,
) -> Result<Response> {
    if format == Format::Json {
        return Ok(Json(engine.run(principal, sql, params).await?).into_response());
    }
    let cfg = engine.config();
    let stream = engine.stream(principal, sql, params, Cap::Fail(cfg.max_stream_rows)).await?;
    let id = HeaderValue::from_str(stream.id()).ok();
    let body = formats::encode(stream, format, cfg.max_result_bytes).await?;
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.media_type()));
    if let Some(id) = id {
        headers.insert("gata-query-id", id);
    }
    Ok(response)
}

async fn tables(State(state): State<QueryState>, Extension(principal): Extension<Principal>) -> Result<Json<Value>> {
    Ok(Json(json!({ "tables": state.engine.tables(&principal).await? })))
}

async fn queries(State(state): State<QueryState>, Extension(principal): Extension<Principal>) -> Result<Json<Value>> {
    require(principal.role.operates(), "only operators see the running queries")?;
    Ok(Json(json!({ "queries": state.engine.running() })))
}

async fn cancel(
    State(state): State<QueryState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    require(principal.role.operates(), "only operators cancel queries")?;
    if state.engine.cancel(&id) {
        Ok(Json(json!({ "cancelled": id })))
    } else {
        Err(QueryError::NotFound(format!("no running query {id}")))
    }
}

async fn contributor_scores(
    State(state): State<QueryState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    query: Result<Query<ScoresQuery>, QueryRejection>,
) -> Result<Json<ContributorScores>> {
    require(
        principal.role.operates() || principal.contributor_id.as_deref() == Some(id.as_str()),
        "a contributor sees only their own scores",
    )?;
    let Query(query) = query.map_err(|e| QueryError::BadRequest(e.body_text()))?;
    contributors::scores(&state.engine, &id, &query).await.map(Json)
}

async fn contributor_rewards(
    State(state): State<QueryState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<ContributorRewards>> {
    require(
        principal.role.operates() || principal.contributor_id.as_deref() == Some(id.as_str()),
        "a contributor sees only their own rewards",
    )?;
    contributors::rewards(&state.engine, &id).await.map(Json)
}

/// The review page shows pairs and their scores: for operators and whoever may read both.
fn may_review(principal: &Principal) -> Result<()> {
    require(
        principal.can_read("image_text_pairs") && principal.can_read("quality_scores"),
        "the review page needs grants on image_text_pairs and quality_scores",
    )
}

async fn review_page(
    State(state): State<QueryState>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<ReviewQuery>, QueryRejection>,
) -> Result<axum::response::Html<String>> {
    may_review(&principal)?;
    let Query(query) = query.map_err(|e| QueryError::BadRequest(e.body_text()))?;
    review::page(&state.engine, &principal, &query).await
}

async fn review_image(
    State(state): State<QueryState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response> {
    may_review(&principal)?;
    review::image(&state.engine, &principal, &id).await
}
