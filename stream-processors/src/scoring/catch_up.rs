//! Replaying history before scoring anything new.
//!
//! After a (re)start the processor reads its partitions from the beginning, and Kafka
//! interleaves partitions as it likes: a submission sent a second ago on one partition can
//! arrive before yesterday's on another. Scored in that order, a copy would be judged before
//! its original had been replayed. So each newly assigned partition gets a target — the last
//! offset the lake's bronze table holds for it, history for certain — and while any partition
//! has not reached its target, records beyond their own partition's target are held back. Once
//! every target is reached, the held records are released in timestamp order and everything
//! flows straight through.
//!
//! A target that cannot be reached (a log truncated below it) would hold records forever, so
//! when no history has arrived for [`GIVE_UP_AFTER`] the gate opens anyway, with a warning.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use gata_lakehouse::{Offset, TopicPartition};

use crate::poller::Polled;

/// How long the gate waits for history before it opens anyway.
pub(crate) const GIVE_UP_AFTER: Duration = Duration::from_secs(15);

/// The replay gate.
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    targets: BTreeMap<TopicPartition, Offset>,
    held: Vec<Polled>,
    last_history: Option<Instant>,
}

impl CatchUp {
    /// Partitions were assigned; `targets` holds the last offset of history for those that
    /// have one.
    pub(crate) fn assigned(&mut self, targets: BTreeMap<TopicPartition, Offset>, now: Instant) {
        if !targets.is_empty() {
            self.last_history = Some(now);
        }
        self.targets.extend(targets);
    }

    /// Partitions were revoked: forget their targets and what was held of them.
    pub(crate) fn revoked(&mut self, tps: &[TopicPartition]) -> Vec<Polled> {
        self.targets.retain(|tp, _| !tps.contains(tp));
        self.held.retain(|p| !tps.contains(&p.record.source));
        self.open_if_done()
    }

    /// Takes one record; returns the records to score now, in order.
    pub(crate) fn admit(&mut self, polled: Polled, now: Instant) -> Vec<Polled> {
        if self.targets.is_empty() {
            return vec![polled];
        }
        match self.targets.get(&polled.record.source).copied() {
            Some(target) if polled.record.offset <= target => {
                self.last_history = Some(now);
                if polled.record.offset == target {
                    self.targets.remove(&polled.record.source);
                }
                let mut out = vec![polled];
                out.extend(self.open_if_done());
                out
            }
            Some(_) => {
                // Past a target it never met (the record at the target is gone).
                self.targets.remove(&polled.record.source);
                self.held.push(polled);
                self.open_if_done()
            }
            None => {
                self.held.push(polled);
                Vec::new()
            }
        }
    }

    /// Opens the gate when history has stopped arriving for [`GIVE_UP_AFTER`].
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Polled> {
        let stalled = self.last_history.is_some_and(|t| now.duration_since(t) >= GIVE_UP_AFTER);
        if self.targets.is_empty() || !stalled {
            return Vec::new();
        }
        tracing::warn!(
            targets = ?self.targets,
            "history stopped arriving before these offsets; scoring new records without it"
        );
        self.targets.clear();
        self.open_if_done()
    }

    /// Records held back.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    fn open_if_done(&mut self) -> Vec<Polled> {
        if !self.targets.is_empty() {
            return Vec::new();
        }
        let mut held = std::mem::take(&mut self.held);
        held.sort_by(|a, b| a.record.replay_order().cmp(&b.record.replay_order()));
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(topic: &str, partition: i32, offset: i64, ts: i64) -> Polled {
        Polled::at(topic, partition, offset, ts)
    }

    fn offsets(out: &[Polled]) -> Vec<(i32, i64)> {
        out.iter().map(|p| (p.record.source.partition, p.record.offset.0)).collect()
    }

    #[test]
    fn new_records_wait_until_every_partition_has_replayed_its_history() {
        let now = Instant::now();
        let mut gate = CatchUp::default();
        gate.assigned(
            BTreeMap::from([(TopicPartition::new("t", 0), Offset(1)), (TopicPartition::new("t", 1), Offset(0))]),
            now,
        );
        // Partition 0 races ahead to a new record; partition 2 has no history at all.
        assert_eq!(offsets(&gate.admit(rec("t", 0, 0, 10), now)), [(0, 0)]);
        assert_eq!(offsets(&gate.admit(rec("t", 0, 1, 11), now)), [(0, 1)]);
        assert!(gate.admit(rec("t", 0, 2, 99), now).is_empty());
        assert!(gate.admit(rec("t", 2, 0, 98), now).is_empty());
        assert_eq!(gate.held(), 2);
        // Partition 1's history arrives last; then the held records follow in timestamp order.
        assert_eq!(offsets(&gate.admit(rec("t", 1, 0, 5), now)), [(1, 0), (2, 0), (0, 2)]);
        assert_eq!(offsets(&gate.admit(rec("t", 1, 1, 100), now)), [(1, 1)]);
    }

    #[test]
    fn an_unreachable_target_opens_the_gate_after_a_while() {
        let now = Instant::now();
        let mut gate = CatchUp::default();
        gate.assigned(BTreeMap::from([(TopicPartition::new("t", 0), Offset(5))]), now);
        assert!(gate.admit(rec("t", 1, 0, 1), now).is_empty());
        assert!(gate.expire(now + Duration::from_secs(1)).is_empty());
        assert_eq!(offsets(&gate.expire(now + GIVE_UP_AFTER)), [(1, 0)]);
        // A revoked partition's target no longer holds anything back.
        gate.assigned(BTreeMap::from([(TopicPartition::new("t", 3), Offset(5))]), now);
        assert!(gate.admit(rec("t", 1, 1, 2), now).is_empty());
        assert_eq!(offsets(&gate.revoked(&[TopicPartition::new("t", 3)])), [(1, 1)]);
    }
}
