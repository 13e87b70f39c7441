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

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
pub use gata_contract::LogRecord;
use gata_contract::{
    topics::{Feed, QUALITY_SCORES, intake_topic, kind_of_topic},
    {Event, EventKind, Limits, QualityScore, Verdict},
};
use gata_infra::{kafka::KafkaClients, record_mac::RecordMac};
pub use gata_lakehouse::log::LogStream;
use gata_lakehouse::{Lake, LakeRecord, Offset, TableId, TopicPartition, rows::record_batch};
use gata_parallel::{available_threads, map_fold_ordered};
use gata_rewards::{Contribution, EpochRewards, Policy, fold_epoch, policy::score_bp};
use gata_scoring::{Prepared, SCORER_VERSION, Scorer, ScorerConfig};
use indicatif::ProgressBar;
use rdkafka::{
    Offset as KafkaOffset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Message,
};
use serde::Serialize;
use uuid::Uuid;

use crate::{Result, scoring::publication};

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

/// Reads every record of the intake topics, from the earliest offset to the high watermark each
/// partition had when the read began, in receipt order (as [`Lake::receipt_ordered_log`]).
/// Unlike bronze, the log also holds the records that were dead-lettered; they do not decode
/// and are skipped. The records are sorted in memory: the bronze table is the bounded path.
pub async fn kafka_log(kafka: &KafkaClients, progress: ProgressBar) -> Result<Vec<LogRecord>> {
    let consumer: BaseConsumer =
        kafka.consumer("gata-replay").create().map_err(crate::ProcessorError::kafka("create consumer"))?;
    let mac = kafka.record_mac().cloned();
    tokio::task::spawn_blocking(move || read_to_watermarks(&consumer, mac.as_ref(), &progress))
        .await
        .map_err(|e| crate::ProcessorError::Replay(format!("log reader: {e}")))?
}

fn read_to_watermarks(
    consumer: &BaseConsumer,
    mac: Option<&RecordMac>,
    progress: &ProgressBar,
) -> Result<Vec<LogRecord>> {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let mut assignment = TopicPartitionList::new();
    let mut remaining: HashMap<(String, i32), i64> = HashMap::new();
    for kind in EventKind::ALL {
        let topic = intake_topic(kind);
        let metadata = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(crate::ProcessorError::kafka("read the intake topics' metadata"))?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition.id(), TIMEOUT)
                .map_err(crate::ProcessorError::kafka("read a partition's watermarks"))?;
            if high > low {
                assignment
                    .add_partition_offset(topic, partition.id(), KafkaOffset::Beginning)
                    .map_err(crate::ProcessorError::kafka("assign a partition"))?;
                remaining.insert((topic.to_string(), partition.id()), high);
                progress.inc_length((high - low) as u64);
            }
        }
    }
    consumer.assign(&assignment).map_err(crate::ProcessorError::kafka("assign the intake partitions"))?;
    let mut log = Vec::new();
    let mut quiet = Instant::now();
    while !remaining.is_empty() {
        let Some(polled) = consumer.poll(Duration::from_millis(200)) else {
            if quiet.elapsed() > TIMEOUT {
                return Err(crate::ProcessorError::Replay(format!(
                    "the broker sent nothing for {TIMEOUT:?} with {} partitions not read to their end",
                    remaining.len()
                )));
            }
            continue;
        };
        let m = polled.map_err(crate::ProcessorError::kafka("read the log"))?;
        quiet = Instant::now();
        let key = (m.topic().to_string(), m.partition());
        let Some(&high) = remaining.get(&key) else { continue };
        if m.offset() >= high {
            remaining.remove(&key);
            continue;
        }
        progress.inc(1);
        // What the sink dead-letters (a forged record of a platform topic) the lake never holds.
        let genuine = gata_infra::record_mac::forged(mac, &m).is_none();
        if genuine {
            log.push(gata_infra::kafka::log_record(&m));
        }
        if m.offset() + 1 >= high {
            remaining.remove(&key);
        }
    }
    log.sort_by(|a, b| a.replay_order().cmp(&b.replay_order()));
    Ok(log)
}

/// Records already in memory (in receipt order) as a [`LogStream`], with their count.
pub fn in_memory(log: Vec<LogRecord>) -> (u64, LogStream) {
    let count = log.len() as u64;
    let mut records = log.into_iter();
    let chunks = std::iter::from_fn(move || {
        let chunk: Vec<LogRecord> = records.by_ref().take(8192).collect();
        (!chunk.is_empty()).then_some(Ok(chunk))
    });
    (count, futures::stream::iter(chunks).boxed())
}

/// Re-scores the text submissions of the log, fed in its order, with this build's scorer. Each
/// fed chunk's records are decoded and their texts assessed on every core while the scorer folds
/// the ones before them in order ([`map_fold_ordered`]). What it keeps is the scorer's state and,
/// per submission, its receipt time and its score as the rewards fold reads it (the whole score
/// event only when asked to); never the log.
struct Rescore {
    limits: Limits,
    threads: usize,
    scorer: Scorer,
    /// Preferences read before their turn, by turn.
    parked: HashMap<String, Vec<(Event, TopicPartition, Offset)>>,
    scored: Rescored,
}

/// What [`Rescore`] produced.
#[derive(Debug, Default)]
struct Rescored {
    /// Each submission's receipt time (its first copy's).
    received: HashMap<Uuid, DateTime<Utc>>,
    /// Each score, as the rewards fold reads it.
    contributions: Vec<Contribution>,
    /// Each score event, when kept.
    scores: Option<Vec<QualityScore>>,
}

impl Rescored {
    /// Scores `event` with `scorer` (none for a kind it does not judge) and adds the score.
    fn score(&mut self, scorer: &mut Scorer, event: &Event, prepared: Prepared, tp: &TopicPartition, offset: Offset) {
        let Some(score) = scorer.score_event(event, prepared) else { return };
        let published = publication(event, &score, tp, offset);
        if let Some(at) = self.received.get(&published.subject_event_id) {
            self.contributions.push(contribution(&published, *at));
        }
        if let Some(scores) = &mut self.scores {
            scores.push(published);
        }
    }
}

impl Rescore {
    /// A scorer at the start of the log; `keep_scores` keeps every score event as well.
    fn new(keep_scores: bool) -> Self {
        Self {
            limits: Limits::default().for_replay(),
            threads: available_threads(),
            scorer: Scorer::new(ScorerConfig::default()),
            parked: HashMap::new(),
            scored: Rescored { scores: keep_scores.then(Vec::new), ..Rescored::default() },
        }
    }

    /// Scores the submissions of `records`, the next records of the log.
    fn feed(&mut self, records: &[LogRecord], progress: &ProgressBar) {
        let limits = &self.limits;
        let decode = |r: &LogRecord| {
            let event = Event::parse(kind_of_topic(&r.source.topic)?, &r.payload, limits).ok()?;
            let prepared = Prepared::of(&event);
            Some((event, prepared))
        };
        let Self { scorer, parked, scored, .. } = self;
        map_fold_ordered(records, self.threads, decode, |r, decoded| {
            progress.inc(1);
            // Bronze holds only records that decoded when they landed; one that no longer does
            // (a tampered row) is left out here and shows up as a missing score.
            let Some((event, prepared)) = decoded else { return };
            if scored.received.contains_key(&event.event_id()) {
                return;
            }
            scored.received.insert(event.event_id(), r.received_at);
            let (tp, off) = (r.source.clone(), r.offset);
            match &event {
                Event::ChatTurn(turn) => {
                    let turn_id = turn.turn_id.clone();
                    scored.score(scorer, &event, prepared, &tp, off);
                    for (pref, tp, off) in parked.remove(&turn_id).unwrap_or_default() {
                        scored.score(scorer, &pref, Prepared::Nothing, &tp, off);
                    }
                }
                Event::Preference(pref) if !scorer.knows_turn(&pref.turn_id) => {
                    parked.entry(pref.turn_id.clone()).or_default().push((event, tp, off));
                }
                _ => scored.score(scorer, &event, prepared, &tp, off),
            }
        });
    }

    /// The scores, once the whole log was fed (preferences whose turn never came are scored
    /// last, in receipt order).
    fn finish(mut self) -> Rescored {
        let mut left: Vec<_> = std::mem::take(&mut self.parked).into_values().flatten().collect();
        left.sort_by_key(|(e, tp, off)| (self.scored.received.get(&e.event_id()).copied(), tp.clone(), *off));
        for (pref, tp, off) in left {
            self.scored.score(&mut self.scorer, &pref, Prepared::Nothing, &tp, off);
        }
        self.scored
    }
}

fn contribution(s: &QualityScore, received_at: DateTime<Utc>) -> Contribution {
    Contribution {
        contributor: s.contributor_id.clone(),
        subject: s.subject_event_id,
        kind: s.subject_kind,
        scorer_version: s.scorer_version.clone(),
        score: s.score,
        verdict: s.verdict,
        reason_codes: s.reasons.iter().map(|r| r.code.clone()).collect(),
        received_at,
        votes: Vec::new(),
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
    let (mut rescore, mut records) = (Rescore::new(options.out.is_some()), 0);
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
                let (a, b) = (recorded_text.get(s).map(|c| key(c)), replayed_text.get(s).map(|c| key(c)));
                (a != b).then(|| ScoreDiff {
                    subject: *s,
                    contributor: a.as_ref().or(b.as_ref()).map(|k| k.0.clone()).unwrap_or_default(),
                    recorded: a,
                    replayed: b,
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
