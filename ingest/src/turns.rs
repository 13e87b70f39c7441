//! A bounded index of recently accepted chat turns, so a preference naming an answer its turn
//! never had is refused at intake with a precise reason.
//!
//! Only turns this process accepted are known; a preference for an unknown turn is accepted
//! (its turn may have been taken by another intake instance or before a restart). When full,
//! the oldest turn is forgotten first.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

/// Turn id → the ids of its answers, for the most recent `capacity` turns.
#[derive(Debug)]
pub(crate) struct TurnIndex {
    capacity: usize,
    inner: Mutex<Recent>,
}

/// The remembered turns and the order they came in.
#[derive(Debug, Default)]
struct Recent {
    answers: HashMap<String, Vec<String>>,
    order: VecDeque<String>,
}

impl TurnIndex {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), inner: Mutex::new(Recent::default()) }
    }

    /// Remembers `turn_id` with its answer ids.
    pub(crate) fn insert(&self, turn_id: &str, answers: Vec<String>) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Recent { answers: map, order } = &mut *guard;
        if map.insert(turn_id.to_string(), answers).is_none() {
            order.push_back(turn_id.to_string());
        }
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    /// The answer ids of `turn_id`, if this process accepted it recently.
    pub(crate) fn answers(&self, turn_id: &str) -> Option<Vec<String>> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.answers.get(turn_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_turn_when_full() {
        let idx = TurnIndex::new(2);
        idx.insert("t1", vec!["a".into()]);
        idx.insert("t2", vec!["b".into()]);
        idx.insert("t3", vec!["c".into()]);
        assert_eq!(idx.answers("t1"), None);
        assert_eq!(idx.answers("t3"), Some(vec!["c".to_string()]));
    }
}
