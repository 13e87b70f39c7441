//! The scoring processor: chat turns and preferences from the intake topics → one
//! [`QualityScore`] per submission on the scores topic (which the lake sink lands in the
//! `quality_scores` table).
//!
//! State is rebuilt from the log: on every assignment the processor reads its partitions from
//! the beginning and feeds every submission to the [`Scorer`] in log order, holding back
//! anything newer than the lake's bronze table until all of that history is replayed (see
//! [`catch_up`]). What it publishes is decided by the lake: a submission that already has a score of this scorer version in
//! `quality_scores` only rebuilds state; every other one is scored and published. A crash at
//! any point therefore loses nothing (unlanded scores are published again, under the same
//! deterministic event id, and the sink keeps one), and a new scorer version re-scores all of
//! history on its first start.
//!
//! Scaling out without losing what only the whole log shows (copies across accounts, Sybil
//! clusters): the work is split into [`shards`](ScoringConfig::shards). Every shard reads every
//! partition and folds every submission into its scorer, in the same order (history merged by
//! receipt key, see [`catch_up`]), but judges and publishes only the submissions of its own
//! partitions (number modulo `shards`). A contributor's turns and preferences share a partition
//! number (the key is the contributor), so a shard judges whole contributors; of everyone
//! else's submissions it keeps only what its own contributors' verdicts depend on
//! ([`Scorer::remember`]: every prompt's signature, every turn's facts). So each shard's
//! verdicts are the ones a single processor would give.

mod catch_up;
pub(crate) mod parked;
mod reorder;

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use gata_contract::{
    topics::{QUALITY_SCORES, intake_topic, kind_of_topic},
    {Event, EventKind, Limits, LogPosition, QualityScore, Violation},
};
use gata_infra::{
    config::ScoringConfig,
    foreground::{Clock, Rank},
};
use gata_lakehouse::{Lake, Offset, TableId, TopicPartition};
use gata_parallel::{SMALL_ITEMS_PER_THREAD, map_ordered};
use gata_scoring::{Prepared, SCORER_VERSION, Score, Scorer, ScorerConfig};
use uuid::Uuid;

use crate::{
    Context, ProcessorError, Result,
    metrics::ScoringMetrics,
    poller::{self, Membership, Polled, Subscription},
    publisher::Publisher,
    skeleton::{self, Handler},
};
use catch_up::CatchUp;
use parked::{Parked, Waiting};
use reorder::Reorder;

/// The kinds this processor scores (image-text pairs are the DVA's).
pub const SCORED_KINDS: [EventKind; 2] = [EventKind::ChatTurn, EventKind::Preference];

/// Runs the scoring processor as `cfg` says until `ctx.stop` is cancelled or a failure it
/// cannot retry. `cfg.threads` is taken as given (at least one); the caller resolves `0`.
pub async fn run_scoring(ctx: Context, cfg: ScoringConfig, lake: Lake) -> Result<()> {
    let Context { group, kafka, limits, registry, stop, foreground } = ctx;
    let shard = Shard { index: cfg.shard, count: cfg.shards.max(1) };
    // Shards read every partition with no group membership; the group only takes their
    // progress reports, one group per shard.
    let group = if shard.count > 1 { format!("{group}-{}-of-{}", shard.index, shard.count) } else { group };
    let metrics = ScoringMetrics::register(&registry)?;
    let landed = lake.scored_subjects(SCORER_VERSION).await?;
    tracing::info!(scorer = SCORER_VERSION, landed = landed.len(), "scores already in the lake");
    let producer = kafka.processor_producer()?;
    let done = Arc::new(Mutex::new(BTreeMap::new()));
    let subscription = Subscription {
        name: "gata-scoring-poller",
        config: kafka.consumer(&group),
        topics: SCORED_KINDS.into_iter().map(|k| intake_topic(k).to_string()).collect(),
        positions: poller::from_the_beginning(),
        committed: done.clone(),
        lag: metrics.lag.clone(),
        mac: kafka.record_mac().cloned(),
        membership: Membership::EveryPartition,
        tells_behind: true,
        foreground: foreground.clone().map(|f| (f, Rank::Derived)),
    };
    let clock = Clock::new(foreground, Rank::Derived);
    tracing::info!(%group, scorer = SCORER_VERSION, shard = shard.index, shards = shard.count, "scoring processor reading every partition");
    let processor = Processor {
        lake,
        catch_up: CatchUp::default(),
        reorder: Reorder::new(cfg.reorder_window),
        scorer: Scorer::new(ScorerConfig::default()),
        landed,
        seen: HashSet::new(),
        parked: Parked::new(cfg.turn_wait),
        publisher: Publisher::new(producer, QUALITY_SCORES, kafka.record_mac().cloned(), cfg.publish_window, done),
        limits: limits.for_replay(),
        idle_after: cfg.reorder_window + IDLE_SLACK,
        last_taken: clock.now(),
        clock,
        threads: cfg.threads.max(1),
        shard,
        metrics,
        next_tick: tokio::time::Instant::now(),
    };
    skeleton::run("scoring processor", subscription, cfg.queue_records, stop, processor).await
}

/// How often held records, parked preferences and scores in flight are looked at.
const TICK: Duration = Duration::from_millis(100);

/// Added to `reorder_window`: how long the fold must have taken no record before parked
/// preferences may leave by the wall clock (their turn never came and nothing else arrives).
const IDLE_SLACK: Duration = Duration::from_secs(1);

/// Which submissions this process judges: those of the partitions whose number modulo `count`
/// is `index`.
#[derive(Debug, Clone, Copy)]
struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    fn owns(self, source: &TopicPartition) -> bool {
        u32::try_from(source.partition).is_ok_and(|p| p % self.count == self.index)
    }

    /// Refuses partitions that cannot be split by contributor: shards judge whole
    /// contributors only if a contributor's turns and preferences share a partition number, so
    /// both topics need as many partitions.
    fn check(self, tps: &[TopicPartition]) -> Result<()> {
        let mut counts = BTreeMap::<&str, usize>::new();
        for tp in tps {
            *counts.entry(tp.topic.as_str()).or_default() += 1;
        }
        let distinct: HashSet<usize> = counts.values().copied().collect();
        if self.count > 1 && distinct.len() > 1 {
            return Err(ProcessorError::Shards(format!(
                "the scored topics have different partition counts ({counts:?}): a contributor's turns and preferences would be judged by different shards"
            )));
        }
        Ok(())
    }
}

struct Processor {
    lake: Lake,
    catch_up: CatchUp,
    reorder: Reorder,
    scorer: Scorer,
    /// Submissions whose score (of this version) is in the lake: state only, nothing published.
    landed: HashSet<Uuid>,
    /// Submissions this incarnation has taken in (scored or parked): a client's retry or a
    /// re-read after a rebalance is not scored twice.
    seen: HashSet<Uuid>,
    parked: Parked,
    publisher: Publisher,
    limits: Limits,
    /// How long without a record before a parked preference may leave by the wall clock.
    idle_after: Duration,
    /// When the fold last took a record, on `clock`.
    last_taken: Instant,
    /// The clock of the processor's waits (the reordering window, a partition's silence, the
    /// catch-up's, idleness): it stands still while the processor steps aside.
    clock: Clock,
    threads: usize,
    shard: Shard,
    metrics: ScoringMetrics,
    /// When the next tick is due (ticks run only while something is held or in flight: an
    /// idle processor is not woken).
    next_tick: tokio::time::Instant,
}

impl Handler for Processor {
    async fn records(&mut self, batch: Vec<Polled>) -> Result<()> {
        for polled in batch {
            self.admit(polled).await?;
        }
        Ok(())
    }

    /// New partitions: replay each from the start, up to what the bronze table holds first.
    async fn assigned(&mut self, tps: Vec<TopicPartition>) -> Result<()> {
        self.shard.check(&tps)?;
        let bronze = self.lake.open(TableId::Events).await?;
        let targets = self.lake.positions(&bronze, TableId::Events, tps.clone()).await?;
        tracing::info!(?tps, ?targets, "rebuilding scorer state from the start of these partitions");
        self.catch_up.assigned(targets, self.clock.now());
        Ok(())
    }

    /// Scores what waits on `tps` (their next owner would not know it was taken in here) and
    /// waits until every score is acknowledged.
    async fn revoked(&mut self, tps: &[TopicPartition]) -> Result<()> {
        let now = self.clock.now();
        self.reorder.revoked(tps);
        for polled in self.catch_up.revoked(tps) {
            self.reorder.push(polled, now);
        }
        for waiting in self.parked.release_partitions(tps) {
            self.score_waiting(waiting).await?;
        }
        self.metrics.parked.set(self.parked.len() as i64);
        self.publisher.drain().await
    }

    fn wake_at(&self) -> Option<tokio::time::Instant> {
        self.holds_anything().then_some(self.next_tick)
    }

    /// Moves on what is held: catch-up records past their wait, records past the reordering
    /// window, parked preferences whose turn never came, scores acknowledged.
    async fn tick(&mut self) -> Result<()> {
        self.next_tick = tokio::time::Instant::now() + TICK;
        let now = self.clock.now();
        for polled in self.catch_up.expire(now) {
            self.reorder.push(polled, now);
        }
        self.release_due(now).await?;
        self.release_expired().await?;
        self.publisher.settle_ready()
    }

    async fn finish(&mut self) -> Result<()> {
        self.publisher.drain().await
    }
}

impl Processor {
    async fn admit(&mut self, polled: Polled) -> Result<()> {
        let now = self.clock.now();
        for polled in self.catch_up.admit(polled, now) {
            self.reorder.push(polled, now);
        }
        self.release_due(now).await
    }

    /// Whether the fold has taken no record for `idle_after` and none waits to be taken: no
    /// history still to merge and nothing in the reordering window. Only then may the wall
    /// clock end a preference's wait. A merge of history stalls whenever one partition's next
    /// record is late (a restart on a busy machine), and judging parked preferences then would
    /// judge them without turns that the log holds within their wait, unlike every replay.
    fn idle(&self) -> bool {
        self.clock.now().duration_since(self.last_taken) >= self.idle_after
            && !self.catch_up.replaying()
            && self.catch_up.held() + self.reorder.len() == 0
    }

    /// Whether records wait in the catch-up or reordering buffers, preferences are parked, or
    /// scores are in flight: what [`Handler::tick`] moves on.
    fn holds_anything(&self) -> bool {
        self.catch_up.held() + self.reorder.len() + self.parked.len() > 0 || !self.publisher.is_idle()
    }

    /// Scores the records whose reordering window has passed: decoded and assessed on
    /// [`threads`](ScoringConfig::threads) threads, then folded into the scorer in order. A
    /// long run of them (a backlog, a replay of history) goes in chunks of [`ASSESSED_AHEAD`],
    /// each assessed while the one before it is folded: the fold is sequential, the assessment
    /// is not. The assessment keeps all its threads meanwhile, one more than there are cores
    /// while the fold runs, so no core waits whichever of the two is the longer.
    async fn release_due(&mut self, now: Instant) -> Result<()> {
        let due = self.reorder.due(now);
        // One thread has nothing to overlap: everything is one chunk then.
        let size = if self.threads > 1 { ASSESSED_AHEAD } else { due.len().max(1) };
        // Each record moved once (splitting the rest off again and again would copy it).
        let mut due = due.into_iter();
        let mut chunks =
            std::iter::from_fn(|| Some(due.by_ref().take(size).collect::<Vec<_>>()).filter(|c| !c.is_empty()));
        let mut current = chunks.next().map(|first| self.assessor().run(first));
        while let Some((chunk, decoded)) = current.take() {
            let next = chunks.next().map(|chunk| {
                let assessor = self.assessor();
                tokio::task::spawn_blocking(move || assessor.run(chunk))
            });
            for (polled, decoded) in chunk.into_iter().zip(decoded) {
                self.take(polled.record.source, polled.record.offset, polled.record.received_at, decoded).await?;
            }
            if let Some(next) = next {
                current = Some(match next.await {
                    Ok(assessed) => assessed,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    // The records stay unread: nothing after them may be folded.
                    Err(e) => return Err(ProcessorError::AssessedAhead(e.to_string())),
                });
            }
        }
        self.metrics.held.set((self.catch_up.held() + self.reorder.len()) as i64);
        Ok(())
    }

    /// What decodes and assesses a chunk of records, owning all it needs.
    fn assessor(&self) -> Assessor {
        Assessor { limits: self.limits.clone(), shard: self.shard, threads: self.threads }
    }

    async fn take(
        &mut self,
        source: TopicPartition,
        offset: Offset,
        received_at: DateTime<Utc>,
        decoded: Decoded,
    ) -> Result<()> {
        let (event, prepared) = match decoded {
            Decoded::Submission(event, prepared) => (event, prepared),
            Decoded::NotScored => {
                self.metrics.skipped.with_label_values(&["not_scored_here"]).inc();
                self.publisher.skip(source, offset);
                return Ok(());
            }
            Decoded::Undecodable(violations) => {
                // The sink dead-letters it with the reasons; it is not a submission to score.
                tracing::debug!(%source, %offset, ?violations, "skipping undecodable record");
                self.metrics.skipped.with_label_values(&["undecodable"]).inc();
                self.publisher.skip(source, offset);
                return Ok(());
            }
        };
        self.last_taken = self.clock.now();
        // Preferences whose wait for their turn ended before this submission was received.
        for waiting in self.parked.release_expired(received_at) {
            self.score_waiting(waiting).await?;
        }
        if !self.seen.insert(event.event_id()) {
            self.metrics.skipped.with_label_values(&["already_scored"]).inc();
            self.publisher.skip(source, offset);
            return Ok(());
        }
        match event {
            Event::ChatTurn(turn) => {
                let turn_id = turn.turn_id.clone();
                self.score(Event::ChatTurn(turn), prepared, source, offset).await?;
                for waiting in self.parked.release_turn(&turn_id) {
                    self.score_waiting(waiting).await?;
                }
            }
            Event::Preference(pref) if self.shard.owns(&source) && !self.scorer.knows_turn(&pref.turn_id) => {
                self.parked.park(pref, source, offset, received_at);
            }
            other => self.score(other, prepared, source, offset).await?,
        }
        self.metrics.parked.set(self.parked.len() as i64);
        Ok(())
    }

    /// Once the fold is idle, scores the parked preferences whose deadline is that long past by
    /// the wall clock: their turn never came, and no later submission will end their wait.
    async fn release_expired(&mut self) -> Result<()> {
        if !self.idle() {
            return Ok(());
        }
        let idle = chrono::Duration::from_std(self.idle_after).unwrap_or(chrono::TimeDelta::MAX);
        for waiting in self.parked.release_expired(Utc::now() - idle) {
            self.score_waiting(waiting).await?;
        }
        self.metrics.parked.set(self.parked.len() as i64);
        Ok(())
    }

    async fn score_waiting(&mut self, waiting: Waiting) -> Result<()> {
        let Waiting { preference, source, offset, .. } = waiting;
        // Its reason text is assessed now: parking is rare and the text short.
        self.score(Event::Preference(preference), Prepared::Nothing, source, offset).await
    }

    /// Scores `event` (state is updated either way) and publishes the score unless another
    /// shard judges it or the lake has it already.
    async fn score(&mut self, event: Event, prepared: Prepared, source: TopicPartition, offset: Offset) -> Result<()> {
        if !self.shard.owns(&source) {
            self.scorer.remember(&event, prepared);
            self.metrics.remembered.inc();
            self.publisher.skip(source, offset);
            return Ok(());
        }
        let started = Instant::now();
        let Some(score) = self.scorer.score_event(&event, prepared) else {
            self.metrics.skipped.with_label_values(&["not_scored_here"]).inc();
            self.publisher.skip(source, offset);
            return Ok(());
        };
        self.metrics.seconds.observe(started.elapsed().as_secs_f64());
        if self.landed.contains(&event.event_id()) {
            self.metrics.rebuilt.inc();
            self.publisher.skip(source, offset);
            return Ok(());
        }
        self.metrics.scored.with_label_values(&[event.kind().name(), score.verdict.name()]).inc();
        let published = publication(&event, &score, &source, offset);
        self.publisher.publish(&published, source, offset).await
    }
}

/// Records assessed together while the chunk before them is folded (see
/// [`Processor::release_due`]).
const ASSESSED_AHEAD: usize = 2048;

/// Decodes and assesses chunks of records ([`Decoded::of`]) on `threads` threads, from any
/// thread: it owns what it reads.
struct Assessor {
    limits: Limits,
    shard: Shard,
    threads: usize,
}

impl Assessor {
    /// `chunk`, each record with what it decodes to.
    fn run(&self, chunk: Vec<Polled>) -> (Vec<Polled>, Vec<Decoded>) {
        let decoded = map_ordered(&chunk, self.threads.max(1), SMALL_ITEMS_PER_THREAD, |polled| {
            Decoded::of(polled, &self.limits, self.shard.owns(&polled.record.source))
        });
        (chunk, decoded)
    }
}

/// A record as the fold takes it: decoded, and its texts assessed ([`Prepared`]), which needs
/// no scorer state and so runs on any thread.
// Nearly every record is a submission: boxing it would cost an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
enum Decoded {
    /// A chat turn or a preference.
    Submission(Event, Prepared),
    /// A kind this processor does not score.
    NotScored,
    /// A record that does not decode: the sink dead-letters it with these reasons.
    Undecodable(Vec<Violation>),
}

impl Decoded {
    /// Decodes `polled`; assesses its texts when `judged` here, else takes only what the
    /// scorer remembers.
    fn of(polled: &Polled, limits: &Limits, judged: bool) -> Self {
        let Some(kind) = kind_of_topic(&polled.record.source.topic).filter(|k| SCORED_KINDS.contains(k)) else {
            return Self::NotScored;
        };
        match Event::parse(kind, &polled.record.payload, limits) {
            Ok(event) => {
                let prepared = if judged { Prepared::of(&event) } else { Prepared::remembered(&event) };
                Self::Submission(event, prepared)
            }
            Err(violations) => Self::Undecodable(violations),
        }
    }
}

/// The score event of `score` for `event`, read at `source`/`offset`.
pub(crate) fn publication(event: &Event, score: &Score, source: &TopicPartition, offset: Offset) -> QualityScore {
    QualityScore {
        event_id: QualityScore::id_for(SCORER_VERSION, event.event_id()),
        contributor_id: event.contributor_id().to_string(),
        subject_event_id: event.event_id(),
        subject_kind: event.kind(),
        scorer_version: SCORER_VERSION.to_string(),
        score: score.overall,
        verdict: score.verdict,
        sub_scores: score.measured(),
        reasons: score.published_reasons(),
        language: score.language.map(str::to_string),
        occurred_at: event.occurred_at(),
        scored_at: Utc::now(),
        source: LogPosition { topic: source.topic.clone(), partition: source.partition, offset: offset.0 },
        model: None,
        timings: None,
        validator: None,
        consensus: None,
    }
}
