//! The lake side of the sink: buffers decoded records and commits them to every table they
//! belong to, each commit carrying the Kafka positions it covers.
//!
//! Guarantees:
//! - **Exactly once per table.** A record is written to a table only if its offset is past the
//!   position the table recorded for its partition, and the new position is committed with the
//!   rows (see `gata_lakehouse::offsets`). A crash at any point re-reads from the recorded
//!   positions.
//! - **One row per event in silver.** Silver tables skip an `event_id` they already hold (a
//!   client retry), so a retried submission is counted once; bronze keeps every record.
//! - **Nothing dropped.** A record that cannot be decoded is dead-lettered (acknowledged) before
//!   the commit that moves the positions past it.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    time::{Duration, Instant},
};

use gata_contract::{Limits, topics::Feed};
use gata_lakehouse::{
    Body, DeadLetter, Lake, LakeRecord, Offset, TableId, TopicPartition,
    deltalake::DeltaTable,
    rows::{dead_letter_batch, record_batch},
};
use rdkafka::producer::FutureProducer;

use crate::poller::{CommittedPositions, Polled};
use crate::{ProcessorError, Result, dead_letters, metrics::SinkMetrics};

/// Consecutive failed flushes before the sink gives up.
const MAX_FLUSH_ATTEMPTS: u32 = 10;

/// Routine flushes a table that got no new rows may skip before it records its positions. Such
/// a commit holds nothing but positions, yet costs as much as one with rows; skipping it only
/// means a restart re-reads, for that table, what these flushes covered.
const DEFERRED_EMPTY_COMMITS: u32 = 10;

/// What a flush must commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Every table with new rows; a table with none only once it has skipped
    /// [`DEFERRED_EMPTY_COMMITS`] flushes.
    Routine,
    /// Every table, rows or not (partitions revoked, shutdown): nothing is left to re-read.
    Everything,
}

/// One table as the writer sees it.
struct TableState {
    table: DeltaTable,
    positions: BTreeMap<TopicPartition, Offset>,
    /// Silver only: event ids already in the table.
    seen: HashSet<uuid::Uuid>,
    /// Positions covered by flushes that brought this table no rows, not committed yet.
    deferred: BTreeMap<TopicPartition, Offset>,
    /// How many flushes those were.
    deferred_flushes: u32,
}

impl TableState {
    fn new(table: DeltaTable, seen: HashSet<uuid::Uuid>) -> Self {
        Self { table, positions: BTreeMap::new(), seen, deferred: BTreeMap::new(), deferred_flushes: 0 }
    }

    fn needs(&self, tp: &TopicPartition, offset: Offset) -> bool {
        self.positions.get(tp).is_none_or(|p| offset > *p)
    }

    /// Whether a flush of kind `flush` has something to commit to this table (`id`): buffered
    /// records it does not have yet or, when everything is flushed, deferred positions.
    fn has_work(&self, id: TableId, pending_to: &BTreeMap<TopicPartition, Offset>, flush: Flush) -> bool {
        !self.fresh(id, pending_to).is_empty() || (flush == Flush::Everything && !self.deferred.is_empty())
    }

    /// The last buffered offset of each partition feeding `id` that the table does not have yet.
    fn fresh(&self, id: TableId, pending_to: &BTreeMap<TopicPartition, Offset>) -> BTreeMap<TopicPartition, Offset> {
        pending_to
            .iter()
            .filter(|(tp, off)| id.is_fed_by_topic(&tp.topic) && self.needs(tp, **off))
            .map(|(tp, off)| (tp.clone(), *off))
            .collect()
    }

    /// Takes in what other writers committed to the table after version `after` (the table is
    /// already at a later one): their positions for `partitions` and, for a silver table, their
    /// event ids. A writer that held these partitions before, and does not know yet that it lost
    /// them, may have committed rows this one is about to write again; without this, they would
    /// land twice.
    async fn absorb(
        &mut self,
        lake: &Lake,
        id: TableId,
        partitions: impl Iterator<Item = &TopicPartition>,
        after: Option<u64>,
    ) -> Result<()> {
        let fed: BTreeSet<TopicPartition> = partitions.filter(|tp| id.is_fed_by_topic(&tp.topic)).cloned().collect();
        for (tp, theirs) in lake.positions(&self.table, id, fed).await? {
            let ours = self.positions.entry(tp).or_insert(theirs);
            *ours = (*ours).max(theirs);
        }
        if id.is_deduplicated() {
            self.seen.extend(lake.event_ids_since(&self.table, id, after).await?);
        }
        Ok(())
    }
}

pub(crate) struct Writer {
    lake: Lake,
    limits: Limits,
    tables: BTreeMap<TableId, TableState>,
    assigned: BTreeSet<TopicPartition>,
    pending: Vec<LakeRecord>,
    /// Dead letters since the last commit (already on the dead-letter topic).
    pending_dead: Vec<DeadLetter>,
    /// Last offset consumed per partition since the last commit (dead letters included).
    pending_to: BTreeMap<TopicPartition, Offset>,
    oldest_pending: Option<Instant>,
    /// Records consumed since the last commit (dead letters included).
    buffered: usize,
    /// Payload bytes of those records.
    buffered_bytes: usize,
    /// Commits between log checkpoints.
    checkpoint_interval: u64,
    dlq: FutureProducer,
    committed: CommittedPositions,
    metrics: SinkMetrics,
}

impl Writer {
    /// Opens (creating if needed) every table and loads the silver tables' event ids.
    pub(crate) async fn open(
        lake: Lake,
        limits: Limits,
        checkpoint_interval: u64,
        dlq: FutureProducer,
        committed: CommittedPositions,
        metrics: SinkMetrics,
    ) -> Result<Self> {
        let mut tables = BTreeMap::new();
        for id in TableId::ALL {
            let table = lake.open(id).await?;
            let seen = if id.is_deduplicated() { lake.event_ids(&table, id).await? } else { HashSet::new() };
            tables.insert(id, TableState::new(table, seen));
        }
        Ok(Self {
            lake,
            limits,
            tables,
            assigned: BTreeSet::new(),
            pending: Vec::new(),
            pending_dead: Vec::new(),
            pending_to: BTreeMap::new(),
            oldest_pending: None,
            buffered: 0,
            buffered_bytes: 0,
            checkpoint_interval,
            dlq,
            committed,
            metrics,
        })
    }

    /// Records and payload bytes consumed since the last commit.
    pub(crate) fn pending(&self) -> (usize, usize) {
        (self.buffered, self.buffered_bytes)
    }

    /// When the buffered records must be committed at the latest.
    pub(crate) fn flush_deadline(&self, interval: Duration) -> Option<Instant> {
        self.oldest_pending.map(|t| t + interval)
    }

    /// Takes one polled record: skips it if every table already has it, dead-letters it if it
    /// cannot be decoded, buffers it otherwise.
    pub(crate) async fn handle(&mut self, polled: Polled) -> Result<()> {
        self.metrics.consumed.inc();
        let Polled { record, forged, .. } = polled;
        self.buffered_bytes += record.payload.len();
        let Some(feed) = Feed::of_topic(&record.source.topic) else {
            return self.dead_letter(DeadLetter { record, reason: "not a topic of the lake".into() }).await;
        };
        let (source, offset) = (record.source.clone(), record.offset);
        if !TableId::fed_by(feed).iter().any(|id| self.tables[id].needs(&source, offset)) {
            return Ok(());
        }
        let decoded = match forged {
            Some(reason) => Err(vec![gata_contract::Violation::new("", reason)]),
            None => Body::decode(feed, &record.payload, &self.limits),
        };
        match decoded {
            Ok(body) => self.pending.push(LakeRecord { record, body }),
            Err(violations) => {
                let reason =
                    violations.iter().map(|v| format!("{}: {}", v.field, v.reason)).collect::<Vec<_>>().join("; ");
                self.dead_letter(DeadLetter { record, reason }).await?;
            }
        }
        self.pending_to.insert(source, offset);
        self.oldest_pending.get_or_insert_with(Instant::now);
        self.buffered += 1;
        self.metrics.buffered.set(self.buffered as i64);
        Ok(())
    }

    /// Sends `letter` to the dead-letter topic (acknowledged) and buffers it for the table.
    async fn dead_letter(&mut self, letter: DeadLetter) -> Result<()> {
        tracing::warn!(source = %letter.record.source, offset = %letter.record.offset, reason = %letter.reason, "dead-lettering record");
        dead_letters::send(&self.dlq, &letter).await?;
        self.metrics.dead_letters.inc();
        self.pending_dead.push(letter);
        Ok(())
    }

    /// Commits everything buffered, retrying with back-off what can succeed on a retry
    /// ([`ProcessorError::is_retryable`]); gives up after [`MAX_FLUSH_ATTEMPTS`] consecutive
    /// failures, and at once on one that cannot.
    pub(crate) async fn flush(&mut self, flush: Flush) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.try_flush(flush).await {
                Ok(()) => return Ok(()),
                Err(err) if !err.is_retryable() => return Err(err),
                Err(err) => {
                    attempt += 1;
                    self.metrics.flush_failures.inc();
                    tracing::warn!(error = %err, attempt, "flush failed; re-reading table state and retrying");
                    if attempt >= MAX_FLUSH_ATTEMPTS {
                        return Err(ProcessorError::FlushRetriesExhausted { attempts: attempt, last: Box::new(err) });
                    }
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "re-reading table state failed");
                    }
                }
            }
        }
    }

    async fn try_flush(&mut self, flush: Flush) -> Result<()> {
        let deferred = self.tables.values().any(|t| !t.deferred.is_empty());
        if self.pending_to.is_empty() && !(flush == Flush::Everything && deferred) {
            return Ok(());
        }
        let started = Instant::now();
        for id in TableId::ALL {
            self.commit_table(id, flush).await?;
        }
        let mut committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        committed.extend(self.pending_to.iter().map(|(tp, o)| (tp.clone(), *o)));
        drop(committed);
        self.pending.clear();
        self.pending_dead.clear();
        self.pending_to.clear();
        self.oldest_pending = None;
        self.buffered = 0;
        self.buffered_bytes = 0;
        self.metrics.buffered.set(0);
        self.metrics.flush_seconds.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Writes the buffered rows that `id` does not have yet, with its new positions (and those
    /// of flushes it skipped). A routine flush that brings `id` no rows skips it, up to
    /// [`DEFERRED_EMPTY_COMMITS`] times in a row.
    async fn commit_table(&mut self, id: TableId, flush: Flush) -> Result<()> {
        let state = self.tables.get_mut(&id).expect("every table is opened");
        if !state.has_work(id, &self.pending_to, flush) {
            return Ok(());
        }
        let before = state.table.version();
        if self.lake.catch_up(&mut state.table, id).await? {
            state.absorb(&self.lake, id, self.assigned.iter().chain(self.pending_to.keys()), before).await?;
            if !state.has_work(id, &self.pending_to, flush) {
                return Ok(());
            }
        }
        let fresh = state.fresh(id, &self.pending_to);
        let mut batch_ids = HashSet::new();
        let mut duplicates = 0;
        let batch = if id == TableId::DeadLetters {
            let letters: Vec<&DeadLetter> = self
                .pending_dead
                .iter()
                .filter(|d| {
                    id.is_fed_by_topic(&d.record.source.topic) && state.needs(&d.record.source, d.record.offset)
                })
                .collect();
            dead_letter_batch(&letters)?
        } else {
            let rows: Vec<&LakeRecord> = self
                .pending
                .iter()
                .filter(|r| {
                    id.is_fed_by_topic(&r.record.source.topic) && state.needs(&r.record.source, r.record.offset)
                })
                .filter(|r| {
                    if !id.is_deduplicated() {
                        return true;
                    }
                    let event_id = r.event_id();
                    let fresh = !state.seen.contains(&event_id) && batch_ids.insert(event_id);
                    duplicates += usize::from(!fresh);
                    fresh
                })
                .collect();
            record_batch(id, &rows)?
        };
        let n = batch.num_rows();
        if n == 0 && flush == Flush::Routine && state.deferred_flushes < DEFERRED_EMPTY_COMMITS {
            state.deferred.extend(fresh);
            state.deferred_flushes += 1;
            return Ok(());
        }
        let mut positions = std::mem::take(&mut state.deferred);
        positions.extend(fresh);
        state.deferred_flushes = 0;
        let before = state.table.version();
        let table = self.lake.append(state.table.clone(), id, batch, &positions).await?;
        tracing::info!(table = id.name(), version = ?table.version(), rows = n, ?positions, "committed");
        let others_committed = table.version() != before.map(|v| v + 1);
        if table.version().is_some_and(|v| v % self.checkpoint_interval == 0)
            && let Err(e) = self.lake.checkpoint(&table, id).await
        {
            tracing::warn!(table = id.name(), error = %e, "checkpoint failed; readers replay the log instead");
        }
        state.table = table;
        state.positions.extend(positions);
        state.seen.extend(batch_ids);
        if others_committed {
            state.absorb(&self.lake, id, self.assigned.iter().chain(self.pending_to.keys()), before).await?;
        }
        self.metrics.duplicates.inc_by(duplicates as u64);
        self.metrics.rows.with_label_values(&[id.name()]).inc_by(n as u64);
        self.metrics.commits.with_label_values(&[id.name()]).inc();
        Ok(())
    }

    /// Partitions were assigned: re-read the tables, which another instance may have advanced.
    pub(crate) async fn assigned(&mut self, tps: Vec<TopicPartition>) -> Result<()> {
        self.assigned.extend(tps);
        self.refresh().await
    }

    /// Partitions were revoked: commit what is buffered, and forget them.
    pub(crate) async fn revoked(&mut self, tps: &[TopicPartition]) -> Result<()> {
        let flushed = self.flush(Flush::Everything).await;
        for tp in tps {
            self.assigned.remove(tp);
            self.pending_to.remove(tp);
        }
        // Whoever gets them next moves their positions; a stale one must never be committed.
        for state in self.tables.values_mut() {
            state.deferred.retain(|tp, _| !tps.contains(tp));
        }
        self.pending.retain(|r| !tps.contains(&r.record.source));
        self.pending_dead.retain(|d| !tps.contains(&d.record.source));
        if self.pending_to.is_empty() {
            self.buffered = 0;
            self.buffered_bytes = 0;
            self.oldest_pending = None;
        }
        flushed
    }

    /// Brings every table to its latest version and takes in what other writers committed:
    /// positions of the partitions held (or buffered), event ids of the newer commits.
    async fn refresh(&mut self) -> Result<()> {
        for (id, state) in self.tables.iter_mut() {
            let before = state.table.version();
            self.lake.catch_up(&mut state.table, *id).await?;
            state.absorb(&self.lake, *id, self.assigned.iter().chain(self.pending_to.keys()), before).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use gata_contract::{EventKind, topics::intake_topic};
    use gata_infra::workload::Workload;
    use gata_lakehouse::deltalake::{
        arrow::{array::AsArray, datatypes::Int64Type},
        datafusion::prelude::SessionContext,
    };

    use super::*;

    async fn writer(lake: &Lake) -> Writer {
        // Never reached: no record here is dead-lettered.
        let dlq = rdkafka::ClientConfig::new().set("bootstrap.servers", "127.0.0.1:9").create().expect("producer");
        let metrics = SinkMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let committed = Arc::new(Mutex::new(BTreeMap::new()));
        Writer::open(lake.clone(), Limits::default(), 100, dlq, committed, metrics).await.expect("writer")
    }

    async fn rows(lake: &Lake, id: TableId) -> i64 {
        let table = lake.open(id).await.expect("open");
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).expect("session");
        ctx.register_table("t", table.table_provider().await.expect("provider")).expect("register");
        let batches = ctx.sql("SELECT COUNT(*) FROM t").await.expect("plan").collect().await.expect("count");
        batches[0].column(0).as_primitive::<Int64Type>().value(0)
    }

    #[tokio::test]
    async fn a_writer_that_took_over_partitions_does_not_write_again_what_the_old_owner_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::new(&format!("file://{}", dir.path().display()), &BTreeMap::new()).expect("lake");
        let turns: Vec<Vec<u8>> = Workload::new(5, 10)
            .events(6, 0)
            .into_iter()
            .filter(|e| e.kind() == EventKind::ChatTurn)
            .map(|e| e.to_json())
            .collect();
        let topic = intake_topic(EventKind::ChatTurn);
        let polled = |partition, offset: usize, payload: &Vec<u8>| {
            let mut p = Polled::at(topic, partition, offset as i64, 1_700_000_000_000);
            p.record.payload = payload.clone();
            p
        };
        let (p, q) = (TopicPartition::new(topic, 0), TopicPartition::new(topic, 1));
        let (mut old, mut new) = (writer(&lake).await, writer(&lake).await);
        old.assigned(vec![p.clone()]).await.expect("old owner");
        new.assigned(vec![p.clone(), q.clone()]).await.expect("new owner");

        // The old owner, not yet aware that it lost `p`, commits turns 0..5 of it.
        for (offset, turn) in turns[..5].iter().enumerate() {
            old.handle(polled(0, offset, turn)).await.expect("old handles");
        }
        old.flush(Flush::Routine).await.expect("old commits");
        // The new owner commits a turn of `q`: its table handle moves past the old owner's commit.
        new.handle(polled(1, 0, &turns[5])).await.expect("new handles q");
        new.flush(Flush::Routine).await.expect("new commits q");
        // It then reads `p` from the start, and a copy of turn 2 published again after them.
        for (offset, turn) in turns[..5].iter().chain([&turns[2]]).enumerate() {
            new.handle(polled(0, offset, turn)).await.expect("new handles p");
        }
        new.flush(Flush::Routine).await.expect("new commits p");

        // Bronze keeps every record of the log once (the copy is a record of its own); silver
        // every event once.
        assert_eq!(rows(&lake, TableId::Events).await, 7);
        assert_eq!(rows(&lake, TableId::ChatTurns).await, 6);
        let table = lake.open(TableId::Events).await.expect("open");
        let positions = lake.positions(&table, TableId::Events, [p.clone(), q.clone()]).await.expect("positions");
        assert_eq!(positions, BTreeMap::from([(p, Offset(5)), (q, Offset(0))]));
    }
}
