//! A Delta Sharing protocol server (the REST protocol of delta-io/delta-sharing, parquet
//! response format), so buyers read their purchases with the standard `delta-sharing` Python
//! client, pandas or Spark.
//!
//! A share is a listing the caller may read (a buyer's purchases; every listing for operators),
//! with one schema, `default`, holding one table per kind of the listing. A listing table is a
//! row-level view (only granted contributors' rows), so it has no Delta files of its own to
//! hand out: a query materializes the view as the caller may see it now into one Parquet file,
//! named by a hash of its definition and of the lake's table versions (the same answer is
//! written once), and answers a pre-signed URL to it: `/delta-sharing/files/{id}` with an
//! expiry and an HMAC-SHA256 signature, served without a bearer token and with range requests
//! (streamed from disk, never read whole into memory).
//!
//! Materialized answers are bounded: one answer may not exceed `query.max_result_bytes`, only
//! one request writes a given answer (the others wait for it and reuse it), and the directory
//! keeps at most `query.sharing_cache_bytes`, evicting the oldest answers first.
//! The table version is the version of `quality_scores`, where rows enter listings.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aide::{
    axum::{
        ApiRouter,
        routing::{get_with, post_with},
    },
    transform::TransformOperation,
};
use axum::{
    Extension, Json,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use gata_api::{JsonBody, openapi::refusals_in};
use gata_infra::auth::Principal;
use gata_lakehouse::deltalake::kernel::{StructType, engine::arrow_conversion::TryFromArrow as _};
use gata_sql::{SqlEngine, View, Views as _, catalog::LakeTable};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Marketplace;

mod answers;
mod files;

use answers::materialize;
use files::sign;
pub use files::{byte_range, router as files_router};

/// The schema every share holds.
const SCHEMA: &str = "default";
/// How long a pre-signed file URL stays valid.
const URL_TTL: Duration = Duration::from_secs(15 * 60);
/// Materialized answers older than this are removed when a new one is written.
const CACHE_TTL: Duration = Duration::from_secs(3600);

/// What the sharing routes share.
#[derive(Clone)]
pub struct Sharing {
    market: Marketplace,
    engine: SqlEngine,
    dir: PathBuf,
    key: Arc<[u8; 32]>,
    /// Writer locks, one per answer id's stripe: an answer has one writer at a time.
    writers: Arc<[tokio::sync::Mutex<()>; WRITER_STRIPES]>,
}

/// Writer locks: answers whose ids fall in one stripe are written one after another.
const WRITER_STRIPES: usize = 16;

impl Sharing {
    /// Sharing of `market`'s listings, read through `engine` (which must register the
    /// marketplace's views), materializing answers under `dir`, signing URLs with `key`.
    pub fn new(market: Marketplace, engine: SqlEngine, dir: PathBuf, key: [u8; 32]) -> Self {
        let writers = Arc::new(std::array::from_fn(|_| tokio::sync::Mutex::new(())));
        Self { market, engine, dir, key: Arc::new(key), writers }
    }
}

/// A protocol error, answered as `{"errorCode", "message"}`: the Delta Sharing protocol's
/// error body, which its clients parse, rather than gata's own (`gata_api`). Server-side
/// causes are hidden the same way (`gata_api::public_message`).
#[derive(Debug)]
pub struct ShareError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// The Delta Sharing protocol's error body.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareErrorBody {
    /// A code such as `RESOURCE_DOES_NOT_EXIST`.
    error_code: String,
    /// Why.
    message: String,
}

impl IntoResponse for ShareError {
    fn into_response(self) -> Response {
        (self.status, Json(ShareErrorBody { error_code: self.code.to_string(), message: self.message })).into_response()
    }
}

impl aide::OperationOutput for ShareError {
    type Inner = ShareErrorBody;
}

/// A share's path segments.
#[derive(Debug, Deserialize, JsonSchema)]
struct SharePath {
    /// The share (a listing id).
    share: String,
}

/// A schema's path segments.
#[derive(Debug, Deserialize, JsonSchema)]
struct SchemaPath {
    /// The share.
    share: String,
    /// The schema (`default`).
    schema: String,
}

/// A table's path segments.
#[derive(Debug, Deserialize, JsonSchema)]
struct TablePath {
    /// The share.
    share: String,
    /// The schema (`default`).
    schema: String,
    /// The table (a kind of the listing).
    table: String,
}

/// Documents a Delta Sharing route: `summary`, an answer of `content_type` (none: headers
/// only), and a 404 for what the caller may not see.
fn documented<'t>(
    op: TransformOperation<'t>,
    id: &str,
    summary: &str,
    content_type: Option<&str>,
) -> TransformOperation<'t> {
    let mut op = op.id(id).tag("delta-sharing").summary(summary);
    let answer = aide::openapi::Response {
        description: "The answer".to_string(),
        content: content_type.map(|c| (c.to_string(), Default::default())).into_iter().collect(),
        ..Default::default()
    };
    let responses = op.inner_mut().responses.get_or_insert_with(Default::default);
    responses.responses.insert(aide::openapi::StatusCode::Code(200), aide::openapi::ReferenceOr::Item(answer));
    refusals_in::<ShareErrorBody>(op, &[404])
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ShareError {
    ShareError { status, code, message: message.into() }
}

fn not_found(what: &str) -> ShareError {
    error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", format!("{what} does not exist or is not shared with you"))
}

fn internal(e: impl std::fmt::Display) -> ShareError {
    let status = StatusCode::INTERNAL_SERVER_ERROR;
    error(status, "INTERNAL_ERROR", gata_api::public_message(status, &e))
}

type Answer = Result<Response, ShareError>;

/// The routes that need the caller (behind the bearer-token layer).
pub fn router(sharing: Sharing) -> ApiRouter {
    const JSON: Option<&str> = Some("application/json");
    const NDJSON: Option<&str> = Some("application/x-ndjson");
    const TABLE: &str = "/delta-sharing/shares/{share}/schemas/{schema}/tables/{table}";
    ApiRouter::new()
        .api_route(
            "/delta-sharing/shares",
            get_with(shares, |op| {
                documented(op, "sharing_shares", "Delta Sharing: the shares (listings) the caller may read", JSON)
            }),
        )
        .api_route(
            "/delta-sharing/shares/{share}",
            get_with(share, |op| documented(op, "sharing_share", "Delta Sharing: one share", JSON)),
        )
        .api_route(
            "/delta-sharing/shares/{share}/schemas",
            get_with(schemas, |op| {
                documented(op, "sharing_schemas", "Delta Sharing: a share's schemas (one: default)", JSON)
            }),
        )
        .api_route(
            "/delta-sharing/shares/{share}/schemas/{schema}/tables",
            get_with(tables, |op| {
                documented(op, "sharing_tables", "Delta Sharing: a schema's tables (one per kind of the listing)", JSON)
            }),
        )
        .api_route(
            "/delta-sharing/shares/{share}/all-tables",
            get_with(all_tables, |op| {
                documented(op, "sharing_all_tables", "Delta Sharing: every table of a share", JSON)
            }),
        )
        .api_route(
            &format!("{TABLE}/version"),
            get_with(version, |op| {
                let summary = "Delta Sharing: the table version (the version of quality_scores) in the \
                               delta-table-version header";
                documented(op, "sharing_version", summary, None)
            }),
        )
        .api_route(
            &format!("{TABLE}/metadata"),
            get_with(metadata, |op| {
                documented(op, "sharing_metadata", "Delta Sharing: protocol and metaData lines", NDJSON)
            }),
        )
        .api_route(
            &format!("{TABLE}/query"),
            post_with(query, |op| {
                let summary = "Delta Sharing: protocol, metaData and one file line with a pre-signed URL to the \
                               listing table as the caller may read it now (parquet format). The body (hints) is \
                               optional.";
                let mut op = refusals_in::<ShareErrorBody>(documented(op, "sharing_query", summary, NDJSON), &[400]);
                if let Some(aide::openapi::ReferenceOr::Item(body)) = op.inner_mut().request_body.as_mut() {
                    body.required = false;
                }
                op
            }),
        )
        .with_state(sharing)
}

/// The listing tables `principal` may read, as (share, table).
fn shared(s: &Sharing, principal: &Principal) -> Vec<(String, String)> {
    s.market.views(principal).into_iter().map(|v| (v.schema, v.table)).collect()
}

/// Whether `principal` may read share `name`.
fn owns(s: &Sharing, principal: &Principal, name: &str) -> bool {
    shared(s, principal).iter().any(|(share, _)| share == name)
}

async fn shares(State(s): State<Sharing>, Extension(p): Extension<Principal>) -> Response {
    let mut names: Vec<String> = shared(&s, &p).into_iter().map(|(share, _)| share).collect();
    names.dedup();
    let items: Vec<Value> = names.iter().map(|n| json!({"name": n, "id": n})).collect();
    Json(json!({ "items": items })).into_response()
}

async fn share(
    State(s): State<Sharing>,
    Extension(p): Extension<Principal>,
    Path(SharePath { share: name }): Path<SharePath>,
) -> Answer {
    if owns(&s, &p, &name) {
        Ok(Json(json!({"share": {"name": name, "id": name}})).into_response())
    } else {
        Err(not_found(&format!("share {name}")))
    }
}

async fn schemas(
    State(s): State<Sharing>,
    Extension(p): Extension<Principal>,
    Path(SharePath { share: name }): Path<SharePath>,
) -> Answer {
    if owns(&s, &p, &name) {
        Ok(Json(json!({"items": [{"name": SCHEMA, "share": name}]})).into_response())
    } else {
        Err(not_found(&format!("share {name}")))
    }
}

fn table_items(s: &Sharing, p: &Principal, name: &str) -> Option<Value> {
    let items: Vec<Value> = shared(s, p)
        .into_iter()
        .filter(|(share, _)| share == name)
        .map(|(share, table)| {
            json!({"name": table, "schema": SCHEMA, "share": share, "shareId": share, "id": format!("{share}.{table}")})
        })
        .collect();
    (!items.is_empty()).then(|| json!({ "items": items }))
}

async fn tables(
    State(s): State<Sharing>,
    Extension(p): Extension<Principal>,
    Path(SchemaPath { share: name, schema }): Path<SchemaPath>,
) -> Answer {
    match table_items(&s, &p, &name) {
        Some(items) if schema == SCHEMA => Ok(Json(items).into_response()),
        _ => Err(not_found(&format!("schema {name}.{schema}"))),
    }
}

async fn all_tables(
    State(s): State<Sharing>,
    Extension(p): Extension<Principal>,
    Path(SharePath { share: name }): Path<SharePath>,
) -> Answer {
    table_items(&s, &p, &name)
        .map(|items| Json(items).into_response())
        .ok_or_else(|| not_found(&format!("share {name}")))
}

/// The addressed table, if the caller may read it: its view.
fn resolve(s: &Sharing, p: &Principal, share: &str, schema: &str, table: &str) -> Result<View, ShareError> {
    s.market
        .views(p)
        .into_iter()
        .find(|v| schema == SCHEMA && v.schema == share && v.table == table)
        .ok_or_else(|| not_found(&format!("table {share}.{schema}.{table}")))
}

/// `SELECT *` of a view, by its SQL name.
fn select_all(view: &View) -> String {
    format!("SELECT * FROM \"{}\".\"{}\"", view.schema, view.table)
}

/// The table version: `quality_scores`'s, where rows enter listings.
/// The lake's tables at their latest versions, and the shared table version among them.
async fn latest(s: &Sharing) -> Result<(BTreeMap<String, LakeTable>, i64), ShareError> {
    let tables = s.market.catalog().latest().await.map_err(internal)?;
    let version = tables.get("quality_scores").and_then(|t| t.table.version()).map_or(0, |v| v as i64);
    Ok((tables, version))
}

fn with_version(mut resp: Response, version: i64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&version.to_string()) {
        resp.headers_mut().insert("delta-table-version", v);
    }
    resp
}

async fn version(
    State(s): State<Sharing>,
    Extension(p): Extension<Principal>,
    Path(TablePath { share, schema, table }): Path<TablePath>,
) -> Answer {
    resolve(&s, &p, &share, &schema, &table)?;
    Ok(with_version(StatusCode::OK.into_response(), latest(&s).await?.1))
}

/// The `protocol` and `metaData` lines of `sql`'s answer.
async fn head_lines(s: &Sharing, p: &Principal, id: &str, sql: &str) -> Result<String, ShareError> {
    let schema = s.engine.schema(p, sql).await.map_err(internal)?;
    let delta = StructType::try_from_arrow(schema.as_ref()).map_err(internal)?;
    let schema_string = serde_json::to_string(&delta).map_err(internal)?;
    let protocol = json!({"protocol": {"minReaderVersion": 1}});
    let meta = json!({"metaData": {"id": id, "format": {"provider": "parquet"}, "schemaString": schema_string,
        "partitionColumns": [], "configuration": {}}});
    Ok(format!("{protocol}\n{meta}\n"))
}

fn ndjson(body: String, version: i64) -> Response {
    with_version(([(header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8")], body).into_response(), version)
}

async fn metadata(
    State(s): State<Sharing>,
    Extension(p): Extension<Principal>,
    Path(TablePath { share, schema, table }): Path<TablePath>,
) -> Answer {
    let sql = select_all(&resolve(&s, &p, &share, &schema, &table)?);
    let version = latest(&s).await?.1;
    Ok(ndjson(head_lines(&s, &p, &format!("{share}.{table}"), &sql).await?, version))
}

/// The body of a table query (hints are optional and may be ignored by a server).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct QueryRequest {
    /// The table version asked for: only the current one is served.
    version: Option<i64>,
    /// A time to read the table as of: not served (listing tables are shared as they are now).
    timestamp: Option<String>,
    /// Hints (`predicateHints`, `limitHint`, …), which may be ignored.
    #[serde(flatten)]
    _hints: serde_json::Map<String, Value>,
}

async fn query(
    State(s): State<Sharing>,
    Extension(p): Extension<Principal>,
    Path(TablePath { share, schema, table }): Path<TablePath>,
    headers: HeaderMap,
    body: Result<JsonBody<QueryRequest>, gata_api::Problem>,
) -> Answer {
    // The body is optional (hints only); a missing or empty one means a plain query.
    let req = body.map(|JsonBody(b)| b).unwrap_or_default();
    let view = resolve(&s, &p, &share, &schema, &table)?;
    let sql = select_all(&view);
    let (tables, version) = latest(&s).await?;
    if req.version.is_some_and(|v| v != version) || req.timestamp.is_some() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            format!("listing tables are shared at their current version ({version}) only"),
        ));
    }
    let head = head_lines(&s, &p, &format!("{share}.{table}"), &sql).await?;
    let (id, size, rows) = materialize(&s, &p, &view, &tables).await?;
    let expires = SystemTime::now() + URL_TTL;
    let expires_s = expires.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let scheme = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
    let url =
        format!("{scheme}://{host}/delta-sharing/files/{id}?expires={expires_s}&sig={}", sign(&s.key, &id, expires_s));
    let file = json!({"file": {"url": url, "id": id, "partitionValues": {}, "size": size,
        "stats": json!({"numRecords": rows}).to_string(), "expirationTimestamp": expires_s * 1000}});
    Ok(ndjson(format!("{head}{file}\n"), version))
}
