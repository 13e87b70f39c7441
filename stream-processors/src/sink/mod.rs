//! The lake sink: intake topics → bronze `events` + silver tables, scores topic →
//! `quality_scores`, exactly once.
//!
//! Two halves joined by a bounded channel: the [`crate::poller`] thread owns the Kafka consumer
//! (a consumer-group member; scale out by starting more instances) and the [`writer`] task
//! owns the tables. Records are committed when `flush_max_records` records or
//! `flush_max_bytes` of payload are buffered or the oldest has waited `flush_interval`,
//! whichever comes first, and on shutdown. Every `checkpoint_interval` commits a table gets a
//! log checkpoint.

mod writer;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use gata_contract::{Limits, topics::Feed};
use gata_infra::{config::LakeConfig, kafka::KafkaClients};
use gata_lakehouse::{Lake, Offset, TableId, TopicPartition};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::poller::{self, Input, PositionSource, Subscription};
use crate::{ProcessorError, Result, metrics::SinkMetrics};
use writer::{Flush, Writer};

/// What the sink needs to know.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Flush policy and queue size.
    pub lake: LakeConfig,
    /// Event limits (the same as intake's).
    pub limits: Limits,
    /// Consumer group.
    pub group: String,
}

/// Runs the sink until `stop` is cancelled (then commits what it holds and leaves the group)
/// or a failure it cannot retry.
pub async fn run_sink(
    cfg: SinkConfig,
    kafka: KafkaClients,
    lake: Lake,
    registry: &Registry,
    stop: CancellationToken,
) -> Result<()> {
    let metrics = SinkMetrics::register(registry)?;
    let dlq = kafka.processor_producer()?;
    let committed = Arc::new(Mutex::new(BTreeMap::new()));
    let lag = metrics.lag.clone();
    let mut writer =
        Writer::open(lake.clone(), cfg.limits.clone(), cfg.lake.checkpoint_interval, dlq, committed.clone(), metrics)
            .await?;

    let (tx, mut rx) = poller::channel(cfg.lake.queue_records);
    let subscription = Subscription {
        name: "gata-sink-poller",
        config: kafka.consumer(&cfg.group),
        topics: Feed::ALL.into_iter().map(|f| f.topic().to_string()).collect(),
        positions: lake_positions(lake, tokio::runtime::Handle::current()),
        committed,
        lag,
        mac: kafka.record_mac().cloned(),
    };
    let poller = poller::spawn(subscription, tx, stop.clone())?;
    tracing::info!(group = %cfg.group, "lake sink started");

    let result = async {
        loop {
            let deadline = writer.flush_deadline(cfg.lake.flush_interval);
            tokio::select! {
                input = rx.recv() => match input {
                    None => break,
                    Some(Input::Records(batch)) => {
                        for polled in batch {
                            writer.handle(polled).await?;
                            let (records, bytes) = writer.pending();
                            if records >= cfg.lake.flush_max_records || bytes >= cfg.lake.flush_max_bytes {
                                writer.flush(Flush::Routine).await?;
                            }
                        }
                    }
                    Some(Input::Assigned(tps)) => writer.assigned(tps).await?,
                    Some(Input::Revoked(tps, ack)) => {
                        let flushed = writer.revoked(&tps).await;
                        let _ = ack.send(());
                        flushed?;
                    }
                },
                _ = sleep_until(deadline) => writer.flush(Flush::Routine).await?,
            }
        }
        writer.flush(Flush::Everything).await
    }
    .await;
    poller::stop_and_join(poller, rx, &stop, result, "lake sink").await
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Reads, for partitions being assigned, the offset to resume from: one past the lowest
/// position recorded by the tables fed by the partition's topic, or none (from the beginning)
/// when one of those tables has never recorded one.
fn lake_positions(lake: Lake, runtime: tokio::runtime::Handle) -> PositionSource {
    Arc::new(move |tps: &[TopicPartition]| {
        runtime.block_on(async {
            let mut next: BTreeMap<TopicPartition, Option<Offset>> = BTreeMap::new();
            for id in TableId::ALL {
                let table = lake.open(id).await?;
                let fed: Vec<TopicPartition> = tps.iter().filter(|tp| id.is_fed_by_topic(&tp.topic)).cloned().collect();
                let recorded = lake.positions(&table, id, fed.clone()).await?;
                for tp in fed {
                    let here = recorded.get(&tp).map(|o| o.next());
                    let entry = next.entry(tp).or_insert(here);
                    *entry = match (*entry, here) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        _ => None,
                    };
                }
            }
            Ok::<_, ProcessorError>(next)
        })
    })
}
