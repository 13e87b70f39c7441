//! Replaying history before scoring anything new, in one order whoever replays it.
//!
//! After a (re)start the processor reads its partitions from the beginning, and Kafka
//! interleaves partitions as it likes: a submission sent a second ago on one partition can
//! arrive before yesterday's on another, and two readers of the same log see different
//! interleavings. So each newly assigned partition gets a target — the last offset the lake's
//! bronze table holds for it, history for certain — and history is merged: a history record is
//! released only when it has the earliest receipt key (intake's stamp, then topic, partition,
//! offset) among the next history records of every partition, and a partition whose history
//! has not all arrived holds the merge until its next record does. The order of history is
//! therefore a function of the log alone, not of fetch timing: every shard of the scoring
//! processor, and every restart, folds history in the same order. Records beyond their own
//! partition's target are held back until every target is reached, then released in receipt
//! order, and everything flows straight through.
//!
//! A target that cannot be reached (a log truncated below it) would hold records forever, so
//! when no history has arrived for [`GIVE_UP_AFTER`] the gate opens anyway, with a warning.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use gata_lakehouse::{Offset, TopicPartition};

use crate::poller::Polled;

/// How long the gate waits for history before it opens anyway.
pub(crate) const GIVE_UP_AFTER: Duration = Duration::from_secs(15);

/// The replay gate.
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    /// Partitions whose history has not all arrived, with the last offset of their history.
    targets: BTreeMap<TopicPartition, Offset>,
    /// History arrived but not yet merged, per partition in log order.
    history: BTreeMap<TopicPartition, VecDeque<Polled>>,
    /// Records past their partition's history, until every target is reached.
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
        self.history.retain(|tp, _| !tps.contains(tp));
        self.held.retain(|p| !tps.contains(&p.record.source));
        self.release()
    }

    /// Takes one record; returns the records to score now, in order.
    pub(crate) fn admit(&mut self, polled: Polled, now: Instant) -> Vec<Polled> {
        if self.targets.is_empty() && self.history.is_empty() {
            return vec![polled];
        }
        match self.targets.get(&polled.record.source).copied() {
            Some(target) if polled.record.offset <= target => {
                self.last_history = Some(now);
                if polled.record.offset == target {
                    self.targets.remove(&polled.record.source);
                }
                self.history.entry(polled.record.source.clone()).or_default().push_back(polled);
                self.release()
            }
            Some(_) => {
                // Past a target it never met (the record at the target is gone).
                self.targets.remove(&polled.record.source);
                self.held.push(polled);
                self.release()
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
        self.release()
    }

    /// Whether some partition's history has not all arrived.
    pub(crate) fn replaying(&self) -> bool {
        !self.targets.is_empty()
    }

    /// Records held back.
    pub(crate) fn held(&self) -> usize {
        self.held.len() + self.history.values().map(VecDeque::len).sum::<usize>()
    }

    /// Merges what history can be merged; once every target is reached, adds what was held.
    fn release(&mut self) -> Vec<Polled> {
        let mut out = Vec::new();
        while !self.targets.keys().any(|tp| self.history.get(tp).is_none_or(VecDeque::is_empty)) {
            let earliest = self
                .history
                .iter_mut()
                .filter_map(|(_, queue)| queue.front().is_some().then_some(queue))
                .min_by(|a, b| order(&a[0], &b[0]));
            match earliest.and_then(VecDeque::pop_front) {
                Some(polled) => out.push(polled),
                None => break,
            }
        }
        self.history.retain(|_, queue| !queue.is_empty());
        if self.targets.is_empty() {
            let mut held = std::mem::take(&mut self.held);
            held.sort_by(order);
            out.extend(held);
        }
        out
    }
}

/// Receipt order: intake's stamp, then topic, partition and offset.
fn order(a: &Polled, b: &Polled) -> std::cmp::Ordering {
    a.record.replay_order().cmp(&b.record.replay_order())
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
    fn history_is_merged_in_receipt_order_and_new_records_wait_for_all_of_it() {
        let now = Instant::now();
        let mut gate = CatchUp::default();
        gate.assigned(
            BTreeMap::from([(TopicPartition::new("t", 0), Offset(1)), (TopicPartition::new("t", 1), Offset(1))]),
            now,
        );
        // Partition 0 races ahead to a new record; partition 2 has no history at all. Nothing
        // of partition 0 leaves before partition 1's next history record is known.
        assert!(gate.admit(rec("t", 0, 0, 10), now).is_empty());
        assert!(gate.admit(rec("t", 0, 1, 11), now).is_empty());
        assert!(gate.admit(rec("t", 0, 2, 99), now).is_empty());
        assert!(gate.admit(rec("t", 2, 0, 98), now).is_empty());
        assert_eq!(gate.held(), 4);
        // Partition 1's history arrives last, one record earlier than partition 0's, one later.
        assert_eq!(offsets(&gate.admit(rec("t", 1, 0, 5), now)), [(1, 0)]);
        assert!(gate.replaying(), "partition 1's history is not all read");
        assert_eq!(offsets(&gate.admit(rec("t", 1, 1, 12), now)), [(0, 0), (0, 1), (1, 1), (2, 0), (0, 2)]);
        assert!(!gate.replaying());
        assert_eq!(offsets(&gate.admit(rec("t", 1, 2, 100), now)), [(1, 2)]);
        assert_eq!(gate.held(), 0);
    }

    #[test]
    fn history_leaves_in_one_order_however_its_partitions_interleave() {
        let now = Instant::now();
        let partition = |p: i32| (0..5).map(move |o| rec("t", p, o, 1000 + o * 10 + i64::from(p)));
        let released = |arrivals: Vec<Polled>| {
            let mut gate = CatchUp::default();
            gate.assigned((0..3).map(|p| (TopicPartition::new("t", p), Offset(4))).collect(), now);
            arrivals.into_iter().flat_map(|p| gate.admit(p, now)).map(|p| p.record.received_at).collect::<Vec<_>>()
        };
        let one_after_another = released((0..3).flat_map(partition).collect());
        let round_robin =
            released((0..5).flat_map(|o| (0..3).map(move |p| rec("t", p, o, 1000 + o * 10 + i64::from(p)))).collect());
        let reversed = released((0..3).rev().flat_map(partition).collect());
        assert_eq!(one_after_another.len(), 15);
        assert!(one_after_another.is_sorted());
        assert_eq!(one_after_another, round_robin);
        assert_eq!(one_after_another, reversed);
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
