//! The one JSON body extractor.

use axum::{
    extract::{FromRequest, FromRequestParts, Path, Request, rejection::JsonRejection},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Problem;

/// A JSON request body of type `T`. A body that is not JSON, not sent as JSON, too large, or
/// not a `T` is answered with the shared error body:
/// `malformed_json` (400), `unsupported_media_type` (415), `body_too_large` (413) or
/// `invalid_body` (422, naming the field). As in JSON Schema, a number with a zero fraction
/// (`1.0`) is an integer.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let mut value = match axum::Json::<Value>::from_request(req, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => return Err(rejected(&rejection)),
        };
        integral_numbers(&mut value);
        serde_path_to_error::deserialize(value).map(Self).map_err(|e| {
            let message = format!("Failed to deserialize the JSON body into the target type: {e}");
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
        })
    }
}

/// The largest integer a double holds exactly (2^53).
const EXACT: f64 = 9_007_199_254_740_992.0;

/// Writes every number with a zero fraction that a double holds exactly as an integer.
fn integral_numbers(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() <= EXACT) {
                *n = if f < 0.0 { (f as i64).into() } else { (f as u64).into() };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// Path segments of type `T`. Segments that are not a `T` are answered with the shared error
/// body: `invalid_path` (400).
#[derive(Debug, Clone, Copy, Default)]
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(Problem::new(rejection.status(), "invalid_path", rejection.body_text())),
        }
    }
}

fn rejected(rejection: &JsonRejection) -> Problem {
    let status = rejection.status();
    let code = match rejection {
        JsonRejection::JsonDataError(_) => "invalid_body",
        JsonRejection::JsonSyntaxError(_) => "malformed_json",
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        _ => "bad_request",
    };
    Problem::new(status, code, rejection.body_text())
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, http::header, routing::post};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sql {
        #[expect(dead_code, reason = "only parsed")]
        sql: String,
        #[expect(dead_code, reason = "only parsed")]
        rows: Option<u32>,
    }

    async fn post_body(content_type: &str, body: &'static str) -> (StatusCode, Value) {
        let app = Router::new()
            .route("/", post(|JsonBody(_): JsonBody<Sql>| async { "ok" }))
            .layer(axum::extract::DefaultBodyLimit::max(64));
        let req =
            Request::post("/").header(header::CONTENT_TYPE, content_type).body(Body::from(body)).expect("request");
        let response = app.oneshot(req).await.expect("answer");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn every_rejection_has_the_shared_body() {
        let cases = [
            ("application/json", "{\"sql\": ", StatusCode::BAD_REQUEST, "malformed_json"),
            ("text/plain", "{\"sql\": \"SELECT 1\"}", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ("application/json", "{\"sql\": 1}", StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            (
                "application/json",
                "{\"sql\": \"SELECT 1\", \"rows\": 2.5}",
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
            ),
            (
                "application/json",
                "{\"sql\": \"SELECT 1 FROM a_table_with_a_name_long_enough_to_pass_the_limit\"}",
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
            ),
        ];
        for (content_type, body, status, code) in cases {
            let (got, answer) = post_body(content_type, body).await;
            assert_eq!(got, status, "{body}: {answer}");
            assert_eq!(answer["error"]["code"], code, "{answer}");
            assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
        }
        assert_eq!(post_body("application/json", "{\"sql\": \"SELECT 1\"}").await.0, StatusCode::OK);
        // JSON Schema counts 1.0 as an integer, and so does the extractor.
        assert_eq!(post_body("application/json", "{\"sql\": \"SELECT 1\", \"rows\": 2.0}").await.0, StatusCode::OK);
    }
}
