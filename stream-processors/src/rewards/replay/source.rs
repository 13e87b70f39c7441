//! Where a replay reads the log from: the Kafka intake topics read to their high watermarks
//! (sorted in memory), or records already in memory; the bronze table's bounded path is
//! `gata_lakehouse::Lake::receipt_ordered_log`.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::StreamExt;
use gata_contract::{EventKind, LogRecord, topics::intake_topic};
use gata_infra::{kafka::KafkaClients, record_mac::RecordMac};
use gata_lakehouse::log::LogStream;
use indicatif::ProgressBar;
use rdkafka::{
    Offset as KafkaOffset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Message,
};

use crate::Result;

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
