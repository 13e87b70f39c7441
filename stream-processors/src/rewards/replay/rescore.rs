//! Re-scoring the log's text submissions in its order with this build's scorer.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use gata_contract::{Event, Limits, LogRecord, QualityScore, topics::kind_of_topic};
use gata_lakehouse::{Offset, TopicPartition};
use gata_parallel::{available_threads, map_fold_ordered};
use gata_rewards::Contribution;
use gata_scoring::{Prepared, Scorer, ScorerConfig};
use indicatif::ProgressBar;
use uuid::Uuid;

use crate::scoring::{
    parked::{Parked, Waiting},
    publication,
};

/// Re-scores the text submissions of the log, fed in its order, with this build's scorer. Each
/// fed chunk's records are decoded and their texts assessed on every core while the scorer folds
/// the ones before them in order ([`map_fold_ordered`]). What it keeps is the scorer's state and,
/// per submission, its receipt time and its score as the rewards fold reads it (the whole score
/// event only when asked to); never the log.
pub(super) struct Rescore {
    limits: Limits,
    threads: usize,
    scorer: Scorer,
    /// Preferences read before their turn, each waiting `scoring.turn_wait` of receipt time.
    parked: Parked,
    scored: Rescored,
}

/// What [`Rescore`] produced.
#[derive(Debug, Default)]
pub(super) struct Rescored {
    /// Each submission's receipt time (its first copy's).
    pub received: HashMap<Uuid, DateTime<Utc>>,
    /// Each score, as the rewards fold reads it.
    pub contributions: Vec<Contribution>,
    /// Each score event, when kept.
    pub scores: Option<Vec<QualityScore>>,
}

impl Rescored {
    /// Scores a parked preference (its reason text assessed now, as the processor does).
    fn score_waiting(&mut self, scorer: &mut Scorer, waiting: Waiting) {
        let Waiting { preference, source, offset, .. } = waiting;
        self.score(scorer, &Event::Preference(preference), Prepared::Nothing, &source, offset);
    }

    /// Scores `event` with `scorer` (none for a kind it does not judge) and adds the score.
    fn score(&mut self, scorer: &mut Scorer, event: &Event, prepared: Prepared, tp: &TopicPartition, offset: Offset) {
        let Some(score) = scorer.score_event(event, prepared) else { return };
        let published = publication(event, &score, tp, offset);
        if let Some(at) = self.received.get(&published.subject_event_id) {
            self.contributions.push(contribution(&published, *at));
        }
        if let Some(scores) = &mut self.scores {
            scores.push(published);
        }
    }
}

impl Rescore {
    /// A scorer at the start of the log, with the scoring processor's `turn_wait`;
    /// `keep_scores` keeps every score event as well.
    pub(super) fn new(turn_wait: std::time::Duration, keep_scores: bool) -> Self {
        Self {
            limits: Limits::default().for_replay(),
            threads: available_threads(),
            scorer: Scorer::new(ScorerConfig::default()),
            parked: Parked::new(turn_wait),
            scored: Rescored { scores: keep_scores.then(Vec::new), ..Rescored::default() },
        }
    }

    /// Scores the submissions of `records`, the next records of the log.
    pub(super) fn feed(&mut self, records: &[LogRecord], progress: &ProgressBar) {
        let limits = &self.limits;
        let decode = |r: &LogRecord| {
            let event = Event::parse(kind_of_topic(&r.source.topic)?, &r.payload, limits).ok()?;
            let prepared = Prepared::of(&event);
            Some((event, prepared))
        };
        let Self { scorer, parked, scored, .. } = self;
        map_fold_ordered(records, self.threads, decode, |r, decoded| {
            progress.inc(1);
            // Bronze holds only records that decoded when they landed; one that no longer does
            // (a tampered row) is left out here and shows up as a missing score.
            let Some((event, prepared)) = decoded else { return };
            // As the scoring processor does: a preference's wait for its turn ends once a
            // submission received after its deadline comes.
            for waiting in parked.release_expired(r.received_at) {
                scored.score_waiting(scorer, waiting);
            }
            if scored.received.contains_key(&event.event_id()) {
                return;
            }
            scored.received.insert(event.event_id(), r.received_at);
            let (tp, off) = (r.source.clone(), r.offset);
            match &event {
                Event::ChatTurn(turn) => {
                    let turn_id = turn.turn_id.clone();
                    scored.score(scorer, &event, prepared, &tp, off);
                    for waiting in parked.release_turn(&turn_id) {
                        scored.score_waiting(scorer, waiting);
                    }
                }
                Event::Preference(pref) if !scorer.knows_turn(&pref.turn_id) => {
                    parked.park(pref.clone(), tp, off, r.received_at);
                }
                _ => scored.score(scorer, &event, prepared, &tp, off),
            }
        });
    }

    /// The scores, once the whole log was fed (preferences whose turn never came are scored
    /// last, in deadline order, as the scoring processor scores them once nothing more comes).
    pub(super) fn finish(mut self) -> Rescored {
        for waiting in self.parked.release_expired(DateTime::<Utc>::MAX_UTC) {
            self.scored.score_waiting(&mut self.scorer, waiting);
        }
        self.scored
    }
}

fn contribution(s: &QualityScore, received_at: DateTime<Utc>) -> Contribution {
    Contribution {
        contributor: s.contributor_id.clone(),
        subject: s.subject_event_id,
        kind: s.subject_kind,
        scorer_version: s.scorer_version.clone(),
        score: s.score,
        verdict: s.verdict,
        reason_codes: s.reasons.iter().map(|r| r.code.clone()).collect(),
        received_at,
        votes: Vec::new(),
    }
}
