//! `gata replay`: rebuilds the scores, rewards and contributor-stats projections from the log
//! (the Kafka intake topics, read to their high watermarks, or the bronze table that mirrors
//! them), into a scratch lake, and compares them with what was recorded.
//!
//! Scores are rebuilt by running this build's text scorer over every chat turn and preference in
//! the order the platform received them (receipt time, then topic, partition, offset: the
//! scoring processor's order), each submission once; a preference read before its turn is scored
//! right after the turn. Image-text pairs keep their recorded DVA scores (re-running the model is
//! the DVA workers' job). Rewards are the same fold the processor runs, over the replayed scores,
//! for every recorded epoch — under the recorded policy (an audit) or another (`--policy`, a
//! what-if). Every difference is named down to epoch, account and submission.

mod rescore;
mod source;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
pub use gata_contract::LogRecord;
use gata_contract::{
    topics::{Feed, QUALITY_SCORES},
    {EventKind, Limits, QualityScore, Verdict},
};
pub use gata_lakehouse::log::LogStream;
use gata_lakehouse::{Lake, LakeRecord, Offset, TableId, TopicPartition, rows::record_batch};
use gata_rewards::{Contribution, EpochRewards, Policy, fold_epoch, policy::score_bp};
use gata_scoring::SCORER_VERSION;
use indicatif::ProgressBar;
use serde::Serialize;
use uuid::Uuid;

use rescore::{Rescore, Rescored};
pub use source::{in_memory, kafka_log};

use crate::Result;

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The policy the record was paid under (the rewards processor's): its epochs are compared.
    pub recorded: Policy,
    /// The policy to pay under: the recorded one (an audit) or another (a what-if).
    pub pay: Policy,
    /// The text scorer version to re-score with (must be this build's).
    pub scorer_version: Option<String>,
    /// Where the replayed projections are written (a scratch lake), if anywhere.
    pub out: Option<Lake>,
    /// How long a preference waits for its turn, in receipt time (the scoring processor's
    /// `scoring.turn_wait`).
    pub turn_wait: std::time::Duration,
}

/// A score that differs between the record and the replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreDiff {
    /// The submission.
    pub subject: Uuid,
    /// Contributor as recorded (or replayed, when not recorded).
    pub contributor: String,
    /// `(contributor, score bp, verdict)` recorded.
    pub recorded: Option<(String, i64, Verdict)>,
    /// `(contributor, score bp, verdict)` replayed.
    pub replayed: Option<(String, i64, Verdict)>,
    /// The reason codes recorded, and those replayed: what tells why the two differ.
    pub reasons: (Vec<String>, Vec<String>),
}

/// One submission's line that differs in an account's payout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineDiff {
    /// The submission.
    pub subject: Uuid,
    /// `(tier, amount)` recorded.
    pub recorded: Option<(String, u64)>,
    /// `(tier, amount)` replayed.
    pub replayed: Option<(String, u64)>,
}

/// An account whose payout differs in one epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountDiff {
    /// The account.
    pub account: String,
    /// Amount recorded (0: no payout).
    pub recorded: u64,
    /// Amount replayed.
    pub replayed: u64,
    /// The submissions behind the difference.
    pub lines: Vec<LineDiff>,
}

/// One epoch compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochDiff {
    /// Epoch index.
    pub epoch: i64,
    /// Its start.
    pub start: DateTime<Utc>,
    /// Root recorded (hex).
    pub recorded_root: String,
    /// Root replayed (hex).
    pub replayed_root: String,
    /// Total recorded.
    pub recorded_total: u64,
    /// Total replayed.
    pub replayed_total: u64,
    /// Accounts whose payouts differ.
    pub accounts: Vec<AccountDiff>,
}

/// Per-contributor statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Scored submissions.
    pub submissions: u64,
    /// Accepted ones.
    pub accepted: u64,
    /// Sum of their scores, basis points.
    pub score_bp_sum: i64,
    /// Rewards over the compared epochs.
    pub rewards: u64,
}

/// A contributor whose statistics differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsDiff {
    /// The contributor.
    pub contributor: String,
    /// As recorded.
    pub recorded: Stats,
    /// As replayed.
    pub replayed: Stats,
}

/// What a replay found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// Log records read.
    pub records: usize,
    /// Distinct submissions in them.
    pub submissions: usize,
    /// Text scorer version replayed.
    pub scorer_version: String,
    /// Scores compared.
    pub scores_compared: usize,
    /// Scores that differ.
    pub scores: Vec<ScoreDiff>,
    /// Recorded policy version, and the one replayed.
    pub policy: (String, String),
    /// Every recorded epoch, compared (roots equal: no account listed).
    pub epochs: Vec<EpochDiff>,
    /// Contributors whose statistics differ.
    pub stats: Vec<StatsDiff>,
    /// Contributors compared.
    pub contributors: usize,
}

impl ReplayReport {
    /// Whether the replay matches the record everywhere.
    pub fn matches(&self) -> bool {
        self.scores.is_empty()
            && self.stats.is_empty()
            && self.epochs.iter().all(|e| e.recorded_root == e.replayed_root)
    }
}

fn key(c: &Contribution) -> (String, i64, Verdict) {
    (c.contributor.clone(), score_bp(c.score), c.verdict)
}

/// Compares `replayed` with `recorded`, account by account and line by line.
fn compare_epoch(recorded: &EpochRewards, replayed: &EpochRewards) -> EpochDiff {
    let mut accounts = Vec::new();
    if recorded.root != replayed.root {
        let names: BTreeSet<&str> =
            recorded.payouts.iter().chain(&replayed.payouts).map(|p| p.account.as_str()).collect();
        for name in names {
            let (a, b) = (recorded.payout(name), replayed.payout(name));
            if a.map(|p| (p.amount, &p.lines)) == b.map(|p| (p.amount, &p.lines)) {
                continue;
            }
            let lines_of = |p: Option<&gata_rewards::Payout>| -> BTreeMap<Uuid, (String, u64)> {
                p.map(|p| p.lines.iter().map(|l| (l.subject, (l.tier.clone(), l.amount))).collect()).unwrap_or_default()
            };
            let (la, lb) = (lines_of(a), lines_of(b));
            let subjects: BTreeSet<&Uuid> = la.keys().chain(lb.keys()).collect();
            let lines = subjects
                .into_iter()
                .filter(|s| la.get(s) != lb.get(s))
                .map(|s| LineDiff { subject: *s, recorded: la.get(s).cloned(), replayed: lb.get(s).cloned() })
                .collect();
            accounts.push(AccountDiff {
                account: name.to_string(),
                recorded: a.map_or(0, |p| p.amount),
                replayed: b.map_or(0, |p| p.amount),
                lines,
            });
        }
    }
    EpochDiff {
        epoch: recorded.epoch.index,
        start: recorded.epoch.start,
        recorded_root: hex::encode(recorded.root),
        replayed_root: hex::encode(replayed.root),
        recorded_total: recorded.total,
        replayed_total: replayed.total,
        accounts,
    }
}

fn stats<'a>(
    contributions: impl Iterator<Item = &'a Contribution>,
    epochs: &[EpochRewards],
) -> BTreeMap<String, Stats> {
    let mut out: BTreeMap<String, Stats> = BTreeMap::new();
    for c in contributions {
        let s = out.entry(c.contributor.clone()).or_default();
        s.submissions += 1;
        s.accepted += u64::from(c.verdict == Verdict::Accept);
        s.score_bp_sum += score_bp(c.score);
    }
    for p in epochs.iter().flat_map(|e| &e.payouts) {
        out.entry(p.account.clone()).or_default().rewards += p.amount;
    }
    out
}

/// Replays `log` (read chunk by chunk, never held whole) against what `lake` recorded.
pub async fn replay(
    lake: &Lake,
    mut log: LogStream,
    options: &ReplayOptions,
    progress: &ProgressBar,
) -> Result<ReplayReport> {
    let version = options.scorer_version.clone().unwrap_or_else(|| SCORER_VERSION.to_string());
    if version != SCORER_VERSION {
        return Err(crate::ProcessorError::Replay(format!(
            "this build scores text as {SCORER_VERSION}; it cannot re-score as {version}"
        )));
    }
    let (mut rescore, mut records) = (Rescore::new(options.turn_wait, options.out.is_some()), 0);
    while let Some(chunk) = log.try_next().await? {
        rescore.feed(&chunk, progress);
        records += chunk.len();
    }
    let Rescored { received, contributions: replayed, scores } = rescore.finish();
    if let (Some(out), Some(scores)) = (&options.out, scores) {
        write_scores(out, &scores).await?;
    }
    let recorded_all = gata_ledger::contributions(lake, None).await?;
    let recorded_epochs = gata_ledger::recorded_rewards(lake, None).await?;

    // Scores: the text scorer's, submission by submission.
    let (score_diffs, scores_compared) = {
        let recorded_text: BTreeMap<Uuid, &Contribution> =
            recorded_all.iter().filter(|c| c.scorer_version == SCORER_VERSION).map(|c| (c.subject, c)).collect();
        let replayed_text: BTreeMap<Uuid, &Contribution> = replayed.iter().map(|c| (c.subject, c)).collect();
        let subjects: BTreeSet<&Uuid> = recorded_text.keys().chain(replayed_text.keys()).collect();
        let diffs: Vec<ScoreDiff> = subjects
            .into_iter()
            .filter_map(|s| {
                let (recorded, replayed) = (recorded_text.get(s), replayed_text.get(s));
                let (a, b) = (recorded.map(|c| key(c)), replayed.map(|c| key(c)));
                let codes = |c: Option<&&Contribution>| c.map(|c| c.reason_codes.clone()).unwrap_or_default();
                (a != b).then(|| ScoreDiff {
                    subject: *s,
                    contributor: a.as_ref().or(b.as_ref()).map(|k| k.0.clone()).unwrap_or_default(),
                    recorded: a,
                    replayed: b,
                    reasons: (codes(recorded), codes(replayed)),
                })
            })
            .collect();
        (diffs, recorded_text.len().max(replayed_text.len()))
    };

    // Rewards: replayed text scores plus the recorded DVA scores, receipt times from the log.
    let dva: Vec<Contribution> = recorded_all
        .iter()
        .filter(|c| c.kind == EventKind::ImageTextPair)
        .filter_map(|c| received.get(&c.subject).map(|at| Contribution { received_at: *at, ..c.clone() }))
        .collect();
    let all: Vec<Contribution> = replayed.into_iter().chain(dva).collect();
    let recorded_epochs: Vec<EpochRewards> =
        recorded_epochs.into_iter().filter(|e| e.policy_version == options.recorded.version).collect();
    let ledger = super::MarketLedger::read(lake).await?;
    let mut replayed_epochs = Vec::new();
    let mut epoch_diffs = Vec::new();
    for recorded in &recorded_epochs {
        let (start, end) = (recorded.epoch.start, recorded.epoch.end);
        let within = all.iter().filter(|c| c.received_at >= start && c.received_at < end).cloned();
        let mine = fold_epoch(
            &options.pay,
            recorded.epoch,
            within,
            ledger.sales.iter().cloned(),
            ledger.payees(recorded.epoch.end),
        )?;
        epoch_diffs.push(compare_epoch(recorded, &mine));
        replayed_epochs.push(mine);
    }

    // Contributor statistics over the compared epochs.
    let in_epochs = |c: &&Contribution| {
        recorded_epochs.iter().any(|e| c.received_at >= e.epoch.start && c.received_at < e.epoch.end)
    };
    let before = stats(recorded_all.iter().filter(in_epochs), &recorded_epochs);
    let after = stats(all.iter().filter(in_epochs), &replayed_epochs);
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let contributors = names.len();
    let stats_diffs = names
        .into_iter()
        .filter_map(|n| {
            let (a, b) = (before.get(n).cloned().unwrap_or_default(), after.get(n).cloned().unwrap_or_default());
            (a != b).then(|| StatsDiff { contributor: n.clone(), recorded: a, replayed: b })
        })
        .collect();

    if let Some(out) = &options.out {
        write_epochs(out, &replayed_epochs).await?;
    }
    Ok(ReplayReport {
        records,
        submissions: received.len(),
        scorer_version: version,
        scores_compared,
        scores: score_diffs,
        policy: (options.recorded.version.clone(), options.pay.version.clone()),
        epochs: epoch_diffs,
        stats: stats_diffs,
        contributors,
    })
}

/// Writes the replayed scores as the `quality_scores` table of `out`.
async fn write_scores(out: &Lake, scores: &[QualityScore]) -> Result<()> {
    let limits = Limits::default().for_replay();
    let tp = TopicPartition { topic: QUALITY_SCORES.to_string(), partition: 0 };
    let mut records = Vec::with_capacity(scores.len());
    for (i, s) in scores.iter().enumerate() {
        let json = serde_json::to_vec(s).map_err(|e| crate::ProcessorError::Replay(e.to_string()))?;
        let logged =
            LogRecord { source: tp.clone(), offset: Offset(i as i64), received_at: s.scored_at, payload: json };
        let record = LakeRecord::decode(Feed::QualityScores, logged, &limits)
            .map_err(|v| crate::ProcessorError::Replay(format!("replayed score {}: {v:?}", s.event_id)))?;
        records.push(record);
    }
    let refs: Vec<&LakeRecord> = records.iter().collect();
    let table = out.open(TableId::QualityScores).await?;
    out.append(table, TableId::QualityScores, record_batch(TableId::QualityScores, &refs)?, &BTreeMap::new()).await?;
    Ok(())
}

/// Writes the replayed payouts as the `rewards` table of `out`.
async fn write_epochs(out: &Lake, epochs: &[EpochRewards]) -> Result<()> {
    let mut table = out.open(TableId::Rewards).await?;
    for e in epochs {
        table = gata_ledger::record_epoch(out, table, e).await?;
    }
    Ok(())
}
