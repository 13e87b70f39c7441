//! The SQL routes. Each expects the caller's [`Principal`] in the request extensions (the
//! binary's authentication layer puts it there) and checks what that principal may do.

use std::sync::Arc;

use aide::{
    axum::{
        ApiRouter,
        routing::{delete_with, get_with, post_with},
    },
    transform::TransformOperation,
};
use axum::{
    Extension, Json,
    body::Body,
    extract::{Query, State, rejection::QueryRejection},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use gata_api::{
    JsonBody, PathParams,
    openapi::{IdPath, refusals},
};
use gata_infra::{auth::Principal, config::QueryConfig};
use gata_lakehouse::deltalake::datafusion::common::ScalarValue;
use gata_sql::{
    engine::{QueryAnswer, TableInfo},
    executor::Running,
};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

/// The longest time limit a query may ask for, in milliseconds (a day; `query.timeout` still
/// caps it).
const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// The body of `POST /v1/sql`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    /// One read-only statement.
    #[schemars(length(min = 1))]
    sql: String,
    /// Values for `$1`, `$2`, … placeholders.
    #[serde(default)]
    params: Vec<Param>,
    /// A shorter time limit than `query.timeout` for this query, in milliseconds.
    #[schemars(range(min = 1, max = MAX_TIMEOUT_MS))]
    timeout_ms: Option<u64>,
}

/// A SQL parameter: a string, a number, a boolean or null.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
enum Param {
    Null(()),
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Param {
    fn scalar(self) -> ScalarValue {
        match self {
            Self::Null(()) => ScalarValue::Null,
            Self::Bool(b) => ScalarValue::Boolean(Some(b)),
            Self::Int(i) => ScalarValue::Int64(Some(i)),
            Self::Float(f) => ScalarValue::Float64(Some(f)),
            Self::Text(s) => ScalarValue::Utf8(Some(s)),
        }
    }
}

/// `GET /v1/tables`.
#[derive(Debug, Serialize, JsonSchema)]
struct Tables {
    /// The tables the caller may read.
    tables: Vec<TableInfo>,
}

/// `GET /v1/queries`.
#[derive(Debug, Serialize, JsonSchema)]
struct Queries {
    /// The queries running now.
    queries: Vec<Running>,
}

/// `DELETE /v1/queries/{id}`.
#[derive(Debug, Serialize, JsonSchema)]
struct Cancelled {
    /// The query cancelled.
    cancelled: String,
}

/// The `{id}` of a contributor route: printable ASCII without spaces, as the contract's
/// `max_id_bytes` (128 by default) allows.
#[derive(Debug, Deserialize, JsonSchema)]
struct ContributorPath {
    /// The contributor id.
    #[schemars(regex(pattern = gata_contract::ID_PATTERN))]
    id: String,
}

/// The `{id}` of `GET /review/images/{id}`: an image-text pair's event id.
#[derive(Debug, Deserialize, JsonSchema)]
struct PairPath {
    #[schemars(with = "uuid::Uuid")]
    id: String,
}

/// `POST /v1/sql`, `GET /v1/tables`, `GET /v1/queries`, `DELETE /v1/queries/{id}`,
/// `GET /v1/contributors/{id}/scores`, `GET /v1/contributors/{id}/rewards` and the DVA review page (`GET /review`,
/// `GET /review/images/{id}`).
pub fn router(state: QueryState) -> ApiRouter {
    ApiRouter::new()
        .api_route("/v1/sql", post_with(sql, sql_docs))
        .api_route(
            "/v1/tables",
            get_with(tables, |op| {
                op.id("tables")
                    .tag("sql")
                    .summary("The tables the caller may read: names, schemas, versions, row counts")
            }),
        )
        .api_route(
            "/v1/queries",
            get_with(queries, |op| {
                refusals(op.id("running_queries").tag("sql").summary("The queries running now (operators)"), &[403])
            }),
        )
        .api_route(
            "/v1/queries/{id}",
            delete_with(cancel, |op| {
                refusals(op.id("cancel_query").tag("sql").summary("Cancel a running query (operators)"), &[403, 404])
            }),
        )
        .api_route(
            "/v1/contributors/{id}/scores",
            get_with(contributor_scores, |op| {
                refusals(
                    op.id("contributor_scores").tag("contributors").summary(
                        "A contributor's scores with reasons, newest first (operators, or the contributor itself)",
                    ),
                    &[400, 403],
                )
            }),
        )
        .api_route(
            "/v1/contributors/{id}/rewards",
            get_with(contributor_rewards, |op| {
                refusals(
                    op.id("contributor_rewards").tag("contributors").summary(
                        "A contributor's (or DVA worker's) payouts per closed epoch, with the scored submissions \
                         behind each amount (operators, or the contributor itself)",
                    ),
                    &[400, 403],
                )
            }),
        )
        .api_route(
            "/review",
            get_with(review_page, |op| {
                refusals(
                    op.id("review_page")
                        .tag("review")
                        .summary("The DVA review page: image-text pairs with their scores (HTML)"),
                    &[400, 403],
                )
            }),
        )
        .api_route(
            "/review/images/{id}",
            get_with(review_image, |op| {
                refusals(
                    op.id("review_image")
                        .tag("review")
                        .summary("The image of one pair: its bytes, or a redirect to its URL")
                        .response_with::<200, Vec<u8>, _>(|r| r.description("The image bytes"))
                        .response_with::<303, (), _>(|r| r.description("The image is stored by URL: go there")),
                    &[400, 403, 404],
                )
            }),
        )
        .with_state(state)
}

fn sql_docs(op: TransformOperation<'_>) -> TransformOperation<'_> {
    let op = op
        .id("sql")
        .tag("sql")
        .summary("Run one read-only SQL statement")
        .description(
            "SELECT / WITH / VALUES / EXPLAIN / DESCRIBE / SHOW TABLES over the tables the caller is granted. \
             `table(N)` reads a table at Delta version N, `table('2026-11-25T10:00:00Z')` as of a time. The \
             Accept header picks the format (application/json, application/x-ndjson, text/csv, \
             application/vnd.apache.arrow.stream, application/vnd.apache.parquet); every format but JSON is \
             streamed, with its id in the gata-query-id header. A streamed answer that fails or passes \
             query.max_result_bytes / query.max_stream_rows is cut off without its end, so the client sees a \
             broken transfer.",
        )
        .response_with::<200, Json<QueryAnswer>, _>(|r| r.description("The answer (JSON; other formats by Accept)"));
    refusals(op, &[400, 403, 406, 409, 429, 503])
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
    let params = req.params.into_iter().map(Param::scalar).collect();
    let timer = std::time::Instant::now();
    let engine = match req.timeout_ms {
        Some(ms) if !(1..=MAX_TIMEOUT_MS).contains(&ms) => {
            return Err(QueryError::BadRequest(format!("timeout_ms={ms}; expected 1 to {MAX_TIMEOUT_MS}")));
        }
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

async fn tables(State(state): State<QueryState>, Extension(principal): Extension<Principal>) -> Result<Json<Tables>> {
    Ok(Json(Tables { tables: state.engine.tables(&principal).await? }))
}

async fn queries(State(state): State<QueryState>, Extension(principal): Extension<Principal>) -> Result<Json<Queries>> {
    require(principal.role.operates(), "only operators see the running queries")?;
    Ok(Json(Queries { queries: state.engine.running() }))
}

async fn cancel(
    State(state): State<QueryState>,
    Extension(principal): Extension<Principal>,
    PathParams(IdPath { id }): PathParams<IdPath>,
) -> Result<Json<Cancelled>> {
    require(principal.role.operates(), "only operators cancel queries")?;
    if state.engine.cancel(&id) {
        Ok(Json(Cancelled { cancelled: id }))
    } else {
        Err(QueryError::NotFound(format!("no running query {id}")))
    }
}

async fn contributor_scores(
    State(state): State<QueryState>,
    Extension(principal): Extension<Principal>,
    PathParams(ContributorPath { id }): PathParams<ContributorPath>,
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
    PathParams(ContributorPath { id }): PathParams<ContributorPath>,
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
    PathParams(PairPath { id }): PathParams<PairPath>,
) -> Result<Response> {
    may_review(&principal)?;
    review::image(&state.engine, &principal, &id).await
}
