//! Marketplace access as Greenfield permissions.
//!
//! On Greenfield the unit of access is an object, and a data file holds the rows of many
//! contributors. A buyer's account may read an object of a submission table's version when the
//! buyer holds a listing over that table and every contributor in the version (as its
//! submission record names them) grants that listing; the version's submission record goes with
//! its data files. Listing filters (score, language, license, time) apply to the buyer's SQL,
//! streams and shares, not to raw files: a file is all or nothing.
//!
//! Each sync computes that set, compares it with the policies it put before (kept in the lake
//! table `ops/mirror_grants`, one row per change) and sends the difference to the chain as
//! `MsgPutPolicy` / `MsgDeletePolicy` object policies (several per transaction), recording each
//! transaction's changes once the chain accepted it. So a revoke on the marketplace becomes a
//! deleted policy at the next sync, and a restarted mirror picks up where it was.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, RwLock},
};

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use gata_greenfield::{
    Address, ChainClient,
    chain::MSGS_PER_TX,
    policy::{Action, MsgDeletePolicy, MsgPutPolicy, Principal, Statement, object_grn},
    tx::Msg,
};
use gata_lakehouse::Lake;
use gata_market::{Market, silver_table};
use serde::{Deserialize, Serialize};

use crate::{
    MirrorError, Result,
    ops_table::{OpsTable, literal},
    progress::Entry,
    records::SubmissionRecord,
    target::Target,
};

/// Where the grant log lives under the lake root.
pub const PATH: &str = "ops/mirror_grants";

/// One policy change the chain accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRow {
    /// The target's URL.
    pub target: String,
    /// The object's name in the bucket.
    pub object: String,
    /// The buyer's Greenfield account.
    pub account: String,
    /// The buyer principal's name.
    pub buyer: String,
    /// Put (true) or deleted (false).
    pub granted: bool,
    /// The transaction's hash.
    pub txhash: String,
    /// When (RFC 3339).
    pub at: String,
}

fn schema() -> SchemaRef {
    let utf8 = |name: &str| Field::new(name, DataType::Utf8, false);
    std::sync::Arc::new(Schema::new(vec![
        utf8("target"),
        utf8("object"),
        utf8("account"),
        utf8("buyer"),
        Field::new("granted", DataType::Boolean, false),
        utf8("txhash"),
        Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
    ]))
}

/// What one sync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GrantReport {
    /// Policies put.
    pub granted: u64,
    /// Policies deleted.
    pub revoked: u64,
    /// Transactions sent.
    pub transactions: u64,
}

/// Keeps a Greenfield bucket's object policies in line with the marketplace.
pub struct GrantSync {
    chain: ChainClient,
    market: Arc<RwLock<Market>>,
    /// Buyer principal name → Greenfield account.
    buyers: BTreeMap<String, Address>,
    log: OpsTable,
    /// Contributors of each submission record read so far, by record path.
    contributors: HashMap<String, BTreeSet<String>>,
}

/// The objects of one table version: its data files and its submission record.
#[derive(Default)]
struct Batch<'a> {
    data: Vec<&'a str>,
    record: Option<&'a str>,
}

/// A desired or applied policy: (object name, account) → buyer.
type Policies = BTreeMap<(String, Address), String>;

impl GrantSync {
    /// A sync signing with `chain`'s account (the bucket's owner), reading `market`, granting
    /// the `buyers` that have a Greenfield account.
    pub async fn new(
        lake: &Lake,
        chain: ChainClient,
        market: Arc<RwLock<Market>>,
        buyers: BTreeMap<String, Address>,
    ) -> Result<GrantSync> {
        let comment = "object policies the mirror put on or deleted from Greenfield for buyers";
        let log = OpsTable::open(lake, PATH, "mirror_grants", comment, schema()).await?;
        Ok(GrantSync { chain, market, buyers, log, contributors: HashMap::new() })
    }

    /// The policies put and not deleted, by the log.
    pub async fn applied(&mut self, target: &Target) -> Result<Policies> {
        let rows: Vec<GrantRow> =
            self.log.select(&format!("target = {} ORDER BY at", literal(target.url().as_str()))).await?;
        let mut applied = Policies::new();
        for row in rows {
            let account: Address = row.account.parse().map_err(gata_greenfield::GreenfieldError::from)?;
            if row.granted {
                applied.insert((row.object, account), row.buyer);
            } else {
                applied.remove(&(row.object, account));
            }
        }
        Ok(applied)
    }

    /// Contributors named by the submission record at `path`.
    async fn contributors_of(&mut self, target: &Target, path: &str) -> Result<BTreeSet<String>> {
        if let Some(known) = self.contributors.get(path) {
            return Ok(known.clone());
        }
        let bytes = target.get(path).await?.ok_or_else(|| MirrorError::Decode {
            path: path.to_string(),
            reason: "the submission record is not at the target".into(),
        })?;
        let record: SubmissionRecord = serde_json::from_slice(&bytes)
            .map_err(|e| MirrorError::Decode { path: path.to_string(), reason: e.to_string() })?;
        let found: BTreeSet<String> = record.submissions.into_iter().map(|s| s.contributor_id).collect();
        self.contributors.insert(path.to_string(), found.clone());
        Ok(found)
    }

    /// What the marketplace allows now over the `entries` mirrored to the Greenfield `target`.
    async fn desired(&mut self, target: &Target, entries: &[Entry]) -> Result<Policies> {
        let mut versions: BTreeMap<(&str, i64), Batch<'_>> = BTreeMap::new();
        for e in entries {
            let batch = versions.entry((e.table_name.as_str(), e.version)).or_default();
            match e.kind.as_str() {
                "data" => batch.data.push(&e.path),
                "record" => batch.record = Some(&e.path),
                _ => {}
            }
        }
        let mut contributors = BTreeMap::new();
        for ((table, version), Batch { record, .. }) in &versions {
            if let Some(record) = record {
                contributors.insert((*table, *version), self.contributors_of(target, record).await?);
            }
        }
        let market = self.market.read().map_err(|_| MirrorError::Config("the marketplace state is poisoned".into()))?;
        let mut desired = Policies::new();
        for (buyer, account) in &self.buyers {
            for (listing_id, spec) in market.entitlements(buyer) {
                for ((table, version), Batch { data, record }) in &versions {
                    let (Some(record), Some(who)) = (record, contributors.get(&(*table, *version))) else { continue };
                    let covers = spec.kinds.iter().any(|k| silver_table(*k) == *table);
                    let all_grant = who.iter().all(|c| market.grants().get(c).is_some_and(|g| g.allows(&listing_id)));
                    if covers && all_grant {
                        for (_, object) in data.iter().chain([record]).filter_map(|p| target.greenfield_object(p)) {
                            desired.insert((object, *account), buyer.clone());
                        }
                    }
                }
            }
        }
        Ok(desired)
    }

    /// Brings the bucket's object policies in line with the marketplace over `entries`.
    pub async fn sync(&mut self, target: &Target, entries: &[Entry]) -> Result<GrantReport> {
        let Target::Greenfield { bucket, .. } = target else {
            return Err(MirrorError::Config("grants apply to Greenfield targets only".into()));
        };
        let desired = self.desired(target, entries).await?;
        let applied = self.applied(target).await?;
        let operator = self.chain.account().address().to_string();
        let mut changes: Vec<(GrantRow, Box<dyn Msg>)> = Vec::new();
        let row = |object: &str, account: Address, buyer: &str, granted: bool| GrantRow {
            target: target.url().to_string(),
            object: object.to_string(),
            account: account.to_string(),
            buyer: buyer.to_string(),
            granted,
            txhash: String::new(),
            at: String::new(),
        };
        for ((object, account), buyer) in desired.iter().filter(|(k, _)| !applied.contains_key(*k)) {
            let msg = MsgPutPolicy {
                operator: operator.clone(),
                principal: Some(Principal::account(*account)),
                resource: object_grn(bucket, object),
                statements: vec![Statement::allow(&[Action::GetObject], Vec::new())],
                expiration_time: None,
            };
            changes.push((row(object, *account, buyer, true), Box::new(msg)));
        }
        for ((object, account), buyer) in applied.iter().filter(|(k, _)| !desired.contains_key(*k)) {
            let msg = MsgDeletePolicy {
                operator: operator.clone(),
                principal: Some(Principal::account(*account)),
                resource: object_grn(bucket, object),
            };
            changes.push((row(object, *account, buyer, false), Box::new(msg)));
        }
        let mut report = GrantReport::default();
        for batch in changes.chunks(MSGS_PER_TX) {
            let msgs: Vec<&dyn Msg> = batch.iter().map(|(_, m)| m.as_ref()).collect();
            let txhash = self.chain.submit(&msgs, "gata marketplace access").await?;
            let at = chrono::Utc::now().to_rfc3339();
            let rows: Vec<GrantRow> =
                batch.iter().map(|(r, _)| GrantRow { txhash: txhash.clone(), at: at.clone(), ..r.clone() }).collect();
            self.log.append(&rows, None).await?;
            report.transactions += 1;
            for r in &rows {
                if r.granted {
                    report.granted += 1;
                } else {
                    report.revoked += 1;
                }
            }
            tracing::info!(%txhash, changes = rows.len(), "marketplace access sent to Greenfield");
        }
        Ok(report)
    }
}
