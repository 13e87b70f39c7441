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

use gata_contract::topics::Feed;
use gata_infra::config::LakeConfig;
use gata_lakehouse::{Lake, Offset, TableId, TopicPartition};

use crate::poller::{Membership, Polled, PositionSource, Subscription};
use crate::skeleton::{self, Handler};
use crate::{Context, ProcessorError, Result, metrics::SinkMetrics};
use writer::{Flush, Writer};

/// Runs the sink, flushing as `cfg` (`[lake]`) says, until `ctx.stop` is cancelled (then commits
/// what it holds and leaves the group)
/// or a failure it cannot retry.
pub async fn run_sink(ctx: Context, cfg: LakeConfig, lake: Lake) -> Result<()> {
    let Context { group, kafka, limits, registry, stop, foreground } = ctx;
    let metrics = SinkMetrics::register(&registry)?;
    let dlq = kafka.processor_producer()?;
    let committed = Arc::new(Mutex::new(BTreeMap::new()));
    let lag = metrics.lag.clone();
    let writer = Writer::open(lake.clone(), limits, cfg.checkpoint_interval, dlq, committed.clone(), metrics).await?;

    let subscription = Subscription {
        name: "gata-sink-poller",
        config: kafka.consumer(&group),
        topics: Feed::ALL.into_iter().map(|f| f.topic().to_string()).collect(),
        positions: lake_positions(lake, tokio::runtime::Handle::current()),
        committed,
        lag,
        mac: kafka.record_mac().cloned(),
        membership: Membership::Group,
        tells_behind: false,
        foreground: foreground.map(|f| (f, gata_infra::foreground::Rank::Lake)),
    };
    tracing::info!(%group, "lake sink joining its group");
    let queue = cfg.queue_records;
    skeleton::run("lake sink", subscription, queue, stop, Sink { writer, cfg }).await
}

/// The sink as its skeleton runs it: the writer, flushed as `[lake]` says.
struct Sink {
    writer: Writer,
    cfg: LakeConfig,
}

impl Handler for Sink {
    async fn records(&mut self, batch: Vec<Polled>) -> Result<()> {
        for polled in batch {
            self.writer.handle(polled).await?;
            let (records, bytes) = self.writer.pending();
            if records >= self.cfg.flush_max_records || bytes >= self.cfg.flush_max_bytes {
                self.writer.flush(Flush::Routine).await?;
            }
        }
        Ok(())
    }

    async fn assigned(&mut self, tps: Vec<TopicPartition>) -> Result<()> {
        self.writer.assigned(tps).await
    }

    async fn revoked(&mut self, tps: &[TopicPartition]) -> Result<()> {
        self.writer.revoked(tps).await
    }

    fn wake_at(&self) -> Option<tokio::time::Instant> {
        self.writer.flush_deadline(self.cfg.flush_interval).map(tokio::time::Instant::from_std)
    }

    async fn tick(&mut self) -> Result<()> {
        self.writer.flush(Flush::Routine).await
    }

    async fn finish(&mut self) -> Result<()> {
        self.writer.flush(Flush::Everything).await
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
