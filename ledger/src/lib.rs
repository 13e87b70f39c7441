//! The rewards ledger in the lake: what the epoch fold reads (scored contributions, with the
//! time the platform received each submission) and where its payouts are recorded
//! (`gold/rewards`, one commit per closed epoch carrying a `txn` action
//! `rewards:<policy version>` = epoch index, so an epoch is recorded once whatever retries).
//! The lake knows the tables; this crate knows what rewards are.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deltalake::{DeltaTable, arrow::record_batch::RecordBatch, kernel::Transaction};
use gata_contract::{EventKind, Verdict};
use gata_lakehouse::{Lake, TableId, queries::SUBMISSIONS, rows::serialize};
use gata_rewards::{Contribution, Epoch, EpochRewards, LineRole, Payout, RewardLine, Sale, Vote};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod error;

pub use error::{LedgerError, Result};

/// The `txn` application id under which epochs of policy `version` are recorded.
pub fn rewards_app_id(version: &str) -> String {
    format!("rewards:{version}")
}

#[derive(Serialize, Deserialize)]
struct LineRow {
    role: String,
    subject_event_id: String,
    kind: EventKind,
    scorer_version: String,
    score_bp: i64,
    verdict: Verdict,
    tier: String,
    amount: i64,
}

#[derive(Serialize, Deserialize)]
struct SaleRow {
    purchase_id: String,
    listing_id: String,
    accepted: i64,
    amount: i64,
    /// Written as microseconds; read back as arrow-json writes a timestamp (RFC 3339 text).
    #[serde(deserialize_with = "timestamp_micros")]
    received_at: i64,
}

/// A timestamp as microseconds, from a number or RFC 3339 text (arrow-json writes nested
/// timestamps as text, without a zone for UTC columns).
fn timestamp_micros<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Micros(i64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Micros(us) => Ok(us),
        Either::Text(t) => DateTime::parse_from_rfc3339(&t)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc()))
            .map(|t| t.timestamp_micros())
            .map_err(serde::de::Error::custom),
    }
}

#[derive(Serialize, Deserialize)]
struct PayoutRow {
    event_id: String,
    account: String,
    epoch: i64,
    epoch_start: i64,
    epoch_end: i64,
    policy_version: String,
    amount: i64,
    gross: i64,
    cap_cut: i64,
    flagged: bool,
    penalty: i64,
    validation: i64,
    leaf_index: i64,
    leaf_count: i64,
    leaf_hash: String,
    epoch_root: String,
    lines: Vec<LineRow>,
    /// Absent in rows written before the marketplace.
    #[serde(default)]
    sales: Option<Vec<SaleRow>>,
    /// The address paid (EIP-55); absent for accounts without one.
    #[serde(default)]
    payee: Option<String>,
    #[serde(default)]
    day: String,
}

fn rows_err(reason: impl std::fmt::Display) -> LedgerError {
    LedgerError::Row { table: TableId::Rewards.name(), reason: reason.to_string() }
}

/// Amounts are `u64` in the fold and Int64 in Delta; the fold's totals stay far below 2^63.
fn signed(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| rows_err(format!("amount {v} exceeds Int64")))
}

fn unsigned(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| rows_err(format!("negative amount {v}")))
}

/// The `gold/rewards` rows of one closed epoch.
pub fn payout_batch(rewards: &EpochRewards) -> Result<RecordBatch> {
    let e = &rewards.epoch;
    let rows = rewards
        .payouts
        .iter()
        .map(|p| {
            Ok(PayoutRow {
                event_id: p.event_id.to_string(),
                account: p.account.clone(),
                epoch: e.index,
                epoch_start: e.start.timestamp_micros(),
                epoch_end: e.end.timestamp_micros(),
                policy_version: rewards.policy_version.clone(),
                amount: signed(p.amount)?,
                gross: signed(p.gross)?,
                cap_cut: signed(p.cap_cut)?,
                flagged: p.flagged,
                penalty: signed(p.penalty)?,
                validation: signed(p.validation)?,
                leaf_index: signed(p.leaf_index)?,
                leaf_count: rewards.payouts.len() as i64,
                leaf_hash: hex::encode(p.leaf_hash),
                epoch_root: hex::encode(rewards.root),
                lines: p
                    .lines
                    .iter()
                    .map(|l| {
                        Ok(LineRow {
                            role: l.role.name().into(),
                            subject_event_id: l.subject.to_string(),
                            kind: l.kind,
                            scorer_version: l.scorer_version.clone(),
                            score_bp: l.score_bp,
                            verdict: l.verdict,
                            tier: l.tier.clone(),
                            amount: signed(l.amount)?,
                        })
                    })
                    .collect::<Result<_>>()?,
                sales: Some(
                    p.sales
                        .iter()
                        .map(|s| {
                            Ok(SaleRow {
                                purchase_id: s.purchase.to_string(),
                                listing_id: s.listing.clone(),
                                accepted: signed(s.accepted)?,
                                amount: signed(s.amount)?,
                                received_at: s.received_at.timestamp_micros(),
                            })
                        })
                        .collect::<Result<_>>()?,
                ),
                payee: p.payee.map(|a| a.to_string()),
                day: e.start.format("%Y-%m-%d").to_string(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(serialize(TableId::Rewards, &rows)?)
}

fn hash(text: &str) -> Result<gata_rewards::merkle::Hash> {
    hex::decode(text).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| rows_err(format!("bad hash {text:?}")))
}

fn micros(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| rows_err(format!("bad timestamp {us}")))
}

fn uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| rows_err(format!("{text:?}: {e}")))
}

/// Rebuilds recorded epochs from their `gold/rewards` rows.
fn epochs_from_rows(rows: Vec<PayoutRow>) -> Result<Vec<EpochRewards>> {
    let mut epochs: BTreeMap<(String, i64), EpochRewards> = BTreeMap::new();
    for row in rows {
        let epoch = Epoch { index: row.epoch, start: micros(row.epoch_start)?, end: micros(row.epoch_end)? };
        let entry = epochs.entry((row.policy_version.clone(), row.epoch)).or_insert_with(|| EpochRewards {
            epoch,
            policy_version: row.policy_version.clone(),
            payouts: Vec::new(),
            root: [0; 32],
            total: 0,
        });
        entry.root = hash(&row.epoch_root)?;
        let lines = row
            .lines
            .iter()
            .map(|l| {
                Ok(RewardLine {
                    role: if l.role == LineRole::Validation.name() {
                        LineRole::Validation
                    } else {
                        LineRole::Contribution
                    },
                    subject: uuid(&l.subject_event_id)?,
                    kind: l.kind,
                    scorer_version: l.scorer_version.clone(),
                    score_bp: l.score_bp,
                    verdict: l.verdict,
                    tier: l.tier.clone(),
                    amount: unsigned(l.amount)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let sales = row
            .sales
            .unwrap_or_default()
            .iter()
            .map(|s| {
                Ok(Sale {
                    purchase: uuid(&s.purchase_id)?,
                    listing: s.listing_id.clone(),
                    account: row.account.clone(),
                    accepted: unsigned(s.accepted)?,
                    amount: unsigned(s.amount)?,
                    received_at: micros(s.received_at)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let amount = unsigned(row.amount)?;
        entry.total += amount;
        let payee = match &row.payee {
            Some(a) => Some(a.parse().map_err(|e| rows_err(format!("payee {a:?}: {e}")))?),
            None => None,
        };
        entry.payouts.push(Payout {
            event_id: uuid(&row.event_id)?,
            account: row.account,
            payee,
            lines,
            gross: unsigned(row.gross)?,
            cap_cut: unsigned(row.cap_cut)?,
            flagged: row.flagged,
            penalty: unsigned(row.penalty)?,
            validation: unsigned(row.validation)?,
            sales,
            amount,
            leaf_index: unsigned(row.leaf_index)?,
            leaf_hash: hash(&row.leaf_hash)?,
        });
    }
    Ok(epochs
        .into_values()
        .map(|mut e| {
            e.payouts.sort_by_key(|p| p.leaf_index);
            e
        })
        .collect())
}

#[derive(Deserialize)]
struct ReasonRow {
    code: String,
}

#[derive(Deserialize)]
struct VoteRow {
    validator: String,
    agrees: bool,
}

#[derive(Deserialize)]
struct ContributionRow {
    contributor: String,
    subject: String,
    kind: EventKind,
    scorer_version: String,
    score: f64,
    verdict: Verdict,
    #[serde(default)]
    reasons: Vec<ReasonRow>,
    received_us: i64,
    #[serde(default)]
    votes: Option<Vec<VoteRow>>,
}

/// Every scored submission received in `[from, to)` (all when `None`), with its receipt time
/// (from the submission's silver table) and the codes of its score's reasons.
pub async fn contributions(lake: &Lake, range: Option<(DateTime<Utc>, DateTime<Utc>)>) -> Result<Vec<Contribution>> {
    use TableId::*;
    let ctx = lake.session(&[QualityScores, ChatTurns, Preferences, ImageTextPairs]).await?;
    let window = match range {
        Some((from, to)) => format!(
            "WHERE sub.received_at >= TIMESTAMP '{}' AND sub.received_at < TIMESTAMP '{}'",
            from.to_rfc3339(),
            to.to_rfc3339()
        ),
        None => String::new(),
    };
    let sql = format!(
        "WITH sub AS ({SUBMISSIONS}) \
         SELECT s.contributor_id AS contributor, s.subject_event_id AS subject, s.subject_kind AS kind, \
           s.scorer_version, s.score, s.verdict, s.reasons, \
           CAST(sub.received_at AS BIGINT) AS received_us, s.consensus_votes AS votes \
         FROM quality_scores s JOIN sub ON s.subject_event_id = sub.event_id {window}"
    );
    let rows: Vec<ContributionRow> = Lake::rows(&ctx, QualityScores, &sql).await?;
    rows.into_iter()
        .map(|r| {
            Ok(Contribution {
                contributor: r.contributor,
                subject: Uuid::parse_str(&r.subject)
                    .map_err(|e| LedgerError::Row { table: QualityScores.name(), reason: e.to_string() })?,
                kind: r.kind,
                scorer_version: r.scorer_version,
                score: r.score,
                verdict: r.verdict,
                reason_codes: r.reasons.into_iter().map(|x| x.code).collect(),
                received_at: DateTime::from_timestamp_micros(r.received_us).ok_or_else(|| LedgerError::Row {
                    table: QualityScores.name(),
                    reason: format!("bad received_at {}", r.received_us),
                })?,
                votes: r
                    .votes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| Vote { validator: v.validator, agrees: v.agrees })
                    .collect(),
            })
        })
        .collect()
}

/// The last epoch recorded under policy `version` (epochs are recorded in order).
pub async fn last_recorded_epoch(lake: &Lake, table: &DeltaTable, version: &str) -> Result<Option<i64>> {
    Ok(lake.transaction_version(table, TableId::Rewards, &rewards_app_id(version)).await?)
}

/// Records one closed epoch's payouts, with its `txn` marker, in one commit.
pub async fn record_epoch(lake: &Lake, table: DeltaTable, rewards: &EpochRewards) -> Result<DeltaTable> {
    let txn = Transaction::new(rewards_app_id(&rewards.policy_version), rewards.epoch.index);
    Ok(lake.append_with(table, TableId::Rewards, payout_batch(rewards)?, vec![txn]).await?)
}

/// Recorded epochs (all, or the one with index `epoch`), every payout with its lines.
pub async fn recorded_rewards(lake: &Lake, epoch: Option<i64>) -> Result<Vec<EpochRewards>> {
    let ctx = lake.session(&[TableId::Rewards]).await?;
    let filter = epoch.map(|e| format!("WHERE epoch = {e}")).unwrap_or_default();
    let sql = format!(
        "SELECT event_id, account, epoch, CAST(epoch_start AS BIGINT) AS epoch_start, \
           CAST(epoch_end AS BIGINT) AS epoch_end, policy_version, amount, gross, cap_cut, flagged, penalty, \
           validation, leaf_index, leaf_count, leaf_hash, epoch_root, lines, sales, payee FROM rewards {filter}"
    );
    epochs_from_rows(Lake::rows(&ctx, TableId::Rewards, &sql).await?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gata_rewards::{Policy, fold_epoch};

    use super::*;

    #[tokio::test]
    async fn a_recorded_epoch_reads_back_equal_and_is_marked_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::new(&format!("file://{}", dir.path().display()), &Default::default()).expect("lake");
        let policy = Policy::builtin("v1").expect("v1");
        let epoch = Epoch::parse(Duration::from_secs(86_400), "2026-11-25").expect("epoch");
        let contribution = |who: &str, n: u128, score: f64| Contribution {
            contributor: who.into(),
            subject: Uuid::from_u128(n),
            kind: EventKind::ImageTextPair,
            scorer_version: "dva/m@1".into(),
            score,
            verdict: Verdict::Accept,
            reason_codes: vec![],
            received_at: epoch.start,
            votes: vec![Vote { validator: "w1".into(), agrees: true }],
        };
        let sale = Sale {
            purchase: Uuid::from_u128(9),
            listing: "garden".into(),
            account: "ann".into(),
            accepted: 1,
            amount: 123,
            received_at: epoch.start + chrono::Duration::milliseconds(1500),
        };
        // bob is paid at an address, which reads back.
        let payee = |who: &str| (who == "bob").then_some(gata_wallet::Address([7; 20]));
        let rewards =
            fold_epoch(&policy, epoch, [contribution("ann", 1, 0.4), contribution("bob", 2, 0.1)], [sale], payee)
                .expect("fold");
        assert_eq!(rewards.payout("ann").expect("ann").sales.len(), 1);
        assert!(rewards.payout("bob").expect("bob").payee.is_some());
        let table = lake.open(TableId::Rewards).await.expect("open");
        assert_eq!(last_recorded_epoch(&lake, &table, "v1").await.expect("txn"), None);
        let table = record_epoch(&lake, table, &rewards).await.expect("record");
        assert_eq!(last_recorded_epoch(&lake, &table, "v1").await.expect("txn"), Some(epoch.index));
        assert_eq!(last_recorded_epoch(&lake, &table, "v2").await.expect("txn"), None);
        assert_eq!(recorded_rewards(&lake, None).await.expect("read"), vec![rewards.clone()]);
        assert_eq!(recorded_rewards(&lake, Some(epoch.index + 1)).await.expect("read"), vec![]);
    }
}
