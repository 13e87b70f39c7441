//! Request ids: one per request, on its log span, its response and its error body.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicU64, Ordering},
};

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use tracing::Instrument;

/// The header a request id travels in, both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest caller-chosen id kept; a longer or odd one is replaced.
const MAX_LEN: usize = 64;

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// Middleware: takes the caller's `x-request-id` when it is 1–64 characters of
/// `[A-Za-z0-9._-]`, otherwise makes one; runs the request under a `request` log span that
/// carries it, and returns it in the response's `x-request-id`.
pub async fn assign(req: Request, next: Next) -> Response {
    let id: Arc<str> = match req.headers().get(&HEADER).and_then(|v| v.to_str().ok()) {
        Some(given) if sane(given) => given.into(),
        _ => fresh().into(),
    };
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// The id of the request being answered, if this runs inside [`assign`].
pub fn current() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

fn sane(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A process-wide random prefix and a counter: unique without a random draw per request.
fn fresh() -> String {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // The standard library seeds each `RandomState` from the OS.
    let prefix = *PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new().build_hasher().finish() as u32
    });
    format!("{prefix:08x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, http::StatusCode, routing::get};
    use tower::ServiceExt;

    use super::*;
    use crate::Problem;

    fn app() -> Router {
        Router::new()
            .route(
                "/fail",
                get(|| async { Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "disk /secret full") }),
            )
            .layer(axum::middleware::from_fn(assign))
    }

    async fn call(id: Option<&str>) -> (String, serde_json::Value) {
        let mut req = Request::get("/fail");
        if let Some(id) = id {
            req = req.header(HEADER, id);
        }
        let response = app().oneshot(req.body(Body::empty()).expect("request")).await.expect("answer");
        let header = response.headers().get(HEADER).expect("id header").to_str().expect("ascii").to_string();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (header, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn a_server_error_names_its_request_and_hides_its_cause() {
        let (id, body) = call(Some("trace-42")).await;
        assert_eq!(id, "trace-42");
        assert_eq!(body["error"]["request_id"], "trace-42");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains("trace-42") && !message.contains("/secret"), "{message}");

        let (made, _) = call(Some("bad id with spaces")).await;
        assert_ne!(made, "bad id with spaces");
        let (other, _) = call(None).await;
        assert_ne!(made, other, "ids are unique");
    }
}
