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

use aide::axum::{
    ApiRouter,
    routing::{get_with, post_with},
};
use axum::{
    Extension, Json,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use gata_api::{JsonBody, PathParams, openapi::refusals};
use gata_contract::{ID_PATTERN, LISTING_ID_PATTERN, ListingSpec, MarketAction, MarketEvent, PaymentMethod, Violation};
use gata_infra::auth::{Principal, Role};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use futures::StreamExt as _;

use crate::{MarketError, Marketplace, Result, stream::Event as StreamEvent};

/// The marketplace routes.
pub fn router(market: Marketplace) -> ApiRouter {
    let tag = "marketplace";
    ApiRouter::new()
        .api_route(
            "/v1/marketplace/listings",
            get_with(listings, |op| {
                refusals(
                    op.id("market_listings").tag(tag).summary(
                        "Every listing (current version), its curator, whether withdrawn, and how many \
                         contributors grant access to it",
                    ),
                    &[503],
                )
            })
            .post_with(publish, |op| {
                refusals(
                    op.id("market_publish")
                        .tag(tag)
                        .summary("Publish a listing, or the next version of one (operators and admins: curators)")
                        .response::<201, Json<MarketEvent>>(),
                    &[403, 409, 503],
                )
            }),
        )
        .api_route(
            "/v1/marketplace/listings/{id}/withdraw",
            post_with(withdraw, |op| {
                refusals(
                    op.id("market_withdraw")
                        .tag(tag)
                        .summary("Take a listing off sale (its curator); buyers keep what they bought"),
                    &[403, 404, 409, 422, 503],
                )
            }),
        )
        .api_route(
            "/v1/marketplace/listings/{id}/stream",
            get_with(stream, |op| {
                refusals(
                    op.id("market_stream").tag(tag).summary(
                        "A purchased listing's rows as they land (a buyer who owns it), resumable: NDJSON lines \
                         {cursor, kind, row} (idle lines {cursor, idle} every 15 s), or Server-Sent Events (id = \
                         cursor, event = kind) with Accept: text/event-stream. Resume after a disconnect with \
                         ?cursor= or Last-Event-ID: no gaps, no duplicates. Rows of contributors who revoke stop \
                         at once.",
                    ),
                    &[403, 410, 422, 503],
                )
            }),
        )
        .api_route(
            "/v1/marketplace/listings/{id}/preview",
            get_with(preview, |op| {
                refusals(
                    op.id("market_preview").tag(tag).summary(
                        "What a browser sees before buying: per kind, rows, contributors and quality (mean, min, \
                         max) now, and three best-scored sample rows with an excerpt (granted data only)",
                    ),
                    &[404, 503],
                )
            }),
        )
        .api_route(
            "/v1/marketplace/grants",
            get_with(grants, |op| {
                refusals(
                    op.id("market_grants").tag(tag).summary("Grants: a contributor's own; operators see all"),
                    &[503],
                )
            })
            .post_with(grant, |op| {
                refusals(
                    op.id("market_grant")
                        .tag(tag)
                        .summary("A contributor lets buyers of one listing (or of all) see their data"),
                    &[403, 404, 503],
                )
            }),
        )
        .api_route(
            "/v1/marketplace/revokes",
            post_with(revoke, |op| {
                refusals(
                    op.id("market_revoke")
                        .tag(tag)
                        .summary("A contributor withdraws a grant (one listing, or all): effective for the next read"),
                    &[403, 404, 503],
                )
            }),
        )
        .api_route(
            "/v1/marketplace/purchases",
            get_with(purchases, |op| {
                refusals(
                    op.id("market_purchases")
                        .tag(tag)
                        .summary("Purchases: a buyer's own; operators see all (with each revenue split)")
                        .description(
                            "Each purchase has status paid or pending and, while pending with a chain configured, \
                             payment_problem: why the verifier has not confirmed it yet.",
                        ),
                    &[503],
                )
            })
            .post_with(purchase, |op| {
                refusals(
                    op.id("market_purchase")
                        .tag(tag)
                        .summary(
                            "A buyer purchases a listing version; it stays pending, granting nothing, until its \
                             payment is confirmed",
                        )
                        .description(
                            "With payments.chain_rpc set, the payment verifier confirms the purchase once the \
                             transfer payment_ref names (0x and 64 hex digits) goes to payments.treasury, from the \
                             payer, with data = the purchase id's 16 bytes followed by the listing id, carries at \
                             least the price times payments.wei_per_unit, and has payments.min_confirmations. \
                             Choose purchase_id before paying, since the transfer names it. Otherwise an operator \
                             confirms by hand. Only paid purchases grant rows and pay shares.",
                        )
                        .response::<201, Json<MarketEvent>>(),
                    &[403, 404, 409, 503],
                )
            }),
        )
        .api_route(
            "/v1/marketplace/purchases/{id}/confirm",
            post_with(confirm, |op| {
                refusals(
                    op.id("market_confirm_payment")
                        .tag(tag)
                        .summary("An operator confirms a purchase's payment by hand; recorded with who confirmed")
                        .response::<201, Json<MarketEvent>>(),
                    &[403, 404, 409, 503],
                )
            }),
        )
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

/// `GET /v1/marketplace/listings`.
#[derive(Debug, Serialize, JsonSchema)]
struct Listings {
    /// Every listing, withdrawn ones included.
    listings: Vec<ListingEntry>,
}

/// One listing as the catalogue shows it.
#[derive(Debug, Serialize, JsonSchema)]
struct ListingEntry {
    /// Its current version.
    listing: ListingSpec,
    /// Who publishes it.
    curator: String,
    /// Whether it is off sale.
    withdrawn: bool,
    /// When the current version was published.
    published_at: chrono::DateTime<chrono::Utc>,
    /// How many contributors grant its buyers their data.
    granting_contributors: usize,
}

async fn listings(State(m): State<Marketplace>) -> Result<Json<Listings>> {
    let listings = m
        .read(|market| {
            market
                .listings()
                .iter()
                .map(|(id, l)| ListingEntry {
                    listing: l.current().clone(),
                    curator: l.curator.clone(),
                    withdrawn: l.withdrawn,
                    published_at: l.published_at,
                    granting_contributors: market.granted(id).len(),
                })
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(Json(Listings { listings }))
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
    PathParams(ListingPath { id: listing_id }): PathParams<ListingPath>,
) -> Result<Json<MarketEvent>> {
    let event = m.submit(Marketplace::event(&p.name, MarketAction::WithdrawListing { listing_id })).await?;
    Ok(Json(event))
}

async fn preview(
    State(m): State<Marketplace>,
    PathParams(ListingPath { id: listing_id }): PathParams<ListingPath>,
) -> Result<Json<Value>> {
    let spec = m
        .read(|market| market.listings().get(&listing_id).map(|l| l.current().clone()))
        .await?
        .ok_or_else(|| crate::Refusal::UnknownListing(listing_id.clone()))?;
    Ok(Json(m.preview(&spec).await?))
}

/// The web page (public: it holds no data, and calls the API with the token it is given).
pub fn page_router() -> ApiRouter {
    ApiRouter::new().api_route(
        "/market",
        get_with(
            || async { axum::response::Html(include_str!("market.html")) },
            |op| {
                op.id("market_page").tag("marketplace").summary(
                    "The marketplace web page for buyers and creators (public: it holds no data and calls the \
                     API with the bearer token given in its form or as #token=)",
                )
            },
        ),
    )
}

/// The body of a grant or revoke.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GrantRequest {
    /// Whose data (the caller's own; named only when auth is off).
    #[schemars(regex(pattern = ID_PATTERN))]
    contributor_id: Option<String>,
    /// Which listing; absent: every listing.
    #[schemars(regex(pattern = LISTING_ID_PATTERN))]
    listing_id: Option<String>,
}

async fn grant_or_revoke(m: &Marketplace, p: &Principal, req: GrantRequest, grant: bool) -> Result<Json<MarketEvent>> {
    let who = acting(p, p.contributor_id.as_deref(), req.contributor_id.as_deref(), "grant access to data")?;
    let action = if grant {
        MarketAction::Grant { contributor_id: who.clone(), listing_id: req.listing_id }
    } else {
        MarketAction::Revoke { contributor_id: who.clone(), listing_id: req.listing_id }
    };
    Ok(Json(m.submit(Marketplace::event(&who, action)).await?))
}

async fn grant(
    State(m): State<Marketplace>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<GrantRequest>,
) -> Result<Json<MarketEvent>> {
    grant_or_revoke(&m, &p, req, true).await
}

async fn revoke(
    State(m): State<Marketplace>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<GrantRequest>,
) -> Result<Json<MarketEvent>> {
    grant_or_revoke(&m, &p, req, false).await
}

/// `GET /v1/marketplace/grants`.
#[derive(Debug, Serialize, JsonSchema)]
struct GrantList {
    /// The caller's own grants; an operator sees everyone's.
    grants: Vec<GrantEntry>,
}

/// What one contributor grants.
#[derive(Debug, Serialize, JsonSchema)]
struct GrantEntry {
    /// Whose data.
    contributor_id: String,
    /// Granted to every listing.
    everyone: bool,
    /// Granted to these listings.
    listings: std::collections::BTreeSet<String>,
    /// Revoked for these listings (overrides `everyone`).
    revoked: std::collections::BTreeSet<String>,
}

async fn grants(State(m): State<Marketplace>, Extension(p): Extension<Principal>) -> Result<Json<GrantList>> {
    let all = m.read(|market| market.grants().clone()).await?;
    let grants = all
        .into_iter()
        .filter(|(c, _)| p.role.operates() || p.contributor_id.as_deref() == Some(c.as_str()))
        .map(|(contributor_id, g)| GrantEntry {
            contributor_id,
            everyone: g.everyone,
            listings: g.listings,
            revoked: g.revoked,
        })
        .collect();
    Ok(Json(GrantList { grants }))
}

/// The body of a purchase.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PurchaseRequest {
    /// The listing bought.
    #[schemars(regex(pattern = LISTING_ID_PATTERN))]
    listing_id: String,
    /// The version to buy (default: the current one).
    #[schemars(range(min = 1, max = u32::MAX))]
    version: Option<u32>,
    /// The payment rail's reference: the paying transfer's hash, or an invoice id.
    payment_ref: String,
    /// The address the buyer pays from; a buyer with a configured address pays from it.
    payer: Option<String>,
    /// The buyer (named only when auth is off).
    #[schemars(regex(pattern = ID_PATTERN))]
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

/// `GET /v1/marketplace/purchases`.
#[derive(Debug, Serialize, JsonSchema)]
struct Purchases {
    /// The caller's purchases; an operator sees everyone's.
    purchases: Vec<PurchaseEntry>,
}

/// A purchase with where its payment stands.
#[derive(Debug, Serialize, JsonSchema)]
struct PurchaseEntry {
    #[serde(flatten)]
    purchase: crate::Purchase,
    /// `paid` or `pending`.
    status: PaymentStatus,
    /// While pending with a chain configured: why the verifier has not confirmed it yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_problem: Option<String>,
}

/// Whether a purchase's payment is confirmed.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum PaymentStatus {
    /// Confirmed: it grants rows and pays shares.
    Paid,
    /// Not yet.
    Pending,
}

async fn purchases(State(m): State<Marketplace>, Extension(p): Extension<Principal>) -> Result<Json<Purchases>> {
    let mine: Vec<crate::Purchase> = m
        .read(|market| market.purchases().filter(|x| p.role.operates() || x.buyer == p.name).cloned().collect())
        .await?;
    let purchases = mine
        .into_iter()
        .map(|x| {
            let paid = x.is_paid();
            let payment_problem = (!paid).then(|| m.payments().and_then(|v| v.problem(x.purchase_id))).flatten();
            let status = if paid { PaymentStatus::Paid } else { PaymentStatus::Pending };
            PurchaseEntry { purchase: x, status, payment_problem }
        })
        .collect();
    Ok(Json(Purchases { purchases }))
}

/// The `{id}` of a listing route.
#[derive(Debug, Deserialize, JsonSchema)]
struct ListingPath {
    /// The listing id.
    #[schemars(regex(pattern = LISTING_ID_PATTERN))]
    id: String,
}

/// The `{id}` of a purchase route.
#[derive(Debug, Deserialize, JsonSchema)]
struct PurchasePath {
    /// The purchase id.
    id: Uuid,
}

/// The body of a confirmation by hand.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    /// What the operator checked (an invoice paid, a bank transfer).
    note: String,
}

async fn confirm(
    State(m): State<Marketplace>,
    Extension(p): Extension<Principal>,
    PathParams(PurchasePath { id: purchase_id }): PathParams<PurchasePath>,
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
#[derive(Debug, Deserialize, JsonSchema)]
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
    PathParams(ListingPath { id: listing_id }): PathParams<ListingPath>,
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
