//! The marketplace service: takes listings, grants, revokes and purchases as events on the log
//! (checked against the current state first, then applied by the follower before answering),
//! computes a purchase's revenue split from the lake, and tells the query service which listing
//! tables each principal may read.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use gata_contract::{
    topics::{MARKETPLACE, SCHEMA_HEADER},
    {EventKind, ListingSpec, MarketAction, MarketEvent, RevenueShare},
};
use gata_infra::{
    auth::{Principal, Role},
    record_mac::RecordMac,
};
use gata_sql::{Catalog, SqlEngine, View, Views};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use uuid::Uuid;

use gata_market::{listing_sql, silver_table, split};

use crate::{MarketError, Result, follower::Followed};

/// How long a write waits for its event to be applied.
const APPLY_WAIT: Duration = Duration::from_secs(15);

/// The marketplace service.
#[derive(Clone)]
pub struct Marketplace {
    followed: Followed,
    producer: FutureProducer,
    engine: SqlEngine,
    catalog: Arc<Catalog>,
    limits: gata_contract::Limits,
    payments: Option<Arc<crate::payments::Payments>>,
    mac: Option<RecordMac>,
}

impl std::fmt::Debug for Marketplace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Marketplace").finish_non_exhaustive()
    }
}

impl Marketplace {
    /// The followed state (what [`crate::consistency::layer`] waits on).
    pub fn followed(&self) -> &Followed {
        &self.followed
    }

    /// A service over the followed state, producing with `producer`, counting rows with
    /// `engine`, streaming from `catalog`'s tables.
    pub fn new(
        followed: Followed,
        producer: FutureProducer,
        engine: SqlEngine,
        catalog: Arc<Catalog>,
        limits: gata_contract::Limits,
    ) -> Self {
        Self { followed, producer, engine, catalog, limits, payments: None, mac: None }
    }

    /// The same service, signing the events it appends with `mac` (`kafka.record_secret`).
    pub fn with_record_mac(mut self, mac: Option<RecordMac>) -> Self {
        self.mac = mac;
        self
    }

    /// The same service, confirming purchases from the chain with `payments`.
    pub fn with_payments(mut self, payments: Arc<crate::payments::Payments>) -> Self {
        self.payments = Some(payments);
        self
    }

    /// The payment verifier, when purchases are confirmed from a chain (shared: the process
    /// runs it with [`crate::payments::Payments::run`]).
    pub fn payments(&self) -> Option<&Arc<crate::payments::Payments>> {
        self.payments.as_ref()
    }

    /// The lake's tables.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.clone()
    }

    /// Whether `buyer` still owns `listing` and `contributor` still grants it access, now.
    pub fn still_visible(&self, buyer: &str, listing: &str, contributor: &str) -> bool {
        self.followed.market.read().is_ok_and(|m| {
            m.entitlements(buyer).contains_key(listing)
                && m.grants().get(contributor).is_some_and(|g| g.allows(listing))
        })
    }

    /// Reads the state once the log as it stood at start has been applied.
    pub async fn read<T>(&self, f: impl FnOnce(&crate::Market) -> T) -> Result<T> {
        self.followed.caught_up(APPLY_WAIT).await?;
        let market = self.followed.market.read().map_err(|_| MarketError::Unavailable("state poisoned".into()))?;
        Ok(f(&market))
    }

    /// Checks `event`, appends it to the log and waits until it is applied; answers the event
    /// as applied (a retry of an applied event answers the same).
    pub async fn submit(&self, event: MarketEvent) -> Result<MarketEvent> {
        let violations = event.violations(&self.limits);
        if !violations.is_empty() {
            return Err(MarketError::Invalid(violations));
        }
        if !self.read(|m| m.check(&event)).await?? {
            return Ok(event);
        }
        let payload = event.to_json();
        let schema = "market_event.v1";
        let headers = OwnedHeaders::new().insert(Header { key: SCHEMA_HEADER, value: Some(schema) });
        let headers = match &self.mac {
            Some(mac) => mac.signed(headers, MARKETPLACE, event.key().as_bytes(), &payload),
            None => headers,
        };
        let record = FutureRecord::to(MARKETPLACE)
            .key(event.key())
            .payload(&payload)
            .timestamp(Utc::now().timestamp_millis())
            .headers(headers);
        let delivery = self.producer.send(record, APPLY_WAIT).await.map_err(|(e, _)| MarketError::Kafka(e))?;
        crate::consistency::wrote(delivery.partition, delivery.offset);
        self.followed.wait_for(delivery.partition, delivery.offset, APPLY_WAIT).await?;
        // Another event applied in between may have made this one not fit after all.
        match self.read(|m| m.check(&event)).await? {
            Ok(false) => Ok(event),
            Ok(true) => Err(MarketError::Unavailable("the event was read but not applied".into())),
            Err(refusal) => Err(refusal.into()),
        }
    }

    /// The revenue split of selling `listing` now: its price among the granting contributors'
    /// accepted rows in the lake.
    pub async fn split_of(&self, listing: &ListingSpec) -> Result<Vec<RevenueShare>> {
        let granted = self.read(|m| m.granted(&listing.listing_id)).await?;
        let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        for kind in &listing.kinds {
            let sql = format!(
                "SELECT contributor_id, COUNT(*) AS n FROM ({}) GROUP BY contributor_id",
                listing_sql(listing, *kind, &granted)
            );
            let answer = self.engine.run(&Principal::local_admin(), &sql, Vec::new()).await?;
            for row in answer.rows {
                let (Some(c), Some(n)) =
                    (row.get("contributor_id").and_then(|v| v.as_str()), row.get("n").and_then(|v| v.as_u64()))
                else {
                    continue;
                };
                *counts.entry(c.to_string()).or_default() += n;
            }
        }
        let accepted: Vec<(String, u64)> = counts.into_iter().collect();
        split(listing.price, &accepted).ok_or_else(|| {
            MarketError::Empty(format!("listing {} holds no granted, accepted rows yet", listing.listing_id))
        })
    }

    /// What a browser of `listing` sees before buying: per kind, how many rows and contributors
    /// it holds now, their quality scores (mean, min, max), and the three best-scored rows with
    /// a short excerpt (granted rows only).
    pub async fn preview(&self, listing: &ListingSpec) -> Result<serde_json::Value> {
        let granted = self.read(|m| m.granted(&listing.listing_id)).await?;
        let mut tables = Vec::new();
        for kind in &listing.kinds {
            let rows = listing_sql(listing, *kind, &granted);
            let stats = format!(
                "SELECT COUNT(*) AS rows, COUNT(DISTINCT contributor_id) AS contributors, \
                 AVG(quality_score) AS mean_quality, MIN(quality_score) AS min_quality, \
                 MAX(quality_score) AS max_quality FROM ({rows})"
            );
            let excerpt = match kind {
                EventKind::ChatTurn => "substr(prompt, 1, 120)",
                EventKind::Preference => "concat('chose ', coalesce(chosen_response_id, 'none (all bad)'))",
                EventKind::ImageTextPair => "substr(caption, 1, 120)",
            };
            let sample = format!(
                "SELECT event_id, contributor_id, quality_score, language, {excerpt} AS excerpt FROM ({rows}) \
                 ORDER BY quality_score DESC, event_id LIMIT 3"
            );
            let admin = Principal::local_admin();
            let stats = self.engine.run(&admin, &stats, Vec::new()).await?.rows.into_iter().next().unwrap_or_default();
            let sample = self.engine.run(&admin, &sample, Vec::new()).await?.rows;
            tables.push(serde_json::json!({"kind": kind.name(), "table": silver_table(*kind), "stats": stats, "sample": sample}));
        }
        Ok(serde_json::json!({"listing_id": listing.listing_id, "version": listing.version, "tables": tables}))
    }

    /// A new event by `actor`.
    pub fn event(actor: &str, action: MarketAction) -> MarketEvent {
        MarketEvent { event_id: Uuid::now_v7(), occurred_at: Utc::now(), actor: actor.to_string(), action }
    }
}

impl Views for Marketplace {
    /// Buyers read the listings they purchased (at the version bought); operators and admins
    /// read every listing's current version (to curate). Each is one table per kind, schema =
    /// listing id, with only the rows of contributors who grant access to it right now.
    fn views(&self, principal: &Principal) -> Vec<View> {
        let Ok(market) = self.followed.market.read() else { return Vec::new() };
        let specs: Vec<ListingSpec> = match principal.role {
            Role::Buyer => market.entitlements(&principal.name).into_values().cloned().collect(),
            Role::Admin | Role::Operator => market.listings().values().map(|l| l.current().clone()).collect(),
            Role::Analyst | Role::Contributor | Role::App | Role::Reviewer => Vec::new(),
        };
        specs
            .iter()
            .flat_map(|spec| {
                let granted = market.granted(&spec.listing_id);
                spec.kinds.iter().map(move |kind| View {
                    schema: spec.listing_id.clone(),
                    table: silver_table(*kind).to_string(),
                    sql: listing_sql(spec, *kind, &granted),
                })
            })
            .collect()
    }
}
