//! The DVA consensus: votes of independent DVA workers (the votes topic) → one score per
//! image-text pair and scorer version (the scores topic), trusting no single worker.
//!
//! With `replicas = k`, k worker groups each score every pair. A pair's ballot is decided when
//! k distinct workers voted, or `wait` after its first vote once a majority of k did. The score
//! is the median of the counted votes; a vote agrees when it lies within `tolerance` of the
//! median, and the share that agree is recorded with every vote in the score's `consensus`.
//! A worker that keeps disagreeing (more than `flag_share` of its last votes, once it cast
//! `flag_min_votes`) is flagged: its votes are still recorded, never counted toward a median.
//!
//! State is a projection of the votes topic: every assignment reads it from the beginning;
//! ballots of pairs already scored in the lake only rebuild the workers' records.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use gata_contract::{
    topics::{DVA_VOTES, QUALITY_SCORES},
    {Consensus, Limits, LogRecord, QualityScore, ScoreReason, ValidatorVote, Verdict},
};
use gata_infra::{
    config::DvaConfig,
    foreground::{Clock, Rank},
};
use gata_lakehouse::{Lake, Offset, TopicPartition};
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::time::Instant;
use uuid::Uuid;

use crate::{
    Context, Result,
    poller::{self, Membership, Polled, Subscription},
    publisher::Publisher,
    skeleton::{self, Handler},
};

/// Accept thresholds on the median: the model's (`dva.threshold`, else its card's), and
/// those of scorer versions that differ from the model's (validators' ballots under
/// `validation.scorer_version`).
#[derive(Debug, Clone, Default)]
pub struct Thresholds {
    /// The model's.
    pub model: f64,
    /// By scorer version.
    pub versions: BTreeMap<String, f64>,
}

impl Thresholds {
    fn of(&self, version: &str) -> f64 {
        self.versions.get(version).copied().unwrap_or(self.model)
    }
}

/// One vote as it arrived.
struct Cast {
    vote: QualityScore,
    source: TopicPartition,
    offset: Offset,
}

/// The votes on one pair under one scorer version.
struct Ballot {
    opened: Instant,
    votes: BTreeMap<String, Cast>,
}

/// What the consensus knows of one worker.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ValidatorRecord {
    /// Votes counted in decided ballots.
    pub votes: u32,
    /// Of which outside the tolerance.
    pub deviations: u32,
    /// Whether its votes no longer count.
    pub flagged: bool,
}

/// The median of `scores` (not empty).
fn median(scores: &mut [f64]) -> f64 {
    scores.sort_by(f64::total_cmp);
    let mid = scores.len() / 2;
    if scores.len() % 2 == 1 { scores[mid] } else { (scores[mid - 1] + scores[mid]) / 2.0 }
}

/// The pure part: ballots in, decisions out.
pub struct Tally {
    /// `replicas`, `tolerance`, `consensus_wait` and the flagging rule (`[dva]`).
    cfg: DvaConfig,
    thresholds: Thresholds,
    ballots: HashMap<(String, Uuid), Ballot>,
    decided: HashSet<(String, Uuid)>,
    validators: BTreeMap<String, ValidatorRecord>,
}

/// A decided ballot: the score to publish and the last vote's position.
pub struct Decision {
    /// The consensus score event.
    pub score: QualityScore,
    /// The position of the vote that completed it.
    pub source: TopicPartition,
    /// Its offset.
    pub offset: Offset,
    /// Workers flagged by this decision.
    pub newly_flagged: Vec<String>,
}

impl Tally {
    /// An empty tally under `cfg`'s rules and `thresholds`.
    pub fn new(cfg: DvaConfig, thresholds: Thresholds) -> Self {
        Self { cfg, thresholds, ballots: HashMap::new(), decided: HashSet::new(), validators: BTreeMap::new() }
    }

    /// Votes needed before the wait can decide a ballot: a majority of the replicas.
    fn quorum(&self) -> usize {
        self.cfg.replicas as usize / 2 + 1
    }

    /// What is known of each worker.
    pub fn validators(&self) -> &BTreeMap<String, ValidatorRecord> {
        &self.validators
    }

    /// Ballots waiting for votes.
    pub fn pending(&self) -> usize {
        self.ballots.len()
    }

    /// Adds a vote; returns the decision when it completes its ballot. A worker's second vote
    /// on a pair, and votes on decided pairs, are ignored (`None`).
    pub fn add(
        &mut self,
        vote: QualityScore,
        source: TopicPartition,
        offset: Offset,
        now: Instant,
    ) -> Option<Decision> {
        let validator = vote.validator.clone()?;
        let key = (vote.scorer_version.clone(), vote.subject_event_id);
        if self.decided.contains(&key) {
            return None;
        }
        let ballot = self.ballots.entry(key.clone()).or_insert_with(|| Ballot { opened: now, votes: BTreeMap::new() });
        ballot.votes.entry(validator).or_insert(Cast { vote, source, offset });
        (ballot.votes.len() >= self.cfg.replicas as usize).then(|| self.decide(&key)).flatten()
    }

    /// Decides every ballot that waited `wait` and has a majority.
    pub fn expire(&mut self, now: Instant) -> Vec<Decision> {
        let due: Vec<(String, Uuid)> = self
            .ballots
            .iter()
            .filter(|(_, b)| now.duration_since(b.opened) >= self.cfg.consensus_wait && b.votes.len() >= self.quorum())
            .map(|(k, _)| k.clone())
            .collect();
        due.iter().filter_map(|k| self.decide(k)).collect()
    }

    fn decide(&mut self, key: &(String, Uuid)) -> Option<Decision> {
        let ballot = self.ballots.remove(key)?;
        self.decided.insert(key.clone());
        let counted: Vec<&Cast> = {
            let trusted: Vec<&Cast> = ballot.votes.values().filter(|c| !self.is_flagged(&c.vote)).collect();
            if trusted.is_empty() { ballot.votes.values().collect() } else { trusted }
        };
        let mut scores: Vec<f64> = counted.iter().map(|c| c.vote.score).collect();
        let middle = median(&mut scores);
        let tolerance = self.cfg.tolerance;
        let agrees = |c: &Cast| (c.vote.score - middle).abs() <= tolerance;
        let agreement = counted.iter().filter(|c| agrees(c)).count() as f64 / counted.len() as f64;
        let mut newly_flagged = Vec::new();
        let votes: Vec<ValidatorVote> = ballot
            .votes
            .iter()
            .map(|(validator, cast)| {
                let agrees = agrees(cast);
                let record = self.validators.entry(validator.clone()).or_default();
                record.votes += 1;
                record.deviations += u32::from(!agrees);
                let share = f64::from(record.deviations) / f64::from(record.votes);
                if !record.flagged && record.votes >= self.cfg.flag_min_votes && share > self.cfg.flag_share {
                    record.flagged = true;
                    newly_flagged.push(validator.clone());
                }
                ValidatorVote { validator: validator.clone(), score: cast.vote.score, agrees }
            })
            .collect();
        // The counted vote nearest the median speaks for the model and, on a reject, the reasons.
        let nearest =
            counted.iter().min_by(|a, b| (a.vote.score - middle).abs().total_cmp(&(b.vote.score - middle).abs()))?;
        let last = ballot.votes.values().max_by_key(|c| c.offset)?;
        let threshold = self.thresholds.of(&key.0);
        let verdict = if middle >= threshold { Verdict::Accept } else { Verdict::Reject };
        let reasons = match verdict {
            Verdict::Accept => Vec::new(),
            Verdict::Reject if !nearest.vote.reasons.is_empty() => nearest.vote.reasons.clone(),
            Verdict::Reject => vec![ScoreReason {
                code: "caption_mismatch".into(),
                penalty: 1.0,
                detail: format!(
                    "median image-caption agreement {middle:.3} of {} votes is below the threshold {threshold:.3}",
                    counted.len(),
                ),
            }],
        };
        let template = &nearest.vote;
        let score = QualityScore {
            event_id: QualityScore::id_for(&template.scorer_version, template.subject_event_id),
            score: middle,
            verdict,
            reasons,
            scored_at: Utc::now(),
            validator: None,
            consensus: Some(Consensus { replicas: self.cfg.replicas, tolerance, agreement, votes }),
            ..template.clone()
        };
        Some(Decision { score, source: last.source.clone(), offset: last.offset, newly_flagged })
    }

    fn is_flagged(&self, vote: &QualityScore) -> bool {
        vote.validator.as_ref().and_then(|v| self.validators.get(v)).is_some_and(|r| r.flagged)
    }
}

struct Metrics {
    decided: IntCounterVec,
    votes: IntCounterVec,
    flagged: IntGaugeVec,
    pending: IntGauge,
    lag: IntGaugeVec,
}

impl Metrics {
    fn register(registry: &Registry) -> gata_infra::Result<Self> {
        use gata_infra::telemetry::register;
        Ok(Self {
            decided: register(
                registry,
                IntCounterVec::new(
                    Opts::new("gata_dva_consensus_total", "Image-text pairs scored by consensus, by verdict"),
                    &["verdict"],
                )?,
            )?,
            votes: register(
                registry,
                IntCounterVec::new(
                    Opts::new("gata_dva_votes_total", "DVA votes counted in decided ballots, by worker and agreement"),
                    &["validator", "agrees"],
                )?,
            )?,
            flagged: register(
                registry,
                IntGaugeVec::new(
                    Opts::new("gata_dva_validator_flagged", "1 for a DVA worker whose votes no longer count"),
                    &["validator"],
                )?,
            )?,
            pending: register(registry, IntGauge::new("gata_dva_consensus_pending", "Ballots waiting for votes")?)?,
            lag: register(
                registry,
                IntGaugeVec::new(
                    Opts::new("gata_dva_consensus_lag_records", "DVA votes in the log not yet read, by partition"),
                    &["topic", "partition"],
                )?,
            )?,
        })
    }
}

/// Runs the consensus as `cfg` says until `ctx.stop` is cancelled or a failure it cannot retry.
pub async fn run_consensus(ctx: Context, cfg: DvaConfig, thresholds: Thresholds, lake: Lake) -> Result<()> {
    let Context { group, kafka, limits, registry, stop, foreground } = ctx;
    let metrics = Metrics::register(&registry)?;
    let producer = kafka.processor_producer()?;
    let done = Arc::new(Mutex::new(BTreeMap::new()));
    let subscription = Subscription {
        name: "gata-dva-consensus-poller",
        config: kafka.consumer(&group),
        topics: vec![DVA_VOTES.to_string()],
        positions: poller::from_the_beginning(),
        committed: done.clone(),
        lag: metrics.lag.clone(),
        mac: kafka.record_mac().cloned(),
        membership: Membership::Group,
        tells_behind: false,
        foreground: foreground.clone().map(|f| (f, Rank::Derived)),
    };
    tracing::info!(replicas = cfg.replicas, tolerance = cfg.tolerance, wait = ?cfg.consensus_wait, "DVA consensus joining its group");
    let run = Run {
        tally: Tally::new(cfg, thresholds),
        lake,
        landed: HashMap::new(),
        publisher: Publisher::new(producer, QUALITY_SCORES, kafka.record_mac().cloned(), 1000, done),
        metrics,
        limits,
        clock: Clock::new(foreground, Rank::Derived),
        next_tick: Instant::now(),
    };
    skeleton::run("DVA consensus", subscription, 1024, stop, run).await
}

/// How often ballots past their wait are decided.
const TICK: Duration = Duration::from_secs(1);

impl Handler for Run {
    async fn records(&mut self, batch: Vec<Polled>) -> Result<()> {
        for Polled { record: LogRecord { source, offset, payload, .. }, forged, .. } in batch {
            match QualityScore::parse(&payload, &self.limits) {
                // Not the platform's own (the sink dead-letters it): never counted.
                _ if forged.is_some() => {
                    tracing::warn!(%source, %offset, reason = ?forged, "forged DVA vote; not counted");
                }
                Ok(vote) if vote.validator.is_some() => {
                    if let Some(decision) =
                        self.tally.add(vote, source.clone(), offset, Instant::from_std(self.clock.now()))
                    {
                        self.settle(decision).await?;
                    }
                }
                // The sink dead-letters what cannot be read; nothing to count here.
                _ => tracing::debug!(%source, %offset, "not a DVA vote; skipped"),
            }
            self.publisher.skip(source, offset);
        }
        Ok(())
    }

    async fn revoked(&mut self, _tps: &[TopicPartition]) -> Result<()> {
        self.publisher.drain().await
    }

    fn wake_at(&self) -> Option<Instant> {
        Some(self.next_tick)
    }

    async fn tick(&mut self) -> Result<()> {
        self.next_tick = Instant::now() + TICK;
        for decision in self.tally.expire(Instant::from_std(self.clock.now())) {
            self.settle(decision).await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<()> {
        self.publisher.drain().await
    }

    fn observe(&self) {
        self.metrics.pending.set(self.tally.pending() as i64);
    }
}

struct Run {
    tally: Tally,
    lake: Lake,
    /// Per scorer version, the pairs whose score is already in the lake.
    landed: HashMap<String, HashSet<Uuid>>,
    publisher: Publisher,
    metrics: Metrics,
    limits: Limits,
    /// The clock of the ballots' waits: it stands still while the consensus steps aside, so
    /// a ballot is not decided while the votes it waits for wait in the log.
    clock: Clock,
    /// When ballots past their wait are next looked at.
    next_tick: Instant,
}

impl Run {
    /// Records a decision and publishes its score unless the lake has it already.
    async fn settle(&mut self, decision: Decision) -> Result<()> {
        let Decision { score, source, offset, newly_flagged } = decision;
        for validator in newly_flagged {
            tracing::warn!(%validator, "DVA worker flagged: its votes keep deviating from the consensus and no longer count");
            self.metrics.flagged.with_label_values(&[validator.as_str()]).set(1);
        }
        let consensus = score.consensus.as_ref().map(|c| c.votes.as_slice()).unwrap_or_default();
        for vote in consensus {
            self.metrics
                .votes
                .with_label_values(&[vote.validator.as_str(), if vote.agrees { "true" } else { "false" }])
                .inc();
        }
        let version = score.scorer_version.clone();
        if !self.landed.contains_key(&version) {
            let subjects = self.lake.scored_subjects(&version).await?;
            self.landed.insert(version.clone(), subjects);
        }
        if self.landed.get(&version).is_some_and(|s| s.contains(&score.subject_event_id)) {
            return Ok(());
        }
        self.metrics.decided.with_label_values(&[score.verdict.name()]).inc();
        self.publisher.publish(&score, source, offset).await
    }
}

#[cfg(test)]
mod tests {
    use gata_contract::{EventKind, LogPosition, ModelRef, SubScores};

    use super::*;

    fn settings() -> DvaConfig {
        DvaConfig {
            replicas: 3,
            tolerance: 0.05,
            consensus_wait: Duration::from_secs(10),
            flag_min_votes: 5,
            flag_share: 0.5,
            ..DvaConfig::default()
        }
    }

    fn thresholds() -> Thresholds {
        Thresholds { model: 0.5, versions: BTreeMap::new() }
    }

    fn vote(validator: &str, subject: Uuid, score: f64) -> QualityScore {
        let vote = QualityScore {
            event_id: Uuid::nil(),
            contributor_id: "alice".into(),
            subject_event_id: subject,
            subject_kind: EventKind::ImageTextPair,
            scorer_version: "dva/m@abc".into(),
            score,
            verdict: Verdict::Accept,
            sub_scores: SubScores::default(),
            reasons: Vec::new(),
            language: None,
            occurred_at: Utc::now(),
            scored_at: Utc::now(),
            source: LogPosition { topic: "gata.image_text_pairs.v1".into(), partition: 0, offset: 4 },
            model: Some(ModelRef { id: "m".into(), sha256: "abc".into() }),
            timings: None,
            validator: Some(validator.into()),
            consensus: None,
        };
        QualityScore { event_id: vote.expected_id(), ..vote }
    }

    fn cast(tally: &mut Tally, v: QualityScore, at: Instant) -> Option<Decision> {
        tally.add(v, TopicPartition::new(DVA_VOTES, 0), Offset(0), at)
    }

    #[test]
    fn the_median_of_k_votes_decides_and_the_outlier_disagrees() {
        let mut tally = Tally::new(settings(), thresholds());
        let (pair, now) = (Uuid::now_v7(), Instant::now());
        assert!(cast(&mut tally, vote("a", pair, 0.61), now).is_none());
        assert!(cast(&mut tally, vote("a", pair, 0.99), now).is_none(), "a second vote by a is ignored");
        assert!(cast(&mut tally, vote("b", pair, 0.60), now).is_none());
        let d = cast(&mut tally, vote("r", pair, -0.7), now).expect("third vote decides");
        assert_eq!(d.score.score, 0.60);
        assert_eq!(d.score.verdict, Verdict::Accept);
        assert_eq!(d.score.event_id, QualityScore::id_for("dva/m@abc", pair));
        let c = d.score.consensus.expect("consensus");
        assert!((c.agreement - 2.0 / 3.0).abs() < 1e-9);
        let agrees: Vec<(&str, bool)> = c.votes.iter().map(|v| (v.validator.as_str(), v.agrees)).collect();
        assert_eq!(agrees, [("a", true), ("b", true), ("r", false)]);
        assert!(cast(&mut tally, vote("c", pair, 0.6), now).is_none(), "a decided pair takes no more votes");
    }

    #[test]
    fn a_majority_decides_after_the_wait_and_a_minority_keeps_waiting() {
        let mut tally = Tally::new(settings(), thresholds());
        let (two, one, now) = (Uuid::now_v7(), Uuid::now_v7(), Instant::now());
        cast(&mut tally, vote("a", two, 0.2), now);
        cast(&mut tally, vote("b", two, 0.3), now);
        cast(&mut tally, vote("a", one, 0.2), now);
        assert!(tally.expire(now + Duration::from_secs(1)).is_empty());
        let decided = tally.expire(now + Duration::from_secs(11));
        assert_eq!(decided.len(), 1);
        assert!((decided[0].score.score - 0.25).abs() < 1e-9, "median of two is their mean");
        assert_eq!(decided[0].score.verdict, Verdict::Reject);
        assert_eq!(decided[0].score.reasons[0].code, "caption_mismatch");
        assert_eq!(tally.pending(), 1);
    }

    #[test]
    fn a_worker_returning_random_numbers_is_flagged_and_stops_counting() {
        let mut tally = Tally::new(settings(), thresholds());
        let now = Instant::now();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut flagged_at = None;
        for i in 0..40 {
            let pair = Uuid::now_v7();
            let honest = 0.3 + f64::from(i % 7) / 20.0;
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let random = (seed % 2000) as f64 / 1000.0 - 1.0;
            cast(&mut tally, vote("honest-1", pair, honest), now);
            cast(&mut tally, vote("random", pair, random), now);
            let d = cast(&mut tally, vote("honest-2", pair, honest), now).expect("decided");
            assert_eq!(d.score.score, honest, "the median is the honest score");
            if d.newly_flagged.contains(&"random".to_string()) {
                flagged_at = Some(i);
            }
        }
        let v = tally.validators();
        assert!(v["random"].flagged, "{v:?}");
        assert!(flagged_at.is_some_and(|i| i < 10), "flagged after {flagged_at:?} pairs");
        assert!(!v["honest-1"].flagged && !v["honest-2"].flagged && v["honest-1"].deviations == 0, "{v:?}");

        // Once flagged, a random vote cannot move the median even when an honest one is missing.
        let pair = Uuid::now_v7();
        cast(&mut tally, vote("honest-1", pair, 0.42), now);
        cast(&mut tally, vote("random", pair, -0.9), now);
        let d = tally.expire(now + Duration::from_secs(11)).pop().expect("majority after the wait");
        assert_eq!(d.score.score, 0.42);
    }
}
