//! Pure scoring logic (no I/O): text quality, near-duplicate detection and spam/bot signals for
//! chat turns and preferences.
//!
//! A [`Scorer`] is fed submissions in log order and keeps what it has seen (an LSH index of
//! every prompt, a window of each contributor's recent submissions, an index of turns for their
//! preferences). Each call returns a [`Score`]: sub-scores in [0, 1], an overall score, a
//! verdict and the [`Reason`]s behind it. Same submissions in the same order → same scores,
//! bit for bit.
//!
//! Scoring is split in two: [`Prepared::of`] assesses a submission's own texts (realism,
//! language, MinHash signature, topic embedding) without the scorer, and the scorer folds
//! prepared submissions in order. Callers with a batch assess it on several threads
//! (`gata_parallel::map_ordered`) and fold it on one.

pub mod embed;
pub mod lang;
pub mod minhash;
mod scorer;
pub mod text;

pub use gata_contract::Verdict;
use gata_contract::{ScoreReason, SubScores as MeasuredSubScores};
pub use scorer::{PreferenceText, Prepared, Remembered, SCORER_VERSION, Scorer, ScorerConfig, TurnText};
use serde::{Deserialize, Serialize};

/// One rule that fired, in machine-readable form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// Stable identifier (`near_duplicate`, `keyboard_mash`, …).
    pub code: &'static str,
    /// How much it costs the sub-score it belongs to, in (0, 1]; 1 rejects outright.
    pub penalty: f64,
    /// What was measured, for people.
    pub detail: String,
}

impl Reason {
    /// A reason with its penalty clamped to [0, 1].
    pub fn new(code: &'static str, penalty: f64, detail: String) -> Self {
        Self { code, penalty: penalty.clamp(0.0, 1.0), detail }
    }

    /// Whether this reason alone rejects the submission.
    pub fn is_hard(&self) -> bool {
        self.penalty >= 1.0
    }
}

/// The four sub-scores, each in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SubScores {
    /// Reads like natural language (see [`text`]).
    pub realism: f64,
    /// 1 − the similarity to the closest earlier submission.
    pub originality: f64,
    /// How varied the contributor's recent prompts are.
    pub diversity: f64,
    /// Absence of bot, macro and spam behaviour (rate, regularity, templates, judging patterns).
    pub behaviour: f64,
}

/// The scorer's judgement of one submission.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// Sub-scores.
    pub sub: SubScores,
    /// Weighted geometric mean of the sub-scores, in [0, 1].
    pub overall: f64,
    /// Accept or reject.
    pub verdict: Verdict,
    /// Every rule that fired, in the order checked.
    pub reasons: Vec<Reason>,
    /// ISO 639-3 language of the prompt, when detected reliably.
    pub language: Option<&'static str>,
}

impl Score {
    /// The sub-scores as published on the scores topic.
    pub fn measured(&self) -> MeasuredSubScores {
        MeasuredSubScores {
            realism: Some(self.sub.realism),
            originality: Some(self.sub.originality),
            diversity: Some(self.sub.diversity),
            behaviour: Some(self.sub.behaviour),
        }
    }

    /// The reasons as published on the scores topic.
    pub fn published_reasons(&self) -> Vec<ScoreReason> {
        self.reasons
            .iter()
            .map(|r| ScoreReason { code: r.code.to_string(), penalty: r.penalty, detail: r.detail.clone() })
            .collect()
    }
}
