//! The Kafka side of the sink: a dedicated thread polls a consumer-group member and hands
//! records to the writer through a bounded channel (a full channel stops polling, so lag stays
//! in Kafka, not in memory).
//!
//! Rebalances are handled in the consumer's own callback, on this thread:
//! - on assignment, each partition is positioned at the offset after the one the lake last
//!   recorded for it (the minimum over the tables fed by its topic), read fresh from the Delta
//!   log, so Kafka's committed offsets are never trusted for correctness;
//! - on revocation, the callback waits until the writer has committed (or dropped) what it
//!   buffered for those partitions, so no instance commits data for a partition it lost.

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
    types::RDKafkaRespErr,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{Result, SinkError};

/// A record as polled.
#[derive(Debug)]
pub(crate) struct Polled {
    pub source: TopicPartition,
    pub offset: Offset,
    pub timestamp_ms: Option<i64>,
    pub payload: Vec<u8>,
}

/// What the poller tells the writer, in log order.
#[derive(Debug)]
pub(crate) enum Input {
    Record(Polled),
    /// Partitions now owned; the writer refreshes its view of the tables.
    Assigned(Vec<TopicPartition>),
    /// Partitions being taken away; reply once nothing of theirs is buffered.
    Revoked(Vec<TopicPartition>, oneshot::Sender<()>),
}

/// Reads the lake's positions for partitions being assigned: the next offset to consume for
/// each, or none to start from the beginning.
pub(crate) type PositionSource =
    Arc<dyn Fn(&[TopicPartition]) -> Result<BTreeMap<TopicPartition, Option<Offset>>> + Send + Sync>;

/// Offsets the writer has committed to the lake, for the poller to report to Kafka (a hint for
/// lag monitoring only).
pub(crate) type CommittedPositions = Arc<Mutex<BTreeMap<TopicPartition, Offset>>>;

struct SinkContext {
    tx: mpsc::Sender<Input>,
    positions: PositionSource,
}

impl ClientContext for SinkContext {}

fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements().iter().map(|e| TopicPartition::new(e.topic(), e.partition())).collect()
}

impl ConsumerContext for SinkContext {
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
                        tracing::info!(?next, "partitions assigned; resuming from the lake's positions");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read lake positions; resuming from committed offsets, duplicates are filtered by the writer")
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

/// Starts the poller thread. It stops when `stop` is cancelled or the writer goes away, and
/// leaves the group cleanly (revoking, hence flushing, its partitions) on the way out.
pub(crate) fn spawn(
    config: ClientConfig,
    topics: Vec<String>,
    tx: mpsc::Sender<Input>,
    positions: PositionSource,
    committed: CommittedPositions,
    lag: IntGaugeVec,
    stop: CancellationToken,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let consumer: BaseConsumer<SinkContext> = config
        .create_with_context(SinkContext { tx: tx.clone(), positions })
        .map_err(SinkError::kafka("create consumer"))?;
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs).map_err(SinkError::kafka("subscribe"))?;
    std::thread::Builder::new()
        .name("gata-sink-poller".into())
        .spawn(move || poll_loop(consumer, &topics, tx, committed, lag, stop))
        .map_err(|e| SinkError::Poller(e.to_string()))
}

fn poll_loop(
    consumer: BaseConsumer<SinkContext>,
    topics: &[String],
    tx: mpsc::Sender<Input>,
    committed: CommittedPositions,
    lag: IntGaugeVec,
    stop: CancellationToken,
) -> Result<()> {
    let mut reported: BTreeMap<TopicPartition, Offset> = BTreeMap::new();
    let mut lag_measured = Instant::now();
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
        if lag_measured.elapsed() >= LAG_INTERVAL {
            measure_lag(&consumer, &committed, &lag);
            lag_measured = Instant::now();
        }
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
fn rejoin_if_idle(consumer: &BaseConsumer<SinkContext>, topics: &[String], idle_since: &mut Option<Instant>) {
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

/// How often the poller measures lag.
const LAG_INTERVAL: Duration = Duration::from_secs(2);

/// Sets, for every assigned partition, how many records the log has that the lake has not
/// committed yet (high watermark minus the next offset the lake needs).
fn measure_lag(consumer: &BaseConsumer<SinkContext>, committed: &CommittedPositions, lag: &IntGaugeVec) {
    let Ok(assigned) = consumer.assignment() else { return };
    let lake = committed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for e in assigned.elements() {
        let Ok((low, high)) = consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1)) else {
            continue;
        };
        let next = lake.get(&TopicPartition::new(e.topic(), e.partition())).map_or(low, |o| o.next().0);
        lag.with_label_values(&[e.topic(), &e.partition().to_string()]).set((high - next).max(0));
    }
}

/// Tells Kafka how far the lake has got, so lag tools see progress.
fn report_committed(
    consumer: &BaseConsumer<SinkContext>,
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
