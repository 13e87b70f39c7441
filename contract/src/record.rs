//! One record of the log, as every reader sees it.

use chrono::{DateTime, Utc};

use crate::offsets::{Offset, TopicPartition};

/// A record of the log, wherever it is read from (a consumer, the bronze table, a replay):
/// where it sits, when the broker received it, and its value as it was sent. What a reader
/// learns about it (the decoded event, why it is dead-lettered, whether its MAC checks) goes
/// beside it, never into a second record type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The topic-partition it sits in.
    pub source: TopicPartition,
    /// Its offset there.
    pub offset: Offset,
    /// When the broker received it (the record's timestamp).
    pub received_at: DateTime<Utc>,
    /// The value, as the producer sent it.
    pub payload: Vec<u8>,
}

impl LogRecord {
    /// The record's order in a replay of the whole log: receipt time, then its place.
    pub fn replay_order(&self) -> (DateTime<Utc>, &TopicPartition, Offset) {
        (self.received_at, &self.source, self.offset)
    }
}
