//! The Kafka side of a processor: a dedicated thread polls a consumer-group member and hands
//! records to the processor's task through a bounded channel (a full channel stops polling, so
//! lag stays in Kafka, not in memory).
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
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use gata_lakehouse::{Offset, TopicPartition};
use prometheus::IntGaugeVec;
use rdkafka::{
    ClientConfig, ClientContext, Message, Offset as KafkaOffset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext},
    error::KafkaResult,
    statistics::Statistics,
    types::RDKafkaRespErr,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{ProcessorError, Result};

/// A record as polled.
#[derive(Debug)]
pub(crate) struct Polled {
    pub source: TopicPartition,
    pub offset: Offset,
    pub timestamp_ms: Option<i64>,
    pub payload: Vec<u8>,
}

/// What the poller tells the processor, in log order.
#[derive(Debug)]
pub(crate) enum Input {
    Record(Polled),
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

struct PollerContext {
    tx: mpsc::Sender<Input>,
    positions: PositionSource,
    committed: CommittedPositions,
    lag: IntGaugeVec,
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

impl ConsumerContext for PollerContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
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
                }
                let _ = self.tx.blocking_send(Input::Assigned(tps));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let tps = partitions(tpl);
                tracing::info!(?tps, "partitions revoked");
                let (ack, done) = oneshot::channel();
                if self.tx.blocking_send(Input::Revoked(tps, ack)).is_ok() {
                    let _ = done.blocking_recv();
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
}

/// Starts the poller thread. It stops when `stop` is cancelled or the processor goes away, and
/// leaves the group cleanly (revoking, hence flushing, its partitions) on the way out.
pub(crate) fn spawn(
    sub: Subscription,
    tx: mpsc::Sender<Input>,
    stop: CancellationToken,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let Subscription { name, mut config, topics, positions, committed, lag } = sub;
    config.set("statistics.interval.ms", LAG_INTERVAL.as_millis().to_string());
    let consumer: BaseConsumer<PollerContext> = config
        .create_with_context(PollerContext { tx: tx.clone(), positions, committed: committed.clone(), lag })
        .map_err(ProcessorError::kafka("create consumer"))?;
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs).map_err(ProcessorError::kafka("subscribe"))?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || poll_loop(consumer, &topics, tx, committed, stop))
        .map_err(|e| ProcessorError::Poller(e.to_string()))
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
    tx: mpsc::Sender<Input>,
    committed: CommittedPositions,
    stop: CancellationToken,
) -> Result<()> {
    let mut reported: BTreeMap<TopicPartition, Offset> = BTreeMap::new();
    let mut idle_since: Option<Instant> = None;
    while !stop.is_cancelled() && !tx.is_closed() {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(msg)) => {
                let polled = Polled {
                    source: TopicPartition::new(msg.topic(), msg.partition()),
                    offset: Offset(msg.offset()),
                    timestamp_ms: msg.timestamp().to_millis(),
                    payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                };
                if tx.blocking_send(Input::Record(polled)).is_err() {
                    break;
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "kafka poll error");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        report_committed(&consumer, &committed, &mut reported);
        rejoin_if_idle(&consumer, topics, &mut idle_since);
    }
    report_committed(&consumer, &committed, &mut reported);
    consumer.unsubscribe();
    // Serve the revocation callback so buffered data is flushed before leaving the group.
    let _ = consumer.poll(Duration::from_millis(100));
    Ok(())
}

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
const LAG_INTERVAL: Duration = Duration::from_secs(2);

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
