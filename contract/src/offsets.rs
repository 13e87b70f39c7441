//! Kafka positions as the lake records them.
//!
//! Each table stores, per topic-partition, the last Kafka offset whose record it has taken into
//! account, as a Delta `txn` action with app id `kafka:<topic>:<partition>` and version = that
//! offset. The action is written in the same commit as the rows, so a table's data and its
//! position can never disagree: after any crash the sink resumes at `version + 1` and neither
//! loses nor repeats a record. The app id names the topic rather than the consumer group, so a
//! renamed group cannot re-ingest history.

use std::fmt;

/// A Kafka offset (position of a record within a partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub i64);

impl Offset {
    /// The offset after this one: where to resume.
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A topic and one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`/`partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self { topic: topic.into(), partition }
    }

    /// The Delta `txn` app id under which a table records its position in this partition.
    pub fn txn_app_id(&self) -> String {
        format!("kafka:{}:{}", self.topic, self.partition)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_are_distinct_per_partition() {
        let a = TopicPartition::new("t", 0).txn_app_id();
        let b = TopicPartition::new("t", 1).txn_app_id();
        assert_ne!(a, b);
        assert_eq!(a, "kafka:t:0");
        assert_eq!(Offset(41).next(), Offset(42));
    }
}
