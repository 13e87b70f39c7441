//! Wallet sign-in over HTTP (Sign-In with Ethereum): `GET /v1/auth/nonce` hands out a nonce,
//! `POST /v1/auth/siwe` takes the signed message and returns a bearer session, and
//! `GET /v1/auth/whoami` says which principal a token stands for.
//!
//! `POST /v1/auth/link` links an existing contributor id (a configured principal's) to a wallet
//! address: the caller is that contributor, and the address signs a sign-in message listing
//! `urn:gata:link:<contributor id>`. The link, with that proof, goes into the marketplace log,
//! and from the next epoch on the contributor's rewards are paid at the address.

use std::sync::Arc;

use aide::axum::{
    ApiRouter,
    routing::{get_with, post_with},
};
use axum::{
    Extension, Json,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use gata_api::{JsonBody, Problem, openapi::refusals};
use gata_infra::auth::{
    Authenticator, Principal,
    wallet::{SignInError, WalletSessions},
};
use gata_marketplace::{Marketplace, routes::acting};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::http::error;

/// The largest sign-in request body: a message is at most 4 KiB, its signature 132 bytes.
const MAX_SIGN_IN_BYTES: usize = 16 * 1024;

/// A signed sign-in message.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// The EIP-4361 message, exactly as the wallet signed it.
    message: String,
    /// The wallet's `personal_sign` signature: `0x` and 130 hex digits.
    signature: String,
}

/// A signed link message.
#[derive(Deserialize, JsonSchema)]
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
pub fn link_router(auth: Arc<Authenticator>, market: Marketplace) -> ApiRouter {
    ApiRouter::new()
        .api_route(
            "/v1/auth/link",
            post_with(link, |op| {
                let op = op
                    .id("link_address")
                    .tag("auth")
                    .summary("Link the caller's contributor id to a wallet address, which is paid its rewards")
                    .description(
                        "For contributor ids that are not addresses (configured principals). The address signs \
                         an EIP-4361 message with a nonce from /v1/auth/nonce, checked as a sign-in is (domain, \
                         chain id, nonce used once, times, signature), that lists the resource \
                         urn:gata:link:<contributor_id>. The link and its proof go into the marketplace log; \
                         epochs ending after it is received pay the contributor at the address. With auth off, \
                         contributor_id names whose id. 401 sign_in_refused says why a message is refused; 403 \
                         when the caller acts for someone else; 422 when the id is itself an address.",
                    )
                    .response::<200, Json<Payee>>();
                refusals(op, &[401, 403, 409, 429, 503])
            })
            .layer(DefaultBodyLimit::max(MAX_SIGN_IN_BYTES))
            .get_with(linked, |op| {
                let op = op
                    .id("linked_address")
                    .tag("auth")
                    .summary("The address the caller's contributor id is paid at now, if any")
                    .response::<200, Json<Payee>>();
                refusals(op, &[403, 503])
            }),
        )
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
            Json(Payee { contributor_id: who, address: Some(address), event_id: Some(event.event_id) }).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The address a contributor id is paid at.
#[derive(serde::Serialize, JsonSchema)]
struct Payee {
    /// Whose id.
    contributor_id: String,
    /// The address its rewards go to; none while it has none.
    #[schemars(with = "Option<String>")]
    address: Option<gata_wallet::Address>,
    /// The marketplace event recording a new link.
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<uuid::Uuid>,
}

async fn linked(State((_, market)): LinkState, Extension(p): Extension<Principal>) -> Response {
    let Some(who) = p.contributor_id.clone() else {
        return error(StatusCode::FORBIDDEN, "forbidden", format!("{} is not a contributor", p.name));
    };
    match market.read(|m| m.payee(&who, chrono::DateTime::<chrono::Utc>::MAX_UTC)).await {
        Ok(address) => Json(Payee { contributor_id: who, address, event_id: None }).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The unauthenticated routes that start a wallet session.
pub fn router(auth: Arc<Authenticator>) -> ApiRouter {
    ApiRouter::new()
        .api_route(
            "/v1/auth/nonce",
            get_with(nonce, |op| {
                let op = op
                    .id("wallet_nonce")
                    .tag("auth")
                    .summary("A nonce for a Sign-In with Ethereum (EIP-4361) message")
                    .description(
                        "Single use, valid for auth.wallet.nonce_ttl. The message must name the domain and chain \
                         id returned here.",
                    )
                    .response::<200, Json<gata_infra::auth::wallet::Nonce>>();
                refusals(op, &[403, 429])
            }),
        )
        .api_route(
            "/v1/auth/siwe",
            post_with(sign_in, |op| {
                let op = op
                    .id("wallet_sign_in")
                    .tag("auth")
                    .summary("Sign in with a wallet: a signed EIP-4361 message for a bearer session")
                    .description(
                        "The server checks the domain, chain id, nonce (issued here, unexpired, unused), issue, \
                         expiry and not-before times, and the personal_sign signature. The session \
                         (Authorization: Bearer gws_...) is a contributor whose contributor_id is the address, \
                         for auth.wallet.session_ttl or until the message's expiry. 401 sign_in_refused says why; \
                         429 sign_in_busy when too many sign-ins happened within one nonce lifetime.",
                    )
                    .response::<200, Json<gata_infra::auth::wallet::Session>>();
                refusals(op, &[401, 403, 429])
            })
            .layer(DefaultBodyLimit::max(MAX_SIGN_IN_BYTES)),
        )
        .with_state(auth)
}

/// Who the caller is (behind authentication).
pub fn whoami_router() -> ApiRouter {
    ApiRouter::new().api_route(
        "/v1/auth/whoami",
        get_with(
            |Extension(p): Extension<Principal>| async move {
                Json(WhoAmI { name: p.name, role: p.role, contributor_id: p.contributor_id })
            },
            |op| op.id("whoami").tag("auth").summary("The principal the bearer token stands for"),
        ),
    )
}

/// Who the caller is.
#[derive(serde::Serialize, JsonSchema)]
struct WhoAmI {
    /// The principal's name.
    name: String,
    /// Its role.
    role: gata_infra::auth::Role,
    /// The contributor it submits as, if any.
    contributor_id: Option<String>,
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
