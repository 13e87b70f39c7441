//! `market_event.v1`: what happens in the marketplace — a curator publishes or withdraws a
//! listing, a contributor grants or revokes access to their data, a buyer purchases a listing.
//! The marketplace state (listings, grants, purchases, revenue shares) is a projection of these
//! events on `gata.marketplace.v1`, so it is rebuilt by reading the topic again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    EventKind, Limits, Violation,
    validate::{Checker, from_json},
};

/// Longest listing id, in bytes.
pub const MAX_LISTING_ID_BYTES: usize = 48;
/// A listing id as a regular expression (the description's `pattern`); reserved names aside.
pub const LISTING_ID_PATTERN: &str = "^[a-z][a-z0-9_]{0,47}$";

/// One marketplace event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MarketEvent {
    /// Unique id (a retried request reuses it).
    pub event_id: Uuid,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The principal that acted (curator, contributor, buyer).
    pub actor: String,
    /// What happened.
    #[serde(flatten)]
    pub action: MarketAction,
}

/// What a marketplace event does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum MarketAction {
    /// A listing, or a new version of one, goes on sale.
    PublishListing {
        /// The definition.
        listing: ListingSpec,
    },
    /// A listing is taken off sale; buyers who purchased it keep their access.
    WithdrawListing {
        /// Which.
        listing_id: String,
    },
    /// A contributor lets buyers of one listing (or of every listing, when absent) see their data.
    Grant {
        /// Whose data.
        contributor_id: String,
        /// For which listing; absent: every listing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        listing_id: Option<String>,
    },
    /// A contributor withdraws a grant; new reads and stream deliveries stop showing their data.
    Revoke {
        /// Whose data.
        contributor_id: String,
        /// For which listing; absent: every listing (and every grant they made).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        listing_id: Option<String>,
    },
    /// A buyer purchases a listing version; the price is split among the contributors whose
    /// granted, accepted rows the listing held at that moment.
    Purchase {
        /// The purchase's id (also the reference a payment rail settles against).
        purchase_id: Uuid,
        /// Which listing.
        listing_id: String,
        /// Which version of it.
        version: u32,
        /// Who buys (a buyer principal's name).
        buyer: String,
        /// Price paid, token base units (the version's price).
        price: u64,
        /// The payment rail's reference: the hash of the transfer that pays for it (`0x` and 64
        /// hex digits), or an invoice id an operator confirms by hand.
        payment_ref: String,
        /// The address the buyer pays from (its transfer must come from it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payer: Option<String>,
        /// The revenue split, one share per contributor, summing to `price`.
        shares: Vec<RevenueShare>,
    },
    /// A purchase's payment is confirmed: a transfer found on chain by the payment verifier, or
    /// an operator's word (the actor). Until then a purchase is pending: it grants no rows and
    /// pays no shares.
    ConfirmPayment {
        /// Which purchase.
        purchase_id: Uuid,
        /// Its listing (the purchase's partition).
        listing_id: String,
        /// How it was confirmed.
        method: PaymentMethod,
        /// The transfer's hash (`chain`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tx_hash: Option<String>,
        /// What the transfer paid, wei, in decimal (`chain`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount_wei: Option<String>,
        /// The block holding the transfer (`chain`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        block: Option<u64>,
        /// The operator's note (`manual`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A contributor id (one not itself an address) is linked to a wallet address, which is
    /// paid the contributor's rewards from then on. The proof travels with the event: a Sign-In
    /// with Ethereum message the address signed, listing the resource
    /// `urn:gata:link:<contributor_id>`, so anyone folding the log checks it again.
    LinkAddress {
        /// Whose rewards.
        contributor_id: String,
        /// The payee (EIP-55).
        address: String,
        /// The EIP-4361 message, exactly as signed.
        message: String,
        /// Its `personal_sign` signature: `0x` and 130 hex digits.
        signature: String,
    },
}

/// How a payment was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// A transfer to the treasury, from the payer, naming the purchase, found on chain with
    /// enough confirmations.
    Chain,
    /// An operator confirmed it by hand.
    Manual,
}

/// What a payment transfer's `data` must be: the purchase id's 16 bytes, then the listing id.
/// A transfer therefore pays for one purchase only.
pub fn payment_reference(purchase_id: Uuid, listing_id: &str) -> Vec<u8> {
    let mut out = purchase_id.as_bytes().to_vec();
    out.extend_from_slice(listing_id.as_bytes());
    out
}

/// One contributor's share of a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RevenueShare {
    /// The contributor.
    pub contributor_id: String,
    /// Their accepted submissions in the listing at the time of the sale.
    pub accepted: u64,
    /// Their share, token base units.
    pub amount: u64,
}

/// A curated dataset: which submissions, at what price, on what terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListingSpec {
    /// Stable id: lowercase letters, digits and `_`, starting with a letter (`basil_chat`).
    #[schemars(regex(pattern = LISTING_ID_PATTERN))]
    pub listing_id: String,
    /// Version, from 1; each publish of an existing listing is the next version.
    pub version: u32,
    /// Title shown to buyers.
    pub title: String,
    /// What it holds and why it is useful.
    #[serde(default)]
    pub description: String,
    /// Which kinds of submission it includes (each one is a table of the listing).
    pub kinds: Vec<EventKind>,
    /// Only submissions scored at least this (in [-1, 1]); accepted ones only in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f64>,
    /// Only chat turns and preferences whose client locale starts with one of these (`en`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    /// Only image-text pairs under one of these licenses (`CC-BY-4.0`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<String>,
    /// Only submissions received at or after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// Only submissions received before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    /// Price, token base units.
    pub price: u64,
    /// Terms of use the buyer accepts.
    pub terms: String,
}

impl MarketEvent {
    /// Parses and validates one event.
    pub fn parse(json: &[u8], limits: &Limits) -> Result<MarketEvent, Vec<Violation>> {
        let event: MarketEvent = from_json(json)?;
        let violations = event.violations(limits);
        if violations.is_empty() { Ok(event) } else { Err(violations) }
    }

    /// The JSON bytes of the event.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The listing the event is about, if any (also its partition key; else the contributor).
    pub fn listing_id(&self) -> Option<&str> {
        match &self.action {
            MarketAction::PublishListing { listing } => Some(&listing.listing_id),
            MarketAction::WithdrawListing { listing_id }
            | MarketAction::Purchase { listing_id, .. }
            | MarketAction::ConfirmPayment { listing_id, .. } => Some(listing_id),
            MarketAction::Grant { listing_id, .. } | MarketAction::Revoke { listing_id, .. } => listing_id.as_deref(),
            MarketAction::LinkAddress { .. } => None,
        }
    }

    /// The partition key: the listing, or for listing-wide grants and links the contributor.
    pub fn key(&self) -> &str {
        match &self.action {
            MarketAction::Grant { contributor_id, listing_id: None }
            | MarketAction::Revoke { contributor_id, listing_id: None }
            | MarketAction::LinkAddress { contributor_id, .. } => contributor_id,
            _ => self.listing_id().unwrap_or(&self.actor),
        }
    }

    /// The action's snake_case name (`purchase`).
    pub fn action_name(&self) -> &'static str {
        match self.action {
            MarketAction::PublishListing { .. } => "publish_listing",
            MarketAction::WithdrawListing { .. } => "withdraw_listing",
            MarketAction::Grant { .. } => "grant",
            MarketAction::Revoke { .. } => "revoke",
            MarketAction::Purchase { .. } => "purchase",
            MarketAction::ConfirmPayment { .. } => "confirm_payment",
            MarketAction::LinkAddress { .. } => "link_address",
        }
    }

    /// Every rule this event breaks (shape only; whether it fits the marketplace's state, such
    /// as a purchase of an existing listing, is the projection's to decide).
    pub fn violations(&self, limits: &Limits) -> Vec<Violation> {
        let mut c = Checker::new(limits);
        c.id("actor", &self.actor);
        c.timestamp("occurred_at", self.occurred_at);
        match &self.action {
            MarketAction::PublishListing { listing } => listing.check(&mut c),
            MarketAction::WithdrawListing { listing_id } => listing_id_rule(&mut c, "listing_id", listing_id),
            MarketAction::Grant { contributor_id, listing_id }
            | MarketAction::Revoke { contributor_id, listing_id } => {
                c.id("contributor_id", contributor_id);
                if let Some(l) = listing_id {
                    listing_id_rule(&mut c, "listing_id", l);
                }
            }
            MarketAction::LinkAddress { contributor_id, address, message, signature } => {
                c.id("contributor_id", contributor_id);
                c.require(!is_address(contributor_id), "contributor_id", "is an address, which is paid itself");
                c.require(is_address(address), "address", "is an address: 0x and 40 hex digits");
                c.require(
                    message.len() <= gata_wallet::siwe::MAX_MESSAGE_BYTES,
                    "message",
                    format!("is at most {} bytes", gata_wallet::siwe::MAX_MESSAGE_BYTES),
                );
                c.require(is_0x_hex(signature, 130), "signature", "is 0x and 130 hex digits");
            }
            MarketAction::ConfirmPayment { listing_id, method, tx_hash, amount_wei, note, .. } => {
                listing_id_rule(&mut c, "listing_id", listing_id);
                if let Some(h) = tx_hash {
                    c.require(is_tx_hash(h), "tx_hash", "is 0x and 64 hex digits");
                }
                if let Some(a) = amount_wei {
                    c.require(a.parse::<u128>().is_ok(), "amount_wei", "is a decimal number of wei");
                }
                if let Some(n) = note {
                    c.text("note", n);
                }
                c.require(
                    (*method == PaymentMethod::Chain) == tx_hash.is_some(),
                    "tx_hash",
                    "is given for a chain confirmation, and only for it",
                );
            }
            MarketAction::Purchase { listing_id, version, buyer, price, payment_ref, payer, shares, .. } => {
                listing_id_rule(&mut c, "listing_id", listing_id);
                c.require(*version >= 1, "version", "starts at 1");
                c.id("buyer", buyer);
                c.id("payment_ref", payment_ref);
                if let Some(p) = payer {
                    c.require(is_address(p), "payer", "is an address: 0x and 40 hex digits");
                }
                let total = shares.iter().try_fold(0u64, |sum, s| sum.checked_add(s.amount));
                c.require(total == Some(*price), "shares", format!("must sum to the price {price} (sum {total:?})"));
                for (i, s) in shares.iter().enumerate() {
                    c.id(&format!("shares[{i}].contributor_id"), &s.contributor_id);
                }
            }
        }
        c.out
    }
}

impl ListingSpec {
    fn check(&self, c: &mut Checker<'_>) {
        listing_id_rule(c, "listing.listing_id", &self.listing_id);
        c.require(self.version >= 1, "listing.version", "starts at 1");
        c.text("listing.title", &self.title);
        c.text("listing.terms", &self.terms);
        c.require(!self.kinds.is_empty(), "listing.kinds", "name at least one kind");
        let mut kinds = self.kinds.clone();
        kinds.dedup();
        c.require(kinds.len() == self.kinds.len(), "listing.kinds", "name each kind once");
        if let Some(s) = self.min_score {
            c.require((-1.0..=1.0).contains(&s), "listing.min_score", format!("is {s}; must be in [-1, 1]"));
        }
        for (i, l) in self.languages.iter().enumerate() {
            c.id(&format!("listing.languages[{i}]"), l);
        }
        for (i, l) in self.licenses.iter().enumerate() {
            c.id(&format!("listing.licenses[{i}]"), l);
        }
        if let (Some(from), Some(to)) = (self.from, self.to) {
            c.require(from < to, "listing.to", "must be after from");
        }
    }
}

/// Whether `text` is `0x` and `digits` hex digits (any case).
fn is_0x_hex(text: &str, digits: usize) -> bool {
    text.strip_prefix("0x").is_some_and(|h| h.len() == digits && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `text` is a transaction hash: `0x` and 64 hex digits.
pub fn is_tx_hash(text: &str) -> bool {
    is_0x_hex(text, 64)
}

/// Whether `text` is an address: `0x` and 40 hex digits (any case).
pub fn is_address(text: &str) -> bool {
    is_0x_hex(text, 40)
}

/// A listing id names a SQL schema and a Delta Sharing share, so it is kept to a safe alphabet.
/// Ids a listing may not take. A listing id becomes an SQL schema beside the lake's tables, so
/// it must not shadow the SQL engine's own schemas (`public`, `information_schema`, …) or the
/// name of a lake table (the lakehouse's tests keep this list complete). A refused id is refused
/// on replay too, so an old listing that took one no longer shadows anything.
pub const RESERVED_LISTING_IDS: [&str; 15] = [
    "public",
    "information_schema",
    "pg_catalog",
    "datafusion",
    "default",
    "events",
    "chat_turns",
    "preferences",
    "image_text_pairs",
    "quality_scores",
    "dva_votes",
    "dead_letters",
    "rewards",
    "market_events",
    "review_labels",
];

fn listing_id_rule(c: &mut Checker<'_>, field: &str, id: &str) {
    let ok = id.len() <= MAX_LISTING_ID_BYTES
        && id.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    c.require(ok, field, format!("must be 1..={MAX_LISTING_ID_BYTES} of a-z, 0-9 and _, starting with a letter"));
    c.require(
        !RESERVED_LISTING_IDS.contains(&id),
        field,
        format!("{id:?} is reserved: it names an SQL schema or a lake table"),
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: serde_json::Value) -> Result<MarketEvent, Vec<Violation>> {
        MarketEvent::parse(v.to_string().as_bytes(), &Limits::default())
    }

    fn fields(v: serde_json::Value) -> Vec<String> {
        parse(v).expect_err("refused").into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn a_listing_round_trips_and_bad_ones_are_located() {
        let listing = json!({
            "event_id": "0190a000-0000-7000-8000-000000000001", "occurred_at": "2026-11-25T10:00:00Z",
            "actor": "curator_1", "action": "publish_listing",
            "listing": {"listing_id": "basil_chat", "version": 1, "title": "Gardening chats",
                        "kinds": ["chat_turn", "preference"], "min_score": 0.5, "languages": ["en"],
                        "price": 5_000_000_000u64, "terms": "research only"}
        });
        let event = parse(listing.clone()).expect("valid");
        assert_eq!(event.key(), "basil_chat");
        assert_eq!(MarketEvent::parse(&event.to_json(), &Limits::default()).expect("round trip"), event);

        let mut bad = listing.clone();
        bad["listing"]["listing_id"] = json!("Basil Chat");
        bad["listing"]["kinds"] = json!([]);
        bad["listing"]["min_score"] = json!(2.0);
        assert_eq!(fields(bad), ["listing.listing_id", "listing.kinds", "listing.min_score"]);
        for reserved in ["public", "information_schema", "chat_turns"] {
            let mut shadow = listing.clone();
            shadow["listing"]["listing_id"] = json!(reserved);
            assert_eq!(fields(shadow), ["listing.listing_id"], "{reserved}");
        }
    }

    #[test]
    fn a_purchase_split_must_sum_to_its_price() {
        let purchase = json!({
            "event_id": "0190a000-0000-7000-8000-000000000002", "occurred_at": "2026-11-25T10:00:00Z",
            "actor": "buyer_1", "action": "purchase", "purchase_id": "0190a000-0000-7000-8000-000000000003",
            "listing_id": "basil_chat", "version": 1, "buyer": "buyer_1", "price": 10, "payment_ref": "inv-1",
            "shares": [{"contributor_id": "a", "accepted": 2, "amount": 7}, {"contributor_id": "b", "accepted": 1, "amount": 3}]
        });
        assert!(parse(purchase.clone()).is_ok());
        let mut bad = purchase;
        bad["shares"][1]["amount"] = json!(2);
        assert_eq!(fields(bad), ["shares"]);
        let unknown = json!({"event_id": "0190a000-0000-7000-8000-000000000004",
            "occurred_at": "2026-11-25T10:00:00Z", "actor": "x", "action": "steal"});
        assert!(parse(unknown).is_err());
    }

    #[test]
    fn listing_wide_grants_are_keyed_by_contributor() {
        let grant = json!({"event_id": "0190a000-0000-7000-8000-000000000005", "occurred_at": "2026-11-25T10:00:00Z",
            "actor": "person_1", "action": "grant", "contributor_id": "person_1"});
        let event = parse(grant).expect("valid");
        assert_eq!((event.key(), event.listing_id()), ("person_1", None));
    }
}
