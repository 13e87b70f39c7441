//! The marketplace state as a fold of its events.
//!
//! Events are applied in log order. One that does not fit the state (a purchase of a listing
//! that does not exist, at the wrong price, a grant made by someone else than the contributor)
//! is refused and leaves the state as it was; replaying the same log refuses the same events.
//! An event id seen before is ignored, so a re-delivered or retried event changes nothing.
//!
//! A link names the address a contributor id is paid at; the proof (the address's signed
//! message) is checked again on every fold, so a link record nobody signed links nothing.
//!
//! A purchase is pending until a `confirm_payment` event of its own listing confirms it; only
//! confirmed purchases grant rows and pay shares, in the epoch of their confirmation.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use gata_contract::{ListingSpec, MarketAction, MarketEvent, PaymentMethod, RevenueShare};
use gata_wallet::Address;
use serde::Serialize;
use uuid::Uuid;

/// Why an event does not fit the marketplace's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The listing is not (or no longer) on sale, or that version does not exist.
    #[error("no listing {listing_id} version {version} on sale")]
    NotOnSale {
        /// Listing.
        listing_id: String,
        /// Version asked for.
        version: u32,
    },
    /// The listing does not exist.
    #[error("no listing {0}")]
    UnknownListing(String),
    /// A publish that is not the next version.
    #[error("listing {listing_id} is at version {current}; the next publish must be version {}", current + 1)]
    WrongVersion {
        /// Listing.
        listing_id: String,
        /// Its current version (0: new).
        current: u32,
    },
    /// Someone acted on what is not theirs.
    #[error("{actor} may not {what}")]
    NotYours {
        /// Who tried.
        actor: String,
        /// What.
        what: String,
    },
    /// A purchase at another price than the listing's.
    #[error("listing {listing_id} version {version} costs {price}, not {paid}")]
    WrongPrice {
        /// Listing.
        listing_id: String,
        /// Version.
        version: u32,
        /// Its price.
        price: u64,
        /// What the purchase says.
        paid: u64,
    },
    /// A purchase id used before for the same listing.
    #[error("purchase {0} exists")]
    DuplicatePurchase(Uuid),
    /// A confirmation of a purchase the listing does not have.
    #[error("no purchase {0} of this listing")]
    UnknownPurchase(Uuid),
    /// A second confirmation of one purchase (another instance confirmed it first).
    #[error("purchase {0} is confirmed already")]
    AlreadyConfirmed(Uuid),
    /// A link whose proof does not hold: the message is not signed by the address it links, or
    /// does not name the contributor.
    #[error("the link is not proven: {0}")]
    UnprovenLink(String),
}

/// A listing with its versions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing {
    /// Every version published, oldest first (`versions[v - 1]` is version `v`).
    pub versions: Vec<ListingSpec>,
    /// Who publishes it.
    pub curator: String,
    /// Whether it is off sale.
    pub withdrawn: bool,
    /// When the latest version was published.
    pub published_at: DateTime<Utc>,
}

impl Listing {
    /// The latest version.
    pub fn current(&self) -> &ListingSpec {
        // A listing exists only once a first version was published.
        &self.versions[self.versions.len() - 1]
    }

    /// Version `v`, if published.
    pub fn version(&self, v: u32) -> Option<&ListingSpec> {
        self.versions.get(usize::try_from(v).ok()?.checked_sub(1)?)
    }
}

/// One contributor's grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Grants {
    /// Granted to every listing.
    pub everyone: bool,
    /// Granted to these listings.
    pub listings: BTreeSet<String>,
    /// Revoked for these listings (overrides `everyone`).
    pub revoked: BTreeSet<String>,
}

impl Grants {
    /// Whether buyers of `listing` see this contributor's data.
    pub fn allows(&self, listing: &str) -> bool {
        (self.everyone || self.listings.contains(listing)) && !self.revoked.contains(listing)
    }
}

/// A recorded purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Purchase {
    /// Its id.
    pub purchase_id: Uuid,
    /// Listing bought.
    pub listing_id: String,
    /// Version bought.
    pub version: u32,
    /// Buyer.
    pub buyer: String,
    /// Price, base units.
    pub price: u64,
    /// Payment rail reference.
    pub payment_ref: String,
    /// The address the buyer pays from, when known.
    pub payer: Option<String>,
    /// Revenue split.
    pub shares: Vec<RevenueShare>,
    /// When the platform received it.
    pub received_at: DateTime<Utc>,
    /// Its payment's confirmation; none while pending.
    pub payment: Option<Confirmation>,
}

impl Purchase {
    /// Whether its payment is confirmed (it grants rows and pays shares).
    pub fn is_paid(&self) -> bool {
        self.payment.is_some()
    }
}

/// How and by whom a purchase's payment was confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Confirmation {
    /// On chain, or by hand.
    pub method: PaymentMethod,
    /// Who confirmed: the payment verifier's service name, or the operator.
    pub by: String,
    /// The transfer's hash.
    pub tx_hash: Option<String>,
    /// What the transfer paid, wei.
    pub amount_wei: Option<String>,
    /// The block holding it.
    pub block: Option<u64>,
    /// The operator's note.
    pub note: Option<String>,
    /// When the platform received the confirmation: the epoch its shares are paid in.
    pub confirmed_at: DateTime<Utc>,
}

/// The marketplace: listings, grants, purchases.
#[derive(Debug, Clone, Default)]
pub struct Market {
    listings: BTreeMap<String, Listing>,
    grants: BTreeMap<String, Grants>,
    /// By listing and purchase id: a purchase is checked only against events of its own
    /// listing (one partition of the log), so which purchases stand does not depend on how
    /// partitions interleave.
    purchases: BTreeMap<(String, Uuid), Purchase>,
    /// By contributor: every address linked, in log order with the time it was received.
    links: BTreeMap<String, Vec<(DateTime<Utc>, Address)>>,
    seen: HashSet<Uuid>,
    refused: u64,
}

/// Checks a link's proof: `signature` is `message` signed by `address`, and the message links
/// that address to `contributor_id`.
fn check_link(contributor_id: &str, address: &str, message: &str, signature: &str) -> Result<(), Refusal> {
    let bad = |reason: String| Refusal::UnprovenLink(reason);
    let signature = gata_wallet::parse_signature(signature).map_err(|e| bad(e.to_string()))?;
    let m = gata_wallet::SignInMessage::verify(message, &signature).map_err(|e| bad(e.to_string()))?;
    if address.parse::<Address>().ok() != Some(m.address) {
        return Err(bad(format!("the message is signed by {}, not {address}", m.address)));
    }
    if m.linked_contributor() != Some(contributor_id) {
        return Err(bad(format!(
            "the message does not list the resource {}",
            gata_wallet::siwe::link_resource(contributor_id)
        )));
    }
    Ok(())
}

impl Market {
    /// Whether `event` would be applied (`Ok(false)`: already applied), without applying it.
    pub fn check(&self, event: &MarketEvent) -> Result<bool, Refusal> {
        if self.seen.contains(&event.event_id) {
            return Ok(false);
        }
        let not_yours = |what: String| Refusal::NotYours { actor: event.actor.clone(), what };
        match &event.action {
            MarketAction::PublishListing { listing } => {
                let existing = self.listings.get(&listing.listing_id);
                let current = existing.map_or(0, |l| l.versions.len() as u32);
                if let Some(l) = existing.filter(|l| l.curator != event.actor) {
                    return Err(not_yours(format!("publish {} (curated by {})", listing.listing_id, l.curator)));
                }
                if listing.version != current + 1 {
                    return Err(Refusal::WrongVersion { listing_id: listing.listing_id.clone(), current });
                }
            }
            MarketAction::WithdrawListing { listing_id } => {
                let l = self.listing(listing_id)?;
                if l.curator != event.actor {
                    return Err(not_yours(format!("withdraw {listing_id}")));
                }
            }
            MarketAction::Grant { contributor_id, listing_id }
            | MarketAction::Revoke { contributor_id, listing_id } => {
                if *contributor_id != event.actor {
                    return Err(not_yours(format!("grant or revoke access to {contributor_id}'s data")));
                }
                if let Some(id) = listing_id {
                    self.listing(id)?;
                }
            }
            MarketAction::Purchase { purchase_id, listing_id, version, buyer, price, .. } => {
                if *buyer != event.actor {
                    return Err(not_yours(format!("buy for {buyer}")));
                }
                let on_sale = self.listings.get(listing_id).filter(|l| !l.withdrawn);
                let spec = on_sale
                    .and_then(|l| l.version(*version))
                    .ok_or_else(|| Refusal::NotOnSale { listing_id: listing_id.clone(), version: *version })?;
                if spec.price != *price {
                    return Err(Refusal::WrongPrice {
                        listing_id: listing_id.clone(),
                        version: *version,
                        price: spec.price,
                        paid: *price,
                    });
                }
                if self.purchases.contains_key(&(listing_id.clone(), *purchase_id)) {
                    return Err(Refusal::DuplicatePurchase(*purchase_id));
                }
            }
            MarketAction::LinkAddress { contributor_id, address, message, signature } => {
                if *contributor_id != event.actor {
                    return Err(not_yours(format!("link an address to {contributor_id}")));
                }
                check_link(contributor_id, address, message, signature)?;
            }
            MarketAction::ConfirmPayment { purchase_id, listing_id, .. } => {
                let purchase = self
                    .purchases
                    .get(&(listing_id.clone(), *purchase_id))
                    .ok_or(Refusal::UnknownPurchase(*purchase_id))?;
                if purchase.is_paid() {
                    return Err(Refusal::AlreadyConfirmed(*purchase_id));
                }
            }
        }
        Ok(true)
    }

    /// Applies `event`, received at `received_at`; `Ok(false)` when it was applied before.
    pub fn apply(&mut self, event: &MarketEvent, received_at: DateTime<Utc>) -> Result<bool, Refusal> {
        let fresh = self.check(event).inspect_err(|_| self.refused += 1)?;
        if !fresh {
            return Ok(false);
        }
        self.seen.insert(event.event_id);
        match &event.action {
            MarketAction::PublishListing { listing } => {
                let entry = self.listings.entry(listing.listing_id.clone()).or_insert_with(|| Listing {
                    versions: Vec::new(),
                    curator: event.actor.clone(),
                    withdrawn: false,
                    published_at: received_at,
                });
                entry.versions.push(listing.clone());
                entry.withdrawn = false;
                entry.published_at = received_at;
            }
            MarketAction::WithdrawListing { listing_id } => {
                if let Some(l) = self.listings.get_mut(listing_id) {
                    l.withdrawn = true;
                }
            }
            MarketAction::Grant { contributor_id, listing_id } => {
                let g = self.grants.entry(contributor_id.clone()).or_default();
                match listing_id {
                    Some(id) => {
                        g.revoked.remove(id);
                        g.listings.insert(id.clone());
                    }
                    None => g.everyone = true,
                }
            }
            MarketAction::Revoke { contributor_id, listing_id } => {
                let g = self.grants.entry(contributor_id.clone()).or_default();
                match listing_id {
                    Some(id) => {
                        g.listings.remove(id);
                        g.revoked.insert(id.clone());
                    }
                    None => *g = Grants::default(),
                }
            }
            MarketAction::LinkAddress { contributor_id, address, .. } => {
                // `check` proved the address parses: the message's signer is it.
                if let Ok(address) = address.parse() {
                    self.links.entry(contributor_id.clone()).or_default().push((received_at, address));
                }
            }
            MarketAction::ConfirmPayment { purchase_id, listing_id, method, tx_hash, amount_wei, block, note } => {
                if let Some(p) = self.purchases.get_mut(&(listing_id.clone(), *purchase_id)) {
                    p.payment = Some(Confirmation {
                        method: *method,
                        by: event.actor.clone(),
                        tx_hash: tx_hash.clone(),
                        amount_wei: amount_wei.clone(),
                        block: *block,
                        note: note.clone(),
                        confirmed_at: received_at,
                    });
                }
            }
            MarketAction::Purchase { purchase_id, listing_id, version, buyer, price, payment_ref, payer, shares } => {
                self.purchases.insert(
                    (listing_id.clone(), *purchase_id),
                    Purchase {
                        purchase_id: *purchase_id,
                        listing_id: listing_id.clone(),
                        version: *version,
                        buyer: buyer.clone(),
                        price: *price,
                        payment_ref: payment_ref.clone(),
                        payer: payer.clone(),
                        shares: shares.clone(),
                        received_at,
                        payment: None,
                    },
                );
            }
        }
        Ok(true)
    }

    fn listing(&self, id: &str) -> Result<&Listing, Refusal> {
        self.listings.get(id).ok_or_else(|| Refusal::UnknownListing(id.to_string()))
    }

    /// Every listing by id (withdrawn ones included).
    pub fn listings(&self) -> &BTreeMap<String, Listing> {
        &self.listings
    }

    /// Every contributor's grants.
    pub fn grants(&self) -> &BTreeMap<String, Grants> {
        &self.grants
    }

    /// The contributors whose data buyers of `listing` may see.
    pub fn granted(&self, listing: &str) -> BTreeSet<String> {
        self.grants.iter().filter(|(_, g)| g.allows(listing)).map(|(c, _)| c.clone()).collect()
    }

    /// Every purchase, by id.
    pub fn purchases(&self) -> impl Iterator<Item = &Purchase> {
        self.purchases.values()
    }

    /// The purchase `purchase_id`, whatever its listing.
    pub fn purchase(&self, purchase_id: Uuid) -> Option<&Purchase> {
        self.purchases.values().find(|p| p.purchase_id == purchase_id)
    }

    /// The latest version of each listing `buyer` purchased and paid for: what their SQL,
    /// streams and shares expose.
    pub fn entitlements(&self, buyer: &str) -> BTreeMap<String, &ListingSpec> {
        let mut out: BTreeMap<String, &ListingSpec> = BTreeMap::new();
        for p in self.purchases.values().filter(|p| p.buyer == buyer && p.is_paid()) {
            let Some(spec) = self.listings.get(&p.listing_id).and_then(|l| l.version(p.version)) else { continue };
            if out.get(&p.listing_id).is_none_or(|s| s.version < spec.version) {
                out.insert(p.listing_id.clone(), spec);
            }
        }
        out
    }

    /// The address `contributor` is paid at for what is paid at `at`: the latest address linked
    /// before `at` (`DateTime::<Utc>::MAX_UTC`: the latest of all), or the contributor id itself
    /// when it is an address.
    pub fn payee(&self, contributor: &str, at: DateTime<Utc>) -> Option<Address> {
        if let Ok(address) = contributor.parse() {
            return Some(address);
        }
        let links = self.links.get(contributor)?;
        links.iter().rev().find(|(t, _)| *t < at).map(|(_, a)| *a)
    }

    /// Events refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use gata_contract::EventKind;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + s, 0).expect("time")
    }

    fn event(n: u128, actor: &str, action: MarketAction) -> MarketEvent {
        MarketEvent { event_id: Uuid::from_u128(n), occurred_at: at(0), actor: actor.into(), action }
    }

    fn spec(id: &str, version: u32, price: u64) -> ListingSpec {
        ListingSpec {
            listing_id: id.into(),
            version,
            title: "t".into(),
            description: String::new(),
            kinds: vec![EventKind::ChatTurn],
            min_score: None,
            languages: vec![],
            licenses: vec![],
            from: None,
            to: None,
            price,
            terms: "terms".into(),
        }
    }

    fn publish(n: u128, actor: &str, id: &str, version: u32, price: u64) -> MarketEvent {
        event(n, actor, MarketAction::PublishListing { listing: spec(id, version, price) })
    }

    fn grant(n: u128, who: &str, listing: Option<&str>) -> MarketEvent {
        event(n, who, MarketAction::Grant { contributor_id: who.into(), listing_id: listing.map(Into::into) })
    }

    fn revoke(n: u128, who: &str, listing: Option<&str>) -> MarketEvent {
        event(n, who, MarketAction::Revoke { contributor_id: who.into(), listing_id: listing.map(Into::into) })
    }

    fn purchase(n: u128, buyer: &str, id: &str, version: u32, price: u64) -> MarketEvent {
        event(
            n,
            buyer,
            MarketAction::Purchase {
                purchase_id: Uuid::from_u128(1000 + n),
                listing_id: id.into(),
                version,
                buyer: buyer.into(),
                price,
                payment_ref: format!("ref-{n}"),
                payer: None,
                shares: vec![],
            },
        )
    }

    /// An operator's confirmation of the purchase made by event `n`.
    fn confirm(n: u128, of: u128, id: &str) -> MarketEvent {
        event(
            n,
            "ops",
            MarketAction::ConfirmPayment {
                purchase_id: Uuid::from_u128(1000 + of),
                listing_id: id.into(),
                method: PaymentMethod::Manual,
                tx_hash: None,
                amount_wei: None,
                block: None,
                note: Some("paid by invoice".into()),
            },
        )
    }

    /// `who`'s link to `account`'s address, proven by a message linking `names`.
    fn link(n: u128, who: &str, account: &gata_wallet::Account, names: &str) -> MarketEvent {
        let message = format!(
            "gata.example wants you to sign in with your Ethereum account:\n{}\n\nLink.\n\nURI: https://gata.example/\nVersion: 1\nChain ID: 56\nNonce: 0123456789abcdef\nIssued At: 2026-12-01T00:00:00Z\nResources:\n- {}",
            account.address(),
            gata_wallet::siwe::link_resource(names)
        );
        let sig = account.sign_digest(&gata_wallet::personal_digest(message.as_bytes())).expect("sign");
        let action = MarketAction::LinkAddress {
            contributor_id: who.into(),
            address: account.address().to_string().to_lowercase(),
            message,
            signature: format!("0x{}", hex::encode(sig)),
        };
        event(n, who, action)
    }

    #[test]
    fn a_link_pays_its_contributor_at_the_address_that_signed_it_from_then_on() {
        let alice = gata_wallet::Account::from_private_key_hex(&"0c".repeat(32)).expect("key");
        let later = gata_wallet::Account::from_private_key_hex(&"0d".repeat(32)).expect("key");
        let mut m = Market::default();
        assert_eq!(m.apply(&link(1, "ctr_alice", &alice, "ctr_alice"), at(10)), Ok(true));
        assert_eq!(m.payee("ctr_alice", at(10)), None, "not before it was received");
        assert_eq!(m.payee("ctr_alice", at(11)), Some(alice.address()));
        // Forgeries: someone else's id, a message linking another id, another address's signature.
        let mut stolen = link(2, "ctr_alice", &alice, "ctr_alice");
        stolen.actor = "mallory".into();
        assert!(matches!(m.apply(&stolen, at(12)), Err(Refusal::NotYours { .. })));
        assert!(matches!(m.apply(&link(3, "ctr_bob", &alice, "ctr_alice"), at(12)), Err(Refusal::UnprovenLink(_))));
        let mut swapped = link(4, "ctr_alice", &alice, "ctr_alice");
        if let MarketAction::LinkAddress { address, .. } = &mut swapped.action {
            *address = later.address().to_string();
        }
        assert!(matches!(m.apply(&swapped, at(12)), Err(Refusal::UnprovenLink(_))));
        assert_eq!(m.payee("ctr_alice", at(13)), Some(alice.address()));
        // A later link takes over from when it was received; earlier epochs keep the first.
        assert_eq!(m.apply(&link(5, "ctr_alice", &later, "ctr_alice"), at(20)), Ok(true));
        assert_eq!(
            (m.payee("ctr_alice", at(15)), m.payee("ctr_alice", at(21))),
            (Some(alice.address()), Some(later.address()))
        );
        // An address is its own payee; an unlinked id has none.
        let own = later.address().to_string();
        assert_eq!((m.payee(&own, at(0)), m.payee("ctr_bob", at(30))), (Some(later.address()), None));
        assert_eq!(m.payee("ctr_alice", DateTime::<Utc>::MAX_UTC), Some(later.address()));
    }

    #[test]
    fn grants_decide_who_is_visible_and_revokes_win() {
        let mut m = Market::default();
        for e in [
            publish(1, "cur", "a", 1, 10),
            publish(2, "cur", "b", 1, 10),
            grant(3, "p1", Some("a")),
            grant(4, "p2", None),
        ] {
            assert_eq!(m.apply(&e, at(1)), Ok(true));
        }
        assert_eq!(m.granted("a"), BTreeSet::from(["p1".into(), "p2".into()]));
        assert_eq!(m.granted("b"), BTreeSet::from(["p2".into()]));
        m.apply(&revoke(5, "p2", Some("a")), at(2)).expect("revoke");
        assert_eq!(m.granted("a"), BTreeSet::from(["p1".into()]));
        assert_eq!(m.granted("b"), BTreeSet::from(["p2".into()]), "a per-listing revoke leaves the others");
        m.apply(&grant(6, "p2", Some("a")), at(3)).expect("grant again");
        assert!(m.granted("a").contains("p2"));
        m.apply(&revoke(7, "p2", None), at(4)).expect("revoke all");
        assert_eq!(m.granted("a"), BTreeSet::from(["p1".into()]));
        assert!(!m.granted("b").contains("p2"));
        // Nobody grants for someone else, nor for a listing that does not exist.
        let forged = event(8, "mallory", MarketAction::Grant { contributor_id: "p3".into(), listing_id: None });
        assert!(matches!(m.apply(&forged, at(5)), Err(Refusal::NotYours { .. })));
        assert_eq!(m.apply(&grant(9, "p3", Some("nope")), at(5)), Err(Refusal::UnknownListing("nope".into())));
        assert_eq!(m.refused(), 2);
    }

    #[test]
    fn purchases_need_a_listing_on_sale_at_its_price_and_are_idempotent() {
        let mut m = Market::default();
        m.apply(&publish(1, "cur", "a", 1, 10), at(0)).expect("publish");
        assert!(matches!(
            m.apply(&publish(2, "cur", "a", 3, 10), at(0)),
            Err(Refusal::WrongVersion { current: 1, .. })
        ));
        assert!(matches!(m.apply(&publish(3, "other", "a", 2, 10), at(0)), Err(Refusal::NotYours { .. })));
        m.apply(&publish(4, "cur", "a", 2, 20), at(0)).expect("version 2");
        assert!(matches!(m.apply(&purchase(5, "b1", "a", 2, 10), at(1)), Err(Refusal::WrongPrice { price: 20, .. })));
        assert_eq!(m.apply(&purchase(6, "b1", "a", 1, 10), at(1)), Ok(true));
        assert_eq!(m.apply(&purchase(6, "b1", "a", 1, 10), at(1)), Ok(false), "a re-delivered event changes nothing");
        assert!(m.entitlements("b1").is_empty(), "an unpaid purchase grants nothing");
        m.apply(&confirm(60, 6, "a"), at(1)).expect("confirmed");
        assert_eq!(m.apply(&confirm(61, 6, "a"), at(1)), Err(Refusal::AlreadyConfirmed(Uuid::from_u128(1006))));
        assert_eq!(m.apply(&confirm(62, 6, "b"), at(1)), Err(Refusal::UnknownPurchase(Uuid::from_u128(1006))));
        assert_eq!(m.entitlements("b1").get("a").map(|s| s.version), Some(1));
        m.apply(&purchase(7, "b1", "a", 2, 20), at(2)).expect("upgrade");
        assert_eq!(m.entitlements("b1").get("a").map(|s| s.version), Some(1), "version 2 is not paid yet");
        m.apply(&confirm(70, 7, "a"), at(2)).expect("confirmed");
        assert_eq!(m.entitlements("b1").get("a").map(|s| s.version), Some(2));
        assert!(m.entitlements("b2").is_empty());
        let withdraw = event(8, "cur", MarketAction::WithdrawListing { listing_id: "a".into() });
        m.apply(&withdraw, at(3)).expect("withdraw");
        assert!(matches!(m.apply(&purchase(9, "b2", "a", 2, 20), at(4)), Err(Refusal::NotOnSale { .. })));
        assert_eq!(m.entitlements("b1").len(), 1, "buyers keep what they bought");
        assert_eq!(m.purchases().count(), 2);
    }

    #[test]
    fn the_same_log_folds_to_the_same_state() {
        let log = [
            publish(1, "cur", "a", 1, 10),
            grant(2, "p1", None),
            purchase(3, "b", "a", 1, 10),
            revoke(4, "p1", Some("a")),
        ];
        let fold = || {
            let mut m = Market::default();
            for e in log.iter().chain(log.iter()) {
                let _ = m.apply(e, at(0));
            }
            (m.granted("a"), m.purchases().cloned().collect::<Vec<_>>(), m.grants().clone())
        };
        assert_eq!(fold(), fold());
        assert!(fold().0.is_empty());
    }
}
