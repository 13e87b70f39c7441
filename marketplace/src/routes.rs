//! The marketplace's HTTP routes. Each expects the caller's [`Principal`] in the request
//! extensions (the binary's authentication layer puts it there).
//!
//! | route | who |
//! |---|---|
//! | `GET /v1/marketplace/listings` | everyone: listings on sale, with how many contributors grant each |
//! | `POST /v1/marketplace/listings` | operators and admins (curators): publish a listing or its next version |
//! | `POST /v1/marketplace/listings/{id}/withdraw` | its curator |
//! | `POST /v1/marketplace/grants`, `/revokes` | a contributor, for their own data |
//! | `GET /v1/marketplace/grants` | a contributor: theirs; operators: all |
//! | `POST /v1/marketplace/purchases` | buyers: a pending purchase, paid by the transfer `payment_ref` names |
//! | `GET /v1/marketplace/purchases` | a buyer: theirs; operators: all (with payment status and, while pending, why) |
//! | `POST /v1/marketplace/purchases/{id}/confirm` | operators: confirm a payment by hand (recorded with who confirmed) |
//! | `GET /v1/marketplace/listings/{id}/preview` | everyone: rows, contributors and quality per kind, three sample rows (granted data only) |
//! | `GET /market` | the web page for buyers and creators (no data in it; it calls the routes above with the token it is given) |
//! | `GET /v1/marketplace/listings/{id}/stream` | a buyer who owns it: its rows as they land (NDJSON or SSE), from `?cursor=` / `Last-Event-ID` |
//!
//! With auth off (loopback, no principals) the local admin acts for whoever the body names.

use axum::{
    Extension, Json, Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use gata_api::JsonBody;
use gata_contract::{ListingSpec, MarketAction, PaymentMethod, Violation};
use gata_infra::auth::{Principal, Role};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use futures::StreamExt as _;

use crate::{MarketError, Marketplace, Result, stream::Event as StreamEvent};

/// The marketplace routes.
pub fn router(market: Marketplace) -> Router {
    Router::new()
        .route("/v1/marketplace/listings", get(listings))
        .route("/v1/marketplace/listings", post(publish))
        .route("/v1/marketplace/listings/{id}/withdraw", post(withdraw))
        .route("/v1/marketplace/listings/{id}/stream", get(stream))
        .route("/v1/marketplace/listings/{id}/preview", get(preview))
        .route("/v1/marketplace/grants", get(grants))
        .route("/v1/marketplace/grants", post(grant))
        .route("/v1/marketplace/revokes", post(revoke))
        .route("/v1/marketplace/purchases", get(purchases))
        .route("/v1/marketplace/purchases", post(purchase))
        .route("/v1/marketplace/purchases/{id}/confirm", post(confirm))
        .with_state(market)
}

/// Whose data or account a request acts on: the caller's own contributor id, or (with auth
/// off) the one the body names; `what` says what was asked, for the refusal.
pub fn acting(principal: &Principal, own: Option<&str>, named: Option<&str>, what: &str) -> Result<String> {
    match (own, named) {
        (Some(own), Some(named)) if own != named => {
            Err(MarketError::Forbidden(format!("{} acts as {own}, not {named}", principal.name)))
        }
        (Some(own), _) => Ok(own.to_string()),
        (None, Some(named)) if principal.is_local_admin() => Ok(named.to_string()),
        _ => Err(MarketError::Forbidden(format!("{} may not {what}", principal.name))),
    }
}

async fn listings(State(m): State<Marketplace>) -> Result<Json<Value>> {
    let listings = m
        .read(|market| {
            market
                .listings()
                .iter()
                .map(|(id, l)| {
                    json!({
                        "listing": l.current(),
                        "curator": l.curator,
                        "withdrawn": l.withdrawn,
                        "published_at": l.published_at,
                        "granting_contributors": market.granted(id).len(),
                    })
                })
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(Json(json!({ "listings": listings })))
}

async fn publish(
    State(m): State<Marketplace>,
    Extension(p): Extension<Principal>,
    JsonBody(spec): JsonBody<ListingSpec>,
) -> Result<Response> {
    if !p.role.operates() {
        return Err(MarketError::Forbidden(format!(
            "{} may not publish listings (curators: operators, admins)",
            p.name
        )));
    }
    let event = m.submit(Marketplace::event(&p.name, MarketAction::PublishListing { listing: spec })).await?;
    Ok((StatusCode::CREATED, Json(event)).into_response())
}

async fn withdraw(
    State(m): State<Marketplace>,
    Extension(p): Extension<Principal>,
    Path(listing_id): Path<String>,
) -> Result<Json<Value>> {
    let event = m.submit(Marketplace::event(&p.name, MarketAction::WithdrawListing { listing_id })).await?;
    Ok(Json(json!(event)))
}

async fn preview(State(m): State<Marketplace>, Path(listing_id): Path<String>) -> Result<Json<Value>> {
    let spec = m
        .read(|market| market.listings().get(&listing_id).map(|l| l.current().clone()))
        .await?
        .ok_or_else(|| crate::Refusal::UnknownListing(listing_id.clone()))?;
    Ok(Json(m.preview(&spec).await?))
}

/// The web page (public: it holds no data, and calls the API with the token it is given).
pub fn page_router() -> Router {
    Router::new().route("/market", get(|| async { axum::response::Html(include_str!("market.html")) }))
}

/// The body of a grant or revoke.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantRequest {
    /// Whose data (the caller's own; named only when auth is off).
    contributor_id: Option<String>,
    /// Which listing; absent: every listing.
    listing_id: Option<String>,
}

async fn grant_or_revoke(m: &Marketplace, p: &Principal, req: GrantRequest, grant: bool) -> Result<Json<Value>> {
    let who = acting(p, p.contributor_id.as_deref(), req.contributor_id.as_deref(), "grant access to data")?;
    let action = if grant {
        MarketAction::Grant { contributor_id: who.clone(), listing_id: req.listing_id }
    } else {
        MarketAction::Revoke { contributor_id: who.clone(), listing_id: req.listing_id }
    };
    Ok(Json(json!(m.submit(Marketplace::event(&who, action)).await?)))
}

async fn grant(
    State(m): State<Marketplace>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<GrantRequest>,
) -> Result<Json<Value>> {
    grant_or_revoke(&m, &p, req, true).await
}

async fn revoke(
    State(m): State<Marketplace>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<GrantRequest>,
) -> Result<Json<Value>> {
    grant_or_revoke(&m, &p, req, false).await
}

async fn grants(State(m): State<Marketplace>, Extension(p): Extension<Principal>) -> Result<Json<Value>> {
    let all = m.read(|market| market.grants().clone()).await?;
    let visible: Vec<Value> = all
        .into_iter()
        .filter(|(c, _)| p.role.operates() || p.contributor_id.as_deref() == Some(c.as_str()))
        .map(
            |(c, g)| json!({"contributor_id": c, "everyone": g.everyone, "listings": g.listings, "revoked": g.revoked}),
        )
        .collect();
    Ok(Json(json!({ "grants": visible })))
}

/// The body of a purchase.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseRequest {
    listing_id: String,
    /// The version to buy (default: the current one).
    version: Option<u32>,
    /// The payment rail's reference: the paying transfer's hash, or an invoice id.
    payment_ref: String,
    /// The address the buyer pays from; a buyer with a configured address pays from it.
    payer: Option<String>,
    /// The buyer (named only when auth is off).
    buyer: Option<String>,
    /// A client-chosen purchase id, so a retried request buys once.
    purchase_id: Option<Uuid>,
}

async fn purchase(
    State(m): State<Marketplace>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<PurchaseRequest>,
) -> Result<Response> {
    let own = (p.role == Role::Buyer).then_some(p.name.as_str());
    let buyer = acting(&p, own, req.buyer.as_deref(), "buy listings")?;
    let spec = m
        .read(|market| {
            let listing = market.listings().get(&req.listing_id).filter(|l| !l.withdrawn)?;
            req.version.map_or(Some(listing.current()), |v| listing.version(v)).cloned()
        })
        .await?
        .ok_or_else(|| crate::Refusal::NotOnSale {
            listing_id: req.listing_id.clone(),
            version: req.version.unwrap_or(0),
        })?;
    let payer = match (p.address, req.payer) {
        (Some(own), Some(named)) if named.parse::<gata_wallet::Address>().ok() != Some(own) => {
            return Err(MarketError::Forbidden(format!("{} pays from {own}, not from {named}", p.name)));
        }
        (Some(own), _) => Some(own.to_string()),
        (None, named) => named,
    };
    let shares = m.split_of(&spec).await?;
    let action = MarketAction::Purchase {
        purchase_id: req.purchase_id.unwrap_or_else(Uuid::now_v7),
        listing_id: spec.listing_id.clone(),
        version: spec.version,
        buyer: buyer.clone(),
        price: spec.price,
        payment_ref: req.payment_ref,
        payer,
        shares,
    };
    let event = m.submit(Marketplace::event(&buyer, action)).await?;
    Ok((StatusCode::CREATED, Json(event)).into_response())
}

async fn purchases(State(m): State<Marketplace>, Extension(p): Extension<Principal>) -> Result<Json<Value>> {
    let mine: Vec<crate::Purchase> = m
        .read(|market| market.purchases().filter(|x| p.role.operates() || x.buyer == p.name).cloned().collect())
        .await?;
    let shown: Vec<Value> = mine
        .into_iter()
        .map(|x| {
            let problem = (!x.is_paid()).then(|| m.payments().and_then(|v| v.problem(x.purchase_id))).flatten();
            let mut row = json!(x);
            row["status"] = json!(if x.is_paid() { "paid" } else { "pending" });
            if let Some(problem) = problem {
                row["payment_problem"] = json!(problem);
            }
            row
        })
        .collect();
    Ok(Json(json!({ "purchases": shown })))
}

/// The body of a confirmation by hand.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    /// What the operator checked (an invoice paid, a bank transfer).
    note: String,
}

async fn confirm(
    State(m): State<Marketplace>,
    Extension(p): Extension<Principal>,
    Path(purchase_id): Path<Uuid>,
    JsonBody(req): JsonBody<ConfirmRequest>,
) -> Result<Response> {
    if !p.role.operates() {
        return Err(MarketError::Forbidden(format!("{} may not confirm payments; operators do", p.name)));
    }
    let listing_id = m
        .read(|market| market.purchase(purchase_id).map(|x| x.listing_id.clone()))
        .await?
        .ok_or(crate::Refusal::UnknownPurchase(purchase_id))?;
    let action = MarketAction::ConfirmPayment {
        purchase_id,
        listing_id,
        method: PaymentMethod::Manual,
        tx_hash: None,
        amount_wei: None,
        block: None,
        note: Some(req.note),
    };
    let event = m.submit(Marketplace::event(&p.name, action)).await?;
    Ok((StatusCode::CREATED, Json(event)).into_response())
}

/// The query of a stream subscription.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    /// Resume after this cursor (from a delivered row, or an idle line).
    cursor: Option<String>,
    /// `earliest`: every row the listing ever had; default: rows landing from now on.
    from: Option<String>,
    /// The buyer (named only when auth is off).
    buyer: Option<String>,
}

async fn stream(
    State(m): State<Marketplace>,
    Extension(p): Extension<Principal>,
    Path(listing_id): Path<String>,
    query: std::result::Result<axum::extract::Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let axum::extract::Query(q) =
        query.map_err(|e| MarketError::Invalid(vec![Violation::new("query", e.body_text())]))?;
    let own = (p.role == Role::Buyer).then_some(p.name.as_str());
    let buyer = acting(&p, own, q.buyer.as_deref(), "subscribe to listings")?;
    let spec = m
        .read(|market| market.entitlements(&buyer).get(&listing_id).map(|s| (*s).clone()))
        .await?
        .ok_or_else(|| MarketError::Forbidden(format!("{buyer} has not purchased {listing_id}")))?;
    let resume = q.cursor.as_deref().or_else(|| headers.get("last-event-id").and_then(|v| v.to_str().ok()));
    let cursor = crate::stream::start(&m.catalog(), resume, q.from.as_deref() == Some("earliest")).await?;
    let sse =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
    let events = crate::stream::subscribe(m, buyer, spec, cursor);
    let bytes = events.map(move |e| Ok::<_, std::convert::Infallible>(Bytes::from(frame(&e, sse))));
    let content_type = if sse { "text/event-stream" } else { "application/x-ndjson" };
    Ok(([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(bytes))
        .into_response())
}

/// One stream event on the wire: an SSE frame (`id:` the cursor, `event:` the kind) or an
/// NDJSON line.
fn frame(event: &StreamEvent, sse: bool) -> String {
    match (event, sse) {
        (StreamEvent::Row(d), true) => {
            format!("id: {}\nevent: {}\ndata: {}\n\n", d.cursor, d.kind.name(), Value::Object(d.row.clone()))
        }
        (StreamEvent::Row(d), false) => {
            format!("{}\n", json!({"cursor": d.cursor, "kind": d.kind.name(), "row": d.row}))
        }
        (StreamEvent::Idle(cursor), true) => format!(": idle at {cursor}\n\n"),
        (StreamEvent::Idle(cursor), false) => format!("{}\n", json!({"cursor": cursor, "idle": true})),
        (StreamEvent::Failed(why), true) => format!("event: error\ndata: {}\n\n", json!({"error": why})),
        (StreamEvent::Failed(why), false) => format!("{}\n", json!({"error": why})),
    }
}
