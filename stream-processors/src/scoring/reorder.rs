//! Scoring in the order the platform received submissions, not the order Kafka hands them over.
//!
//! Partitions are fetched independently, so a submission received a moment after another can be
//! polled before it. For originality that matters: whichever is scored first is the original,
//! the other the copy. Every record is therefore held for a short window after it is polled and
//! released in receipt order (the record timestamp intake stamped, then topic, partition,
//! offset): anything received earlier that arrives within the window overtakes it. This is the
//! bounded-out-of-orderness rule of stream processors, with the bound in wall-clock time.
//!
//! A window cannot order a consumer that is behind: catching up, it gets each partition's
//! records in bursts of seconds of receipt time, one partition after another. So a partition
//! whose last polled record had more records behind it in the log (by the watermark the client
//! last learnt) holds back every record received after that one, until its next record comes:
//! partitions that are behind are merged by receipt key, as history is ([`super::catch_up`]),
//! whatever the fetch order. A partition that sends nothing for [`BEHIND_STALL`] no longer holds
//! the others back. The processor measures that on its clock, which stands still while it steps
//! aside ([`gata_infra::foreground::Clock`]): a paused partition sends nothing, yet is not silent.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use gata_lakehouse::{Offset, TopicPartition};

use crate::poller::Polled;

/// How long a partition that is behind may send nothing before it stops holding others back.
pub(crate) const BEHIND_STALL: Duration = Duration::from_secs(5);

/// A record's receipt key: intake's stamp, then topic, partition and offset.
type Key = (DateTime<Utc>, TopicPartition, Offset);

/// Records held, smallest receipt key first.
#[derive(Debug)]
pub(crate) struct Reorder {
    window: Duration,
    heap: BinaryHeap<Reverse<Held>>,
    /// Partitions whose last polled record had more behind it: that record's key, and when it
    /// was polled.
    behind: HashMap<TopicPartition, (Key, Instant)>,
}

#[derive(Debug)]
struct Held {
    key: Key,
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
        Self { window, heap: BinaryHeap::new(), behind: HashMap::new() }
    }

    /// Holds `record`, polled at `now`.
    pub(crate) fn push(&mut self, record: Polled, now: Instant) {
        let (at, source, offset) = record.record.replay_order();
        let key = (at, source.clone(), offset);
        if record.behind {
            self.behind.insert(source.clone(), (key.clone(), now));
        } else {
            self.behind.remove(source);
        }
        self.heap.push(Reverse(Held { key, polled_at: now, record }));
    }

    /// The records due at `now`, in receipt order: the earliest-received record leaves once it
    /// has been held for the window and no partition that is behind may still send an earlier
    /// one; everything after it waits for it.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Polled> {
        self.behind.retain(|_, (_, polled)| now.duration_since(*polled) < BEHIND_STALL);
        let mut out = Vec::new();
        while let Some(Reverse(head)) = self.heap.peek() {
            let held_for_the_window = now.duration_since(head.polled_at) >= self.window;
            if !held_for_the_window || self.behind.iter().any(|(tp, (last, _))| *tp != head.key.1 && *last < head.key) {
                break;
            }
            if let Some(Reverse(held)) = self.heap.pop() {
                out.push(held.record);
            }
        }
        out
    }

    /// Drops what is held of `tps` (their next owner reads them again).
    pub(crate) fn revoked(&mut self, tps: &[TopicPartition]) {
        self.heap.retain(|Reverse(h)| !tps.contains(&h.record.record.source));
        self.behind.retain(|tp, _| !tps.contains(tp));
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

    #[test]
    fn a_partition_that_is_behind_holds_back_what_was_received_after_its_last_record() {
        let t0 = Instant::now();
        let window = Duration::from_millis(500);
        let mut buf = Reorder::new(window);
        let behind = |partition, offset, ts| Polled { behind: true, ..rec(partition, offset, ts) };
        // Catching up: partition 0 arrives up to second 1 with more waiting, partition 1 up to
        // second 5 all at once.
        buf.push(behind(0, 0, 1_000), t0);
        for (offset, ts) in [(0, 2_000), (1, 5_000)] {
            buf.push(rec(1, offset, ts), t0);
        }
        let out = buf.due(t0 + Duration::from_secs(1));
        assert_eq!(out.iter().map(|p| p.record.received_at.timestamp_millis()).collect::<Vec<_>>(), [1_000]);
        // Partition 0's next records come two seconds later, and are merged in.
        buf.push(behind(0, 1, 3_000), t0 + Duration::from_secs(2));
        buf.push(rec(0, 2, 4_000), t0 + Duration::from_secs(2));
        let out = buf.due(t0 + Duration::from_secs(3));
        let order: Vec<i64> = out.iter().map(|p| p.record.received_at.timestamp_millis()).collect();
        assert_eq!(order, [2_000, 3_000, 4_000, 5_000]);
        // A partition that is behind but sends nothing stops holding the others after a while.
        buf.push(behind(0, 3, 6_000), t0);
        buf.push(rec(1, 2, 7_000), t0);
        assert_eq!(buf.due(t0 + Duration::from_secs(1)).len(), 1, "partition 0's own record leaves");
        assert!(buf.due(t0 + BEHIND_STALL - Duration::from_millis(1)).is_empty());
        assert_eq!(buf.due(t0 + BEHIND_STALL).len(), 1);
        buf.push(behind(2, 0, 1), t0);
        buf.revoked(&[TopicPartition::new("t", 2)]);
        assert!(buf.behind.is_empty());
    }
}
