//! The SQL routes.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{
        Path, Query, State,
        rejection::{JsonRejection, QueryRejection},
    },
    routing::{get, post},
};
use gata_infra::config::QueryConfig;
use prometheus::{HistogramOpts, HistogramVec, Registry};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Catalog, QueryError, Result,
    contributors::{self, ContributorScores, ScoresQuery},
    review::{self, ReviewQuery},
    sql::{QueryAnswer, SqlEngine},
};

/// Everything the SQL routes share.
#[derive(Clone)]
pub struct QueryState {
    engine: SqlEngine,
    seconds: HistogramVec,
}

impl QueryState {
    /// SQL over `catalog` with the limits of `cfg`, metrics on `registry`.
    pub fn new(catalog: Arc<Catalog>, cfg: QueryConfig, registry: &Registry) -> gata_infra::Result<Self> {
        let seconds = gata_infra::telemetry::register(
            registry,
            HistogramVec::new(
                HistogramOpts::new("gata_query_seconds", "SQL query time, by outcome")
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                &["outcome"],
            )?,
        )?;
        Ok(Self { engine: SqlEngine::new(catalog, cfg), seconds })
    }
}

/// The body of `POST /v1/sql`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

/// `POST /v1/sql`, `GET /v1/tables`, `GET /v1/contributors/{id}/scores` and the DVA review
/// page (`GET /review`, `GET /review/images/{id}`).
pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/v1/sql", post(sql))
        .route("/v1/tables", get(tables))
        .route("/v1/contributors/{id}/scores", get(contributor_scores))
        .route("/review", get(review_page))
        .route("/review/images/{id}", get(review_image))
        .with_state(state)
}

async fn sql(
    State(state): State<QueryState>,
    body: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Json<QueryAnswer>> {
    let Json(req) = body.map_err(|e| QueryError::BadRequest(format!("{e}; send {{\"sql\": \"SELECT ...\"}}")))?;
    let timer = std::time::Instant::now();
    let answer = state.engine.run(&req.sql).await;
    let outcome = if answer.is_ok() { "ok" } else { "error" };
    state.seconds.with_label_values(&[outcome]).observe(timer.elapsed().as_secs_f64());
    answer.map(Json)
}

async fn tables(State(state): State<QueryState>) -> Result<Json<Value>> {
    Ok(Json(json!({ "tables": state.engine.tables().await? })))
}

async fn contributor_scores(
    State(state): State<QueryState>,
    Path(id): Path<String>,
    query: Result<Query<ScoresQuery>, QueryRejection>,
) -> Result<Json<ContributorScores>> {
    let Query(query) = query.map_err(|e| QueryError::BadRequest(e.body_text()))?;
    contributors::scores(&state.engine, &id, &query).await.map(Json)
}

async fn review_page(
    State(state): State<QueryState>,
    query: Result<Query<ReviewQuery>, QueryRejection>,
) -> Result<axum::response::Html<String>> {
    let Query(query) = query.map_err(|e| QueryError::BadRequest(e.body_text()))?;
    review::page(&state.engine, &query).await
}

async fn review_image(State(state): State<QueryState>, Path(id): Path<String>) -> Result<axum::response::Response> {
    review::image(&state.engine, &id).await
}
