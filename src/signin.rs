//! Wallet sign-in over HTTP (Sign-In with Ethereum): `GET /v1/auth/nonce` hands out a nonce,
//! `POST /v1/auth/siwe` takes the signed message and returns a bearer session, and
//! `GET /v1/auth/whoami` says which principal a token stands for.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{DefaultBodyLimit, State, rejection::JsonRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use gata_infra::auth::{
    Authenticator, Principal,
    wallet::{SignInError, WalletSessions},
};
use serde::Deserialize;
use serde_json::json;

use crate::http::error;

/// The largest sign-in request body: a message is at most 4 KiB, its signature 132 bytes.
const MAX_SIGN_IN_BYTES: usize = 16 * 1024;

/// A signed sign-in message.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// The EIP-4361 message, exactly as the wallet signed it.
    message: String,
    /// The wallet's `personal_sign` signature: `0x` and 130 hex digits.
    signature: String,
}

/// The unauthenticated routes that start a wallet session.
pub fn router(auth: Arc<Authenticator>) -> Router {
    Router::new()
        .route("/v1/auth/nonce", get(nonce))
        .route("/v1/auth/siwe", post(sign_in).layer(DefaultBodyLimit::max(MAX_SIGN_IN_BYTES)))
        .with_state(auth)
}

/// Who the caller is (behind authentication).
pub fn whoami_router() -> Router {
    Router::new().route(
        "/v1/auth/whoami",
        get(|Extension(p): Extension<Principal>| async move {
            Json(json!({ "name": p.name, "role": p.role, "contributor_id": p.contributor_id }))
        }),
    )
}

fn sessions(auth: &Authenticator) -> Result<&WalletSessions, SignInError> {
    auth.wallets().ok_or(SignInError::Disabled)
}

fn refused(err: SignInError) -> Response {
    match err {
        SignInError::Disabled => error(StatusCode::FORBIDDEN, "wallet_sign_in_disabled", &err.to_string()),
        SignInError::Refused(_) => error(StatusCode::UNAUTHORIZED, "sign_in_refused", &err.to_string()),
        SignInError::Busy { retry_after } => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "sign_in_busy", &err.to_string());
            response.headers_mut().insert(header::RETRY_AFTER, retry_after.into());
            response
        }
    }
}

async fn nonce(State(auth): State<Arc<Authenticator>>) -> Response {
    match sessions(&auth).and_then(|s| s.nonce(chrono::Utc::now())) {
        Ok(nonce) => Json(nonce).into_response(),
        Err(err) => refused(err),
    }
}

async fn sign_in(State(auth): State<Arc<Authenticator>>, body: Result<Json<SignIn>, JsonRejection>) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), "bad_request", &rejection.body_text()),
    };
    match sessions(&auth).and_then(|s| s.sign_in(&body.message, &body.signature, chrono::Utc::now())) {
        Ok(session) => {
            tracing::info!(address = %session.address, "wallet signed in");
            Json(session).into_response()
        }
        Err(err) => refused(err),
    }
}
