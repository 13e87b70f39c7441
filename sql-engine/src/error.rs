//! Query errors and their HTTP answers (the shared body of `gata_api`).

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use gata_api::ApiError;
use gata_lakehouse::deltalake::datafusion::error::DataFusionError;

/// Result with [`QueryError`] as the default error.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

/// What can go wrong answering a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request body is not `{"sql": "..."}`.
    #[error("bad request: {0}")]
    BadRequest(String),

    /// The statement is not a read-only query over the lake.
    #[error("only read-only queries over the lake tables are allowed: {0}")]
    NotAllowed(String),

    /// The SQL does not parse or plan (unknown table or column, type error).
    #[error("{0}")]
    Plan(#[source] Box<DataFusionError>),

    /// The query needed more memory than allowed.
    #[error("query exceeded its memory limit: {0}")]
    ResourcesExhausted(#[source] Box<DataFusionError>),

    /// The query ran longer than allowed.
    #[error("query ran longer than {0:?}")]
    Timeout(std::time::Duration),

    /// The engine failed while executing.
    #[error("query failed: {0}")]
    Engine(#[source] Box<DataFusionError>),

    /// The lake could not be read.
    #[error(transparent)]
    Lake(Box<gata_lakehouse::LakeError>),

    /// The query service could not start (its runtime, its metrics).
    #[error("starting the query service: {0}")]
    Startup(String),

    /// Encoding the answer failed.
    #[error("encoding the answer: {0}")]
    Encode(#[source] gata_lakehouse::deltalake::arrow::error::ArrowError),

    /// Writing the output failed.
    #[error("writing the output failed: {0}")]
    Io(#[source] std::io::Error),

    /// The Flight SQL server stopped with an error.
    #[error("Flight SQL server: {0}")]
    Flight(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// The principal may not do this.
    #[error("{0}")]
    Forbidden(&'static str),

    /// A table could not be read.
    #[error("reading table {table}: {source}")]
    Table {
        /// SQL name.
        table: String,
        /// What delta-rs said.
        #[source]
        source: Box<gata_lakehouse::deltalake::DeltaTableError>,
    },

    /// A time-travel clause names a version or time the table does not have.
    #[error("{0}")]
    TimeTravel(String),

    /// The `Accept` header asks for a format this service does not write.
    #[error(
        "cannot answer in {0}; accept one of application/json, application/x-ndjson, text/csv, application/vnd.apache.arrow.stream, application/vnd.apache.parquet"
    )]
    NotAcceptable(String),

    /// The answer is larger than `query.max_result_bytes` or `query.max_stream_rows`.
    #[error("{0}")]
    TooLarge(String),

    /// An operator cancelled the query, or its client went away.
    #[error("query {0} was cancelled")]
    Cancelled(String),

    /// What was asked for does not exist.
    #[error("{0}")]
    NotFound(String),

    /// The principal's SQL rate limit is spent: retry after this many seconds.
    #[error("rate limit sql of {who:?} is spent; retry after {retry_after} s")]
    RateLimited {
        /// The principal.
        who: String,
        /// Seconds to wait.
        retry_after: u64,
    },
}

impl From<gata_lakehouse::LakeError> for QueryError {
    fn from(err: gata_lakehouse::LakeError) -> Self {
        QueryError::Lake(Box::new(err))
    }
}

impl From<DataFusionError> for QueryError {
    /// Classifies an engine error by its root cause: the caller's SQL (400), resources (503),
    /// or the engine (500).
    fn from(err: DataFusionError) -> Self {
        match err.find_root() {
            DataFusionError::Plan(_)
            | DataFusionError::SQL(..)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => QueryError::Plan(Box::new(err)),
            DataFusionError::ResourcesExhausted(_) => QueryError::ResourcesExhausted(Box::new(err)),
            _ => QueryError::Engine(Box::new(err)),
        }
    }
}

impl ApiError for QueryError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::NotAllowed(_) => (StatusCode::BAD_REQUEST, "not_allowed"),
            Self::Plan(_) => (StatusCode::BAD_REQUEST, "plan_error"),
            Self::TimeTravel(_) => (StatusCode::BAD_REQUEST, "time_travel"),
            Self::ResourcesExhausted(_) => (StatusCode::SERVICE_UNAVAILABLE, "resources_exhausted"),
            Self::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            Self::Engine(_)
            | Self::Lake(_)
            | Self::Encode(_)
            | Self::Io(_)
            | Self::Flight(_)
            | Self::Startup(_)
            | Self::Table { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "not_acceptable"),
            Self::TooLarge(_) => (StatusCode::UNPROCESSABLE_ENTITY, "result_too_large"),
            Self::Cancelled(_) => (StatusCode::CONFLICT, "cancelled"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

impl aide::OperationOutput for QueryError {
    type Inner = gata_api::openapi::ErrorBody;
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        gata_api::respond(&self)
    }
}
