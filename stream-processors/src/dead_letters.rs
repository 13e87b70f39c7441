//! The dead-letter topic: every record the sink cannot decode or validate goes there with its
//! source coordinates and the reason, as headers, and its raw bytes as the value; the writer
//! also commits it to the `dead_letters` table (exactly once, like every table).
//!
//! A dead letter is produced (and acknowledged) before the commit that moves the table
//! positions past its record, so none is lost; after a crash between the two, the record is
//! read again and dead-lettered a second time (at-least-once, identified by source
//! topic/partition/offset).

use std::time::Duration;

use gata_contract::topics::{DEAD_LETTERS, DLQ_REASON, DLQ_SOURCE_OFFSET, DLQ_SOURCE_PARTITION, DLQ_SOURCE_TOPIC};
pub use gata_lakehouse::DeadLetter;
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

use crate::{ProcessorError, Result};

/// Sends dead letters and waits for the broker's acknowledgement.
pub async fn send(producer: &FutureProducer, letter: &DeadLetter) -> Result<()> {
    let partition = letter.record.source.partition.to_string();
    let offset = letter.record.offset.to_string();
    let headers = OwnedHeaders::new()
        .insert(Header { key: DLQ_SOURCE_TOPIC, value: Some(letter.record.source.topic.as_str()) })
        .insert(Header { key: DLQ_SOURCE_PARTITION, value: Some(partition.as_str()) })
        .insert(Header { key: DLQ_SOURCE_OFFSET, value: Some(offset.as_str()) })
        .insert(Header { key: DLQ_REASON, value: Some(letter.reason.as_str()) });
    let key = format!("{}/{}", letter.record.source, letter.record.offset);
    let record = FutureRecord::to(DEAD_LETTERS).key(&key).payload(&letter.record.payload).headers(headers);
    producer.send(record, Duration::from_secs(10)).await.map(|_| ()).map_err(|(err, _)| ProcessorError::DeadLetter {
        source_topic: letter.record.source.topic.clone(),
        partition: letter.record.source.partition,
        offset: letter.record.offset.0,
        reason: err.to_string(),
    })
}
