//! Keeps a [`Market`] current: a thread reads every partition of the marketplace topic from the
//! start and applies each event, so the state is rebuilt from the log at every start; writers
//! wait until their own event has been applied (read-your-writes).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use gata_contract::{
    topics::MARKETPLACE,
    {Limits, MarketEvent},
};
use gata_infra::kafka::KafkaClients;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{Market, MarketError, Result};

/// How far the follower has read: the next offset of each partition.
pub type Positions = HashMap<i32, i64>;

/// The shared state and the follower's progress.
#[derive(Debug, Clone)]
pub struct Followed {
    /// The marketplace.
    pub market: Arc<RwLock<Market>>,
    /// Next offset per partition, updated after each applied record.
    pub positions: watch::Receiver<Positions>,
    /// Where the log ended when the follower started: reads wait until it got there.
    pub start_ends: Positions,
}

impl Followed {
    /// Waits until the follower has read past `offset` of `partition`.
    pub async fn wait_for(&self, partition: i32, offset: i64, within: Duration) -> Result<()> {
        let mut rx = self.positions.clone();
        let reached = rx.wait_for(|p| p.get(&partition).is_some_and(|next| *next > offset));
        match tokio::time::timeout(within, reached).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(MarketError::Unavailable(format!("the marketplace log was not read to {partition}@{offset}"))),
        }
    }

    /// Waits until the follower has read the log as it stood at start (the state is rebuilt).
    pub async fn caught_up(&self, within: Duration) -> Result<()> {
        for (partition, end) in &self.start_ends {
            if *end > 0 {
                self.wait_for(*partition, end - 1, within).await?;
            }
        }
        Ok(())
    }
}

/// Starts following the marketplace topic; the thread stops when `stop` is cancelled.
pub fn follow(kafka: &KafkaClients, limits: Limits, stop: CancellationToken) -> Result<Followed> {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let consumer: BaseConsumer = kafka.consumer("gata-marketplace").create().map_err(MarketError::kafka)?;
    let metadata = consumer.fetch_metadata(Some(MARKETPLACE), TIMEOUT).map_err(MarketError::kafka)?;
    let mut assignment = TopicPartitionList::new();
    let mut start_ends = Positions::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (_, high) = consumer.fetch_watermarks(MARKETPLACE, p.id(), TIMEOUT).map_err(MarketError::kafka)?;
        assignment.add_partition_offset(MARKETPLACE, p.id(), Offset::Beginning).map_err(MarketError::kafka)?;
        start_ends.insert(p.id(), high);
    }
    consumer.assign(&assignment).map_err(MarketError::kafka)?;
    let market = Arc::new(RwLock::new(Market::default()));
    let (tx, positions) = watch::channel(Positions::new());
    let state = market.clone();
    let limits = limits.for_replay();
    let mac = kafka.record_mac().cloned();
    std::thread::Builder::new()
        .name("marketplace".into())
        .spawn(move || {
            while !stop.is_cancelled() {
                let Some(polled) = consumer.poll(Duration::from_millis(500)) else { continue };
                let m = match polled {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "marketplace log read failed; retrying");
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                };
                let received =
                    m.timestamp().to_millis().and_then(DateTime::from_timestamp_millis).unwrap_or_else(Utc::now);
                let forged = gata_infra::record_mac::forged(mac.as_ref(), &m);
                match MarketEvent::parse(m.payload().unwrap_or_default(), &limits) {
                    _ if forged.is_some() => tracing::warn!(
                        offset = m.offset(),
                        reason = ?forged,
                        "forged marketplace record skipped (the sink dead-letters it)"
                    ),
                    Ok(event) => {
                        let applied = state.write().map(|mut s| s.apply(&event, received));
                        if let Ok(Err(refusal)) = applied {
                            tracing::info!(event_id = %event.event_id, %refusal, "marketplace event refused");
                        }
                    }
                    Err(v) => tracing::warn!(
                        offset = m.offset(),
                        violations = ?v,
                        "undecodable marketplace record skipped (the sink dead-letters it)"
                    ),
                }
                tx.send_modify(|p| {
                    p.insert(m.partition(), m.offset() + 1);
                });
            }
        })
        .map_err(MarketError::Follower)?;
    Ok(Followed { market, positions, start_ends })
}
