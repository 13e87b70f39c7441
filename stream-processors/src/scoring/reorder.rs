//! Scoring in the order the platform received submissions, not the order Kafka hands them over.
//!
//! Partitions are fetched independently, so a submission received a moment after another can be
//! polled before it. For originality that matters: whichever is scored first is the original,
//! the other the copy. Every record is therefore held for a short window after it is polled and
//! released in receipt order (the record timestamp intake stamped, then topic, partition,
//! offset): anything received earlier that arrives within the window overtakes it. This is the
//! bounded-out-of-orderness rule of stream processors, with the bound in wall-clock time.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use gata_lakehouse::{Offset, TopicPartition};

use crate::poller::Polled;

/// Records held, smallest receipt key first.
#[derive(Debug)]
pub(crate) struct Reorder {
    window: Duration,
    heap: BinaryHeap<Reverse<Held>>,
}

#[derive(Debug)]
struct Held {
    key: (DateTime<Utc>, TopicPartition, Offset),
    polled_at: Instant,
    record: Polled,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl Reorder {
    /// A buffer holding each record for `window` (zero: no reordering).
    pub(crate) fn new(window: Duration) -> Self {
        Self { window, heap: BinaryHeap::new() }
    }

    /// Holds `record`, polled at `now`.
    pub(crate) fn push(&mut self, record: Polled, now: Instant) {
        let (at, source, offset) = record.record.replay_order();
        let key = (at, source.clone(), offset);
        self.heap.push(Reverse(Held { key, polled_at: now, record }));
    }

    /// The records due at `now`, in receipt order: the earliest-received record leaves once it
    /// has been held for the window, and everything behind it waits for it.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Polled> {
        let mut out = Vec::new();
        while self.heap.peek().is_some_and(|Reverse(h)| now.duration_since(h.polled_at) >= self.window) {
            if let Some(Reverse(held)) = self.heap.pop() {
                out.push(held.record);
            }
        }
        out
    }

    /// Drops what is held of `tps` (their next owner reads them again).
    pub(crate) fn revoked(&mut self, tps: &[TopicPartition]) {
        self.heap.retain(|Reverse(h)| !tps.contains(&h.record.record.source));
    }

    /// Records held.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(partition: i32, offset: i64, ts: i64) -> Polled {
        Polled::at("t", partition, offset, ts)
    }

    #[test]
    fn an_earlier_submission_polled_later_overtakes_within_the_window() {
        let t0 = Instant::now();
        let window = Duration::from_millis(500);
        let mut buf = Reorder::new(window);
        buf.push(rec(1, 0, 2_000), t0);
        assert!(buf.due(t0 + Duration::from_millis(100)).is_empty());
        // Received a second earlier on another partition, polled 200 ms later.
        buf.push(rec(0, 7, 1_000), t0 + Duration::from_millis(200));
        assert!(buf.due(t0 + window).is_empty(), "the earlier one is not due yet and goes first");
        let out = buf.due(t0 + Duration::from_millis(700));
        assert_eq!(
            out.iter().map(|p| (p.record.source.partition, p.record.offset.0)).collect::<Vec<_>>(),
            [(0, 7), (1, 0)]
        );
        assert_eq!(buf.len(), 0);

        buf.push(rec(2, 1, 5), t0);
        buf.revoked(&[TopicPartition::new("t", 2)]);
        assert!(buf.due(t0 + Duration::from_secs(9)).is_empty());
        let mut immediate = Reorder::new(Duration::ZERO);
        immediate.push(rec(0, 0, 1), t0);
        assert_eq!(immediate.due(t0).len(), 1);
    }
}
