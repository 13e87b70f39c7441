//! The Kafka side of a processor: a dedicated thread polls a consumer-group member and hands
//! records to the processor's task in batches through a bounded channel (a full channel stops
//! polling, so lag stays in Kafka, not in memory). A batch holds what librdkafka has already
//! fetched, so one hand-over (and at most one wake-up of the processor) serves many records;
//! a quiet log is handed over record by record, as soon as each arrives.
//!
//! Rebalances are handled in the consumer's own callback, on this thread:
//! - on assignment, each partition is positioned where the processor's [`PositionSource`] says
//!   (the sink: after the offset the lake last recorded for it, read fresh from the Delta log;
//!   the scoring processor: the beginning, to rebuild its state), so Kafka's committed offsets
//!   are never trusted for correctness;
//! - on revocation, the callback waits until the processor has finished with what it holds for
//!   those partitions, so no instance writes for a partition it lost.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use gata_contract::LogRecord;
use gata_infra::{
    foreground::{Foreground, Rank},
    record_mac::RecordMac,
};
use gata_lakehouse::{Offset, TopicPartition};
use prometheus::IntGaugeVec;
use rdkafka::{
    ClientConfig, ClientContext, Offset as KafkaOffset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext},
    error::KafkaResult,
    message::{BorrowedMessage, Message},
    statistics::Statistics,
    types::RDKafkaRespErr,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{ProcessorError, Result};

/// A record as polled, with what its MAC says.
#[derive(Debug)]
pub(crate) struct Polled {
    pub record: LogRecord,
    /// Why the record is not the platform's own, for a record of a platform-only topic whose
    /// MAC does not check (with `kafka.record_secret` set).
    pub forged: Option<String>,
    /// Whether the partition held more records than this one when it was polled (by the
    /// watermark the client last learnt): its next records are already in the log. Known only
    /// where the subscription asks ([`Subscription::tells_behind`]), false elsewhere.
    pub behind: bool,
}

#[cfg(test)]
impl Polled {
    /// An empty genuine record of `topic`/`partition` at `offset`, received at `ms`.
    pub fn at(topic: &str, partition: i32, offset: i64, ms: i64) -> Polled {
        let received_at = chrono::DateTime::from_timestamp_millis(ms).expect("a test timestamp");
        let record = LogRecord {
            source: TopicPartition::new(topic, partition),
            offset: Offset(offset),
            received_at,
            payload: Vec::new(),
        };
        Polled { record, forged: None, behind: false }
    }
}

/// What the poller tells the processor, in log order.
#[derive(Debug)]
pub(crate) enum Input {
    /// Records in log order (per partition), at most [`MAX_BATCH`].
    Records(Vec<Polled>),
    /// Partitions now owned.
    Assigned(Vec<TopicPartition>),
    /// Partitions being taken away; reply once nothing of theirs is buffered.
    Revoked(Vec<TopicPartition>, oneshot::Sender<()>),
}

/// Where partitions being assigned resume: the next offset to consume for each, or none to
/// start from the beginning.
pub(crate) type PositionSource =
    Arc<dyn Fn(&[TopicPartition]) -> Result<BTreeMap<TopicPartition, Option<Offset>>> + Send + Sync>;

/// The last offset the processor has finished with per partition, for the poller to report to
/// Kafka (a hint for lag monitoring only) and to compute the lag gauge.
pub(crate) type CommittedPositions = Arc<Mutex<BTreeMap<TopicPartition, Offset>>>;

/// Most records handed over at once.
const MAX_BATCH: usize = 256;

/// A channel from a poller to its processor that holds about `records` records.
pub(crate) fn channel(records: usize) -> (mpsc::Sender<Input>, mpsc::Receiver<Input>) {
    mpsc::channel(records.div_ceil(MAX_BATCH).max(2))
}

struct PollerContext {
    tx: mpsc::Sender<Input>,
    /// Records polled but not yet handed over. The rebalance callback runs inside `poll`, so it
    /// hands these over before announcing a change of partitions: the processor must see a
    /// revoked partition's records before the revocation.
    pending: Mutex<Vec<Polled>>,
    positions: PositionSource,
    committed: CommittedPositions,
    lag: IntGaugeVec,
    mac: Option<RecordMac>,
    tells_behind: bool,
    /// Whether fetching is paused while the consumers step aside for intake: partitions
    /// assigned meanwhile are paused too.
    paused: AtomicBool,
}

impl PollerContext {
    /// The record `msg` as handed over, its MAC checked when its topic needs one, and whether
    /// its partition is behind when the subscription asks.
    fn polled(&self, consumer: &BaseConsumer<Self>, msg: &BorrowedMessage<'_>) -> Polled {
        let behind = self.tells_behind
            && consumer
                .cached_watermarks(msg.topic(), msg.partition())
                .is_some_and(|(_, high)| msg.offset() + 1 < high);
        Polled {
            record: gata_infra::kafka::log_record(msg),
            forged: gata_infra::record_mac::forged(self.mac.as_ref(), msg),
            behind,
        }
    }

    /// Hands the pending records over; false once the processor has gone.
    fn hand_over(&self) -> bool {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        batch.is_empty() || self.tx.blocking_send(Input::Records(batch)).is_ok()
    }

    /// Adds a record, handing the batch over once full; false once the processor has gone.
    fn push(&self, record: Polled) -> bool {
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.push(record);
            pending.len() >= MAX_BATCH
        };
        !full || self.hand_over()
    }

    fn has_pending(&self) -> bool {
        !self.pending.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// Hands the pending records over, then `input`; false once the processor has gone.
    fn send(&self, input: Input) -> bool {
        self.hand_over() && self.tx.blocking_send(input).is_ok()
    }
}

impl ClientContext for PollerContext {
    /// Sets, for every partition this member fetches, how many records the log has that the
    /// processor has not finished yet: the high watermark from librdkafka's statistics (learnt
    /// from fetch responses, so measuring costs the broker nothing) minus the next offset the
    /// processor needs. Partitions no longer fetched lose their gauge.
    fn stats(&self, statistics: Statistics) {
        let done = self.committed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (topic, t) in &statistics.topics {
            for (partition, p) in t.partitions.iter().filter(|(id, _)| **id >= 0) {
                let labels = [topic.as_str(), &partition.to_string()];
                if p.fetch_state == "none" || p.hi_offset < 0 {
                    let _ = self.lag.remove_label_values(&labels);
                    continue;
                }
                let next = done.get(&TopicPartition::new(topic, *partition)).map_or(p.lo_offset.max(0), |o| o.next().0);
                self.lag.with_label_values(&labels).set((p.hi_offset - next).max(0));
            }
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements().iter().map(|e| TopicPartition::new(e.topic(), e.partition())).collect()
}

impl PollerContext {
    /// Takes `tpl`, each partition positioned where the processor says, and tells the
    /// processor.
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let tps = partitions(tpl);
        match (self.positions)(&tps) {
            Ok(next) => {
                for (tp, off) in &next {
                    let at = off.map_or(KafkaOffset::Beginning, |o| KafkaOffset::Offset(o.0));
                    if let Err(e) = tpl.set_partition_offset(&tp.topic, tp.partition, at) {
                        tracing::error!(%tp, error = %e, "cannot position partition");
                    }
                }
                tracing::info!(?next, "partitions assigned; resuming from the processor's positions");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read resume positions; resuming from committed offsets, duplicates are filtered downstream")
            }
        }
        if let Err(e) = consumer.assign(tpl) {
            tracing::error!(error = %e, "assign failed");
        } else {
            // librdkafka keeps a partition's pause across its revocation and reassignment: set
            // it anew, or a partition paused before a rebalance stays paused for good.
            let paused = self.paused.load(Ordering::Relaxed);
            if let Err(e) = if paused { consumer.pause(tpl) } else { consumer.resume(tpl) } {
                tracing::warn!(error = %e, paused, "cannot pause or resume newly assigned partitions");
            }
        }
        let _ = self.send(Input::Assigned(tps));
    }
}

impl ConsumerContext for PollerContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let tps = partitions(tpl);
                tracing::info!(?tps, "partitions revoked");
                let (ack, done) = oneshot::channel();
                if self.send(Input::Revoked(tps, ack)) {
                    let _ = done.blocking_recv();
                }
                // Leave nothing paused behind (see `assign`).
                if self.paused.load(Ordering::Relaxed) {
                    let _ = consumer.resume(tpl);
                }
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }
}

/// What a poller subscribes to and how it positions and reports partitions.
pub(crate) struct Subscription {
    /// Thread name.
    pub name: &'static str,
    /// Consumer configuration (group included).
    pub config: ClientConfig,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Where assigned partitions resume.
    pub positions: PositionSource,
    /// How far the processor has got, per partition.
    pub committed: CommittedPositions,
    /// Lag gauge, by topic and partition.
    pub lag: IntGaugeVec,
    /// Checks the MACs of records on the platform's own topics, when a secret is configured.
    pub mac: Option<RecordMac>,
    /// Which partitions this member reads.
    pub membership: Membership,
    /// Whether each record says if its partition had more records waiting ([`Polled::behind`];
    /// a lookup per record, for the processors that order records across partitions).
    pub tells_behind: bool,
    /// Intake and the sink of the same process, to step aside for ([`Foreground`]), and with
    /// whom.
    pub foreground: Option<(Arc<Foreground>, Rank)>,
}

/// Which partitions of its topics a poller reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Membership {
    /// Those its consumer group assigns it: the members split the partitions.
    Group,
    /// Every partition, always, whoever else reads them (a processor whose state must see the
    /// whole log). Its group only receives progress reports.
    EveryPartition,
}

/// Positions that start every assigned partition from its beginning (processors that rebuild
/// their state from the log).
pub(crate) fn from_the_beginning() -> PositionSource {
    Arc::new(|tps: &[TopicPartition]| Ok(tps.iter().map(|tp| (tp.clone(), None)).collect()))
}

/// Starts the poller thread. It stops when `stop` is cancelled or the processor goes away, and
/// leaves the group cleanly (revoking, hence flushing, its partitions) on the way out.
pub(crate) fn spawn(
    sub: Subscription,
    tx: mpsc::Sender<Input>,
    stop: CancellationToken,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let Subscription { name, mut config, topics, positions, committed, lag, mac, membership, tells_behind, foreground } =
        sub;
    config.set("statistics.interval.ms", LAG_INTERVAL.as_millis().to_string());
    let consumer: BaseConsumer<PollerContext> = config
        .create_with_context(PollerContext {
            tx: tx.clone(),
            pending: Mutex::default(),
            positions,
            committed: committed.clone(),
            lag,
            mac,
            tells_behind,
            paused: AtomicBool::new(false),
        })
        .map_err(ProcessorError::kafka("create consumer"))?;
    if membership == Membership::Group {
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_refs).map_err(ProcessorError::kafka("subscribe"))?;
    }
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if membership == Membership::EveryPartition && !assign_every_partition(&consumer, &topics, &stop) {
                return Ok(());
            }
            let foreground = foreground.as_ref().map(|(f, rank)| (f.as_ref(), *rank));
            poll_loop(consumer, &topics, membership, tx, committed, foreground, stop)
        })
        .map_err(|e| ProcessorError::Poller(e.to_string()))
}

/// How long a metadata request for the topics' partitions may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Assigns every partition of `topics`, waiting until each topic has partitions (a topic is
/// created by the first intake or broker start); false if stopped first.
fn assign_every_partition(consumer: &BaseConsumer<PollerContext>, topics: &[String], stop: &CancellationToken) -> bool {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        loop {
            if stop.is_cancelled() {
                return false;
            }
            let found = consumer
                .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                .map(|m| m.topics().iter().filter(|t| t.name() == topic).map(|t| t.partitions().len()).sum::<usize>());
            match found {
                Ok(n) if n > 0 => {
                    for partition in 0..n {
                        tpl.add_partition(topic, i32::try_from(partition).unwrap_or(i32::MAX));
                    }
                    break;
                }
                Ok(_) => tracing::info!(%topic, "waiting for the topic's partitions"),
                Err(e) => tracing::warn!(%topic, error = %e, "cannot read the topic's partitions; retrying"),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    consumer.context().assign(consumer, &mut tpl);
    true
}

/// Stops and joins the poller thread once the processor's loop has ended with `result` (which
/// takes precedence over the poller's own outcome).
pub(crate) async fn stop_and_join(
    poller: std::thread::JoinHandle<Result<()>>,
    rx: mpsc::Receiver<Input>,
    stop: &CancellationToken,
    result: Result<()>,
    processor: &str,
) -> Result<()> {
    stop.cancel();
    drop(rx);
    let joined = tokio::task::spawn_blocking(move || poller.join()).await;
    tracing::info!("{processor} stopped");
    result?;
    match joined {
        Ok(Ok(r)) => r,
        Ok(Err(_)) | Err(_) => Err(ProcessorError::Poller("poller thread panicked".into())),
    }
}

fn poll_loop(
    consumer: BaseConsumer<PollerContext>,
    topics: &[String],
    membership: Membership,
    tx: mpsc::Sender<Input>,
    committed: CommittedPositions,
    foreground: Option<(&Foreground, Rank)>,
    stop: CancellationToken,
) -> Result<()> {
    let mut reported: BTreeMap<TopicPartition, Offset> = BTreeMap::new();
    let mut idle_since: Option<Instant> = None;
    let mut housekeeping = Instant::now();
    let reports_backlog = foreground.filter(|(_, rank)| *rank == Rank::Lake).map(|(f, _)| f);
    let mut polled: usize = 0;
    while !stop.is_cancelled() && !tx.is_closed() {
        let context = consumer.context();
        let paused = foreground.is_some_and(|(f, rank)| f.steps_aside(rank));
        if paused != context.paused.load(Ordering::Relaxed) && !pause_or_resume(&consumer, paused) {
            break;
        }
        // With records pending, only take what librdkafka already holds; paused, look again
        // soon whether to resume.
        let wait = match (context.has_pending(), paused) {
            (true, _) => Duration::ZERO,
            (false, true) => PAUSED_WAIT,
            (false, false) => IDLE_WAIT,
        };
        let handed = match consumer.poll(wait) {
            None => context.hand_over(),
            Some(Ok(msg)) => {
                polled += 1;
                if let Some(foreground) = reports_backlog.filter(|_| polled.is_multiple_of(MAX_BATCH))
                    && let Some((_, high)) = consumer.cached_watermarks(msg.topic(), msg.partition())
                {
                    foreground.lake_behind(high - msg.offset() - 1);
                }
                context.push(context.polled(&consumer, &msg))
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "kafka poll error");
                std::thread::sleep(Duration::from_millis(200));
                context.hand_over()
            }
        };
        if !handed {
            break;
        }
        // Both ask librdkafka's main thread (a queue round trip each); once per record they cost
        // more than the record.
        if housekeeping.elapsed() >= HOUSEKEEPING_INTERVAL {
            report_committed(&consumer, &committed, &mut reported);
            if membership == Membership::Group {
                rejoin_if_idle(&consumer, topics, &mut idle_since);
            }
            housekeeping = Instant::now();
        }
    }
    report_committed(&consumer, &committed, &mut reported);
    consumer.unsubscribe();
    // Serve the revocation callback so buffered data is flushed before leaving the group.
    let _ = consumer.poll(Duration::from_millis(100));
    Ok(())
}

/// Longest a poll waits for a record (a record ends the wait at once). It bounds how long the
/// thread takes to notice a stop; each wait costs a wake-up of this thread and of librdkafka's.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// Longest a poll waits while fetching is paused: how soon the poller resumes once intake is
/// quiet.
const PAUSED_WAIT: Duration = Duration::from_millis(20);

/// Stops (or resumes) fetching every assigned partition, after handing over what was polled;
/// false once the processor has gone. librdkafka drops what it had fetched ahead for a paused
/// partition and fetches again from the next record not yet polled, so nothing is skipped.
fn pause_or_resume(consumer: &BaseConsumer<PollerContext>, pause: bool) -> bool {
    let context = consumer.context();
    if !context.hand_over() {
        return false;
    }
    // Set first: a partition the rebalance callback assigns from now on is paused there.
    context.paused.store(pause, Ordering::Relaxed);
    let outcome =
        consumer.assignment().and_then(|tpl| if pause { consumer.pause(&tpl) } else { consumer.resume(&tpl) });
    if let Err(e) = outcome {
        tracing::warn!(error = %e, pause, "cannot pause or resume fetching");
    }
    true
}

/// How often the poll loop reports progress and checks that it still holds partitions.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// How long a member may hold no partition before it rejoins the group.
const REJOIN_AFTER: Duration = Duration::from_secs(20);

/// Rejoins the group after [`REJOIN_AFTER`] without any partition. A coordinator can hand a
/// generation's assignment to a member that has just died (tansu 0.6 does when a SIGKILLed
/// member was the group leader), leaving the live members empty-handed until they rejoin; by
/// then the dead member's session has expired and the partitions are shared among the living.
fn rejoin_if_idle(consumer: &BaseConsumer<PollerContext>, topics: &[String], idle_since: &mut Option<Instant>) {
    let holds_partitions = consumer.assignment().is_ok_and(|a| a.count() > 0);
    if holds_partitions {
        *idle_since = None;
        return;
    }
    let since = *idle_since.get_or_insert_with(Instant::now);
    if since.elapsed() >= REJOIN_AFTER {
        tracing::warn!(after = ?REJOIN_AFTER, "no partitions assigned; rejoining the consumer group");
        consumer.unsubscribe();
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(e) = consumer.subscribe(&refs) {
            tracing::error!(error = %e, "re-subscribing failed");
        }
        *idle_since = None;
    }
}

/// How often librdkafka reports statistics, hence how fresh the lag gauges are. The lag is
/// never measured with `ListOffsets` requests: against tansu 0.6, watermark requests beside a
/// running fetch made the broker stop answering the consumer (a stall with records waiting).
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Tells Kafka how far the processor has got, so lag tools see progress.
fn report_committed(
    consumer: &BaseConsumer<PollerContext>,
    committed: &CommittedPositions,
    reported: &mut BTreeMap<TopicPartition, Offset>,
) {
    let now = committed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut tpl = TopicPartitionList::new();
    for (tp, off) in &now {
        if reported.get(tp) != Some(off) {
            let _ = tpl.add_partition_offset(&tp.topic, tp.partition, KafkaOffset::Offset(off.next().0));
        }
    }
    if tpl.count() > 0 {
        let result: KafkaResult<()> = consumer.commit(&tpl, CommitMode::Async);
        if let Err(e) = result {
            tracing::debug!(error = %e, "offset hint commit failed");
        }
        *reported = now;
    }
}
