//! Wallet sign-in over HTTP (Sign-In with Ethereum): `GET /v1/auth/nonce` hands out a nonce,
//! `POST /v1/auth/siwe` takes the signed message and returns a bearer session, and
//! `GET /v1/auth/whoami` says which principal a token stands for.
//!
//! `POST /v1/auth/link` links an existing contributor id (a configured principal's) to a wallet
//! address: the caller is that contributor, and the address signs a sign-in message listing
//! `urn:gata:link:<contributor id>`. The link, with that proof, goes into the marketplace log,
//! and from the next epoch on the contributor's rewards are paid at the address.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use gata_api::{JsonBody, Problem};
use gata_infra::auth::{
    Authenticator, Principal,
    wallet::{SignInError, WalletSessions},
};
use gata_marketplace::{Marketplace, routes::acting};
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

/// A signed link message.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Link {
    /// Whose id (the caller's own; named only when auth is off).
    contributor_id: Option<String>,
    /// The EIP-4361 message listing `urn:gata:link:<contributor id>`, exactly as signed.
    message: String,
    /// The address's `personal_sign` signature.
    signature: String,
}

/// The authenticated routes that link a contributor id to an address and show the link.
pub fn link_router(auth: Arc<Authenticator>, market: Marketplace) -> Router {
    Router::new()
        .route("/v1/auth/link", post(link).layer(DefaultBodyLimit::max(MAX_SIGN_IN_BYTES)))
        .route("/v1/auth/link", get(linked))
        .with_state((auth, market))
}

type LinkState = State<(Arc<Authenticator>, Marketplace)>;

async fn link(
    State((auth, market)): LinkState,
    Extension(p): Extension<Principal>,
    JsonBody(body): JsonBody<Link>,
) -> Response {
    let who = match acting(&p, p.contributor_id.as_deref(), body.contributor_id.as_deref(), "link an address to an id")
    {
        Ok(who) => who,
        Err(e) => return e.into_response(),
    };
    let address = match sessions(&auth).and_then(|s| s.link(&who, &body.message, &body.signature, chrono::Utc::now())) {
        Ok(address) => address,
        Err(err) => return refused(err),
    };
    let action = gata_contract::MarketAction::LinkAddress {
        contributor_id: who.clone(),
        address: address.to_string(),
        message: body.message,
        signature: body.signature,
    };
    match market.submit(Marketplace::event(&who, action)).await {
        Ok(event) => {
            tracing::info!(contributor = %who, %address, "contributor linked to an address");
            Json(json!({ "contributor_id": who, "address": address, "event_id": event.event_id })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn linked(State((_, market)): LinkState, Extension(p): Extension<Principal>) -> Response {
    let Some(who) = p.contributor_id.clone() else {
        return error(StatusCode::FORBIDDEN, "forbidden", format!("{} is not a contributor", p.name));
    };
    match market.read(|m| m.payee(&who, chrono::DateTime::<chrono::Utc>::MAX_UTC)).await {
        Ok(address) => Json(json!({ "contributor_id": who, "address": address })).into_response(),
        Err(e) => e.into_response(),
    }
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
    let problem = match err {
        SignInError::Disabled => Problem::new(StatusCode::FORBIDDEN, "wallet_sign_in_disabled", err.to_string()),
        SignInError::Refused(_) => Problem::new(StatusCode::UNAUTHORIZED, "sign_in_refused", err.to_string()),
        SignInError::Busy { retry_after } => {
            Problem::new(StatusCode::TOO_MANY_REQUESTS, "sign_in_busy", err.to_string()).retry_after(retry_after)
        }
    };
    problem.into_response()
}

async fn nonce(State(auth): State<Arc<Authenticator>>) -> Response {
    match sessions(&auth).and_then(|s| s.nonce(chrono::Utc::now())) {
        Ok(nonce) => Json(nonce).into_response(),
        Err(err) => refused(err),
    }
}

async fn sign_in(State(auth): State<Arc<Authenticator>>, JsonBody(body): JsonBody<SignIn>) -> Response {
    match sessions(&auth).and_then(|s| s.sign_in(&body.message, &body.signature, chrono::Utc::now())) {
        Ok(session) => {
            tracing::info!(address = %session.address, "wallet signed in");
            Json(session).into_response()
        }
        Err(err) => refused(err),
    }
}
