//! One error body for every route.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::Value;

use crate::{
    openapi::{ErrorBody, ErrorDetail},
    request_id,
};

/// An error a route answers with. Each crate's error enum implements it; [`respond`] writes
/// the answer.
pub trait ApiError: std::fmt::Display {
    /// The HTTP status and a stable, machine-readable code (`invalid_event`, `rate_limited`,
    /// …): one `match` over the error's variants.
    fn status_and_code(&self) -> (StatusCode, &'static str);
    /// The HTTP status.
    fn status(&self) -> StatusCode {
        self.status_and_code().0
    }
    /// The stable code.
    fn code(&self) -> &'static str {
        self.status_and_code().1
    }
    /// Structured detail for the caller, such as one entry per invalid field. Never sent
    /// with a 5xx.
    fn details(&self) -> Option<Value> {
        None
    }
    /// Seconds after which a retry may succeed (`Retry-After`). A 503 without one says 1.
    fn retry_after(&self) -> Option<u64> {
        None
    }
}

/// The answer to `err`: `{"error": {"code", "message", "details"?, "request_id"?}}` with its
/// status and `Retry-After`.
pub fn respond(err: &dyn ApiError) -> Response {
    let status = err.status();
    let body = ErrorBody {
        error: ErrorDetail {
            code: err.code().to_string(),
            message: public_message(status, err),
            details: if status.is_server_error() { None } else { err.details() },
            request_id: request_id::current().map(|id| id.to_string()),
        },
    };
    let mut response = (status, Json(body)).into_response();
    let retry_after = err.retry_after().or((status == StatusCode::SERVICE_UNAVAILABLE).then_some(1));
    if let Some(secs) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// What the caller is told of `err`: its own message for a 4xx. For a 5xx the cause goes to
/// the log under the request id, and the caller gets the status and that id only, since a
/// server-side cause (a broker address, a path, an engine's internals) is not theirs to see.
pub fn public_message(status: StatusCode, err: &dyn std::fmt::Display) -> String {
    if !status.is_server_error() {
        return err.to_string();
    }
    let id = request_id::current();
    let id = id.as_deref().unwrap_or("-");
    tracing::error!(request_id = id, status = status.as_u16(), error = %err, "request failed on the server side");
    let what = match status {
        StatusCode::SERVICE_UNAVAILABLE => "the service cannot take this request now; retry",
        StatusCode::GATEWAY_TIMEOUT => "the request did not finish in time; retry",
        _ => "internal error",
    };
    format!("{what} (request {id}; the cause is in the server log)")
}

/// An error built on the spot: a status, a code and a message.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl Problem {
    /// `status` with the stable `code` and a message for the caller.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// The same, telling the caller to retry after `secs` seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ApiError for Problem {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        (self.status, self.code)
    }
    fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        respond(&self)
    }
}
