//! Intake errors and their HTTP answers (the shared body of `gata_api`).

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use gata_api::ApiError;
use serde::Serialize;
use serde_json::json;

/// Result with [`IngestError`] as the default error.
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

/// One problem with one event of a request.
#[derive(Debug, Clone, Serialize)]
pub struct LineProblem {
    /// 1-based line of an NDJSON batch (1 for a single object).
    pub line: usize,
    /// JSON path of the field, empty for the whole object.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// What can go wrong taking a submission.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The content type is neither JSON nor NDJSON.
    #[error(
        "unsupported content type {0:?}: send application/json (one object) or application/x-ndjson (one object per line)"
    )]
    UnsupportedMediaType(String),

    /// The body is compressed in a way intake does not read.
    #[error("unsupported content encoding {0:?}: send the body as is, or with Content-Encoding gzip or zstd")]
    UnsupportedEncoding(String),

    /// A compressed body does not decompress.
    #[error("the body is not valid {encoding}: {reason}")]
    BadEncoding {
        /// The `Content-Encoding` it claimed.
        encoding: &'static str,
        /// What the decoder said.
        reason: String,
    },

    /// The body (decompressed, when it was compressed) is larger than allowed.
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },

    /// The batch has more events than allowed.
    #[error("batch has {count} events; at most {limit} per request")]
    TooManyEvents {
        /// Events sent.
        count: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The body holds no event at all.
    #[error("request body holds no event")]
    Empty,

    /// Some events are malformed or invalid; nothing was produced.
    #[error("{} of {total} events are invalid; nothing was accepted", invalid_events(.problems))]
    Invalid {
        /// Events in the request.
        total: usize,
        /// Every problem found.
        problems: Vec<LineProblem>,
        /// Some line is not JSON at all (400 rather than 422).
        malformed: bool,
        /// Some problem is a size limit (413 rather than 422).
        too_large: bool,
    },

    /// The broker did not take the events in time or refused them; retrying with the same
    /// `event_id`s is safe.
    #[error("the log did not acknowledge {failed} of {total} events: {reason}")]
    Unavailable {
        /// Events not acknowledged.
        failed: usize,
        /// Events in the request.
        total: usize,
        /// The first failure.
        reason: String,
    },

    /// The principal may not submit an event of the request as the contributor it names.
    #[error("line {line}: {reason}; nothing was accepted")]
    Forbidden {
        /// 1-based line of the first such event.
        line: usize,
        /// Why.
        reason: String,
    },

    /// The server failed on its side (a worker ended abnormally); nothing was produced, and
    /// sending the request again is safe. The detail goes to the log, not to the caller.
    #[error("the request could not be processed ({0}); nothing was accepted")]
    Internal(&'static str),

    /// A rate limit is spent: retry after `retry_after` seconds.
    #[error("rate limit {limit} of {who:?} is spent; retry after {retry_after} s")]
    RateLimited {
        /// Which limit (`intake_events`, `contributor_events`).
        limit: &'static str,
        /// The principal or contributor it counts for.
        who: String,
        /// Seconds to wait.
        retry_after: u64,
    },
}

fn invalid_events(problems: &[LineProblem]) -> usize {
    let mut lines: Vec<_> = problems.iter().map(|p| p.line).collect();
    lines.dedup();
    lines.len()
}

impl ApiError for IngestError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::UnsupportedEncoding(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding"),
            Self::BadEncoding { .. } => (StatusCode::BAD_REQUEST, "bad_encoding"),
            Self::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Self::TooManyEvents { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_events"),
            Self::Empty => (StatusCode::BAD_REQUEST, "empty_body"),
            Self::Invalid { malformed: true, .. } => (StatusCode::BAD_REQUEST, "malformed_json"),
            Self::Invalid { too_large: true, .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_event"),
            Self::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "log_unavailable"),
            Self::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            Self::Invalid { problems, .. } => Some(json!(problems)),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

impl aide::OperationOutput for IngestError {
    type Inner = gata_api::openapi::ErrorBody;
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        gata_api::respond(&self)
    }
}
