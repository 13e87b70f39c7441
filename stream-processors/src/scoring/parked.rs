//! Preferences waiting for the turn they judge.
//!
//! Turns and preferences travel on different topics, so a preference can be read before its
//! turn even though the contributor sent the turn first. Judging it then would cost it the
//! `unknown_turn` penalty and skip the reading-time check, so it waits — until its turn is
//! scored or a deadline passes, when it is scored without the turn. The deadline is in receipt
//! time (intake's stamp plus `scoring.turn_wait`) and passes when the fold reaches a submission
//! received at or after it, so where a preference is judged depends on the log alone: the
//! scoring processor's shards, a restarted processor and `gata replay` all judge it at the same
//! point.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use gata_contract::Preference;
use gata_lakehouse::{Offset, TopicPartition};

/// A preference and where it was read.
#[derive(Debug)]
pub(crate) struct Waiting {
    pub preference: Preference,
    pub source: TopicPartition,
    pub offset: Offset,
    deadline: DateTime<Utc>,
}

/// Preferences by the turn they wait for.
#[derive(Debug)]
pub(crate) struct Parked {
    /// How long, in receipt time, a preference waits (`scoring.turn_wait`).
    wait: chrono::Duration,
    by_turn: HashMap<String, Vec<Waiting>>,
    /// Deadline → turn ids, to release expired preferences without a scan.
    deadlines: BTreeMap<DateTime<Utc>, Vec<String>>,
    len: usize,
}

impl Parked {
    /// Nothing parked yet; each preference will wait `wait` of receipt time.
    pub(crate) fn new(wait: std::time::Duration) -> Self {
        let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::TimeDelta::MAX);
        Self { wait, by_turn: HashMap::new(), deadlines: BTreeMap::new(), len: 0 }
    }

    /// Parks `preference`, received at `received_at`, until its turn arrives or its wait ends.
    pub(crate) fn park(
        &mut self,
        preference: Preference,
        source: TopicPartition,
        offset: Offset,
        received_at: DateTime<Utc>,
    ) {
        let deadline = received_at.checked_add_signed(self.wait).unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.deadlines.entry(deadline).or_default().push(preference.turn_id.clone());
        self.by_turn.entry(preference.turn_id.clone()).or_default().push(Waiting {
            preference,
            source,
            offset,
            deadline,
        });
        self.len += 1;
    }

    /// The preferences waiting for `turn_id`, in arrival order.
    pub(crate) fn release_turn(&mut self, turn_id: &str) -> Vec<Waiting> {
        let released = self.by_turn.remove(turn_id).unwrap_or_default();
        self.len -= released.len();
        released
    }

    /// The preferences whose deadline is at or before `now`, in deadline order (then in the
    /// order they were parked).
    pub(crate) fn release_expired(&mut self, now: DateTime<Utc>) -> Vec<Waiting> {
        let later = match now.checked_add_signed(chrono::Duration::nanoseconds(1)) {
            Some(after) => self.deadlines.split_off(&after),
            None => BTreeMap::new(),
        };
        let expired = std::mem::replace(&mut self.deadlines, later);
        let mut out = Vec::new();
        for (deadline, turns) in expired {
            for turn in turns {
                let Some(waiting) = self.by_turn.get_mut(&turn) else { continue };
                let (due, keep): (Vec<Waiting>, Vec<Waiting>) =
                    std::mem::take(waiting).into_iter().partition(|w| w.deadline <= deadline);
                *waiting = keep;
                if waiting.is_empty() {
                    self.by_turn.remove(&turn);
                }
                self.len -= due.len();
                out.extend(due);
            }
        }
        out
    }

    /// The preferences read from any of `partitions` (being revoked).
    pub(crate) fn release_partitions(&mut self, partitions: &[TopicPartition]) -> Vec<Waiting> {
        let mut out = Vec::new();
        self.by_turn.retain(|_, waiting| {
            let (gone, keep): (Vec<Waiting>, Vec<Waiting>) =
                std::mem::take(waiting).into_iter().partition(|w| partitions.contains(&w.source));
            out.extend(gone);
            *waiting = keep;
            !waiting.is_empty()
        });
        self.len -= out.len();
        out
    }

    /// How many preferences wait.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn pref(turn: &str) -> Preference {
        serde_json::from_value(serde_json::json!({
            "contributor_id": "c", "turn_id": turn, "occurred_at": "2026-01-01T00:00:00Z",
            "chosen_response_id": "a", "rejected_response_ids": ["b"]
        }))
        .expect("preference")
    }

    #[test]
    fn preferences_leave_with_their_turn_or_their_deadline() {
        let t0 = DateTime::from_timestamp_millis(1_800_000_000_000).expect("a time");
        let tp = TopicPartition::new("p", 0);
        let mut parked = Parked::new(std::time::Duration::ZERO);
        parked.park(pref("t1"), tp.clone(), Offset(1), t0 + Duration::seconds(5));
        parked.park(pref("t2"), tp.clone(), Offset(2), t0 + Duration::seconds(1));
        parked.park(pref("t1"), TopicPartition::new("p", 1), Offset(3), t0 + Duration::seconds(2));
        assert_eq!(parked.len(), 3);

        assert!(parked.release_expired(t0).is_empty());
        let expired = parked.release_expired(t0 + Duration::seconds(1));
        assert_eq!(expired.iter().map(|w| w.offset).collect::<Vec<_>>(), [Offset(2)]);

        let revoked = parked.release_partitions(&[TopicPartition::new("p", 1)]);
        assert_eq!(revoked.iter().map(|w| w.offset).collect::<Vec<_>>(), [Offset(3)]);
        assert!(parked.release_expired(t0 + Duration::seconds(3)).is_empty(), "offset 3 already left");

        let with_turn = parked.release_turn("t1");
        assert_eq!(with_turn.iter().map(|w| w.offset).collect::<Vec<_>>(), [Offset(1)]);
        assert_eq!(parked.len(), 0);
        assert!(parked.release_expired(t0 + Duration::seconds(10)).is_empty());
        parked.park(pref("t3"), tp, Offset(4), t0);
        assert_eq!(parked.release_expired(DateTime::<Utc>::MAX_UTC).len(), 1, "the end of time releases all");

        let mut waiting = Parked::new(std::time::Duration::from_secs(5));
        waiting.park(pref("t4"), TopicPartition::new("p", 2), Offset(5), t0);
        assert!(waiting.release_expired(t0 + Duration::milliseconds(4_999)).is_empty());
        assert_eq!(waiting.release_expired(t0 + Duration::seconds(5)).len(), 1, "waits 5 s of receipt time");
    }
}
