//! `quality_score.v1`: a scorer's judgement of one submission, published on the scores topic.
//!
//! Scores are derived facts: the submission is the fact, the score is what one version of one
//! scorer made of it. The `event_id` is a function of both (UUIDv5 of the scorer version and the
//! submission's event id), so scoring a submission again with the same version — after a crash,
//! a rebalance, a replay — yields the same id and lands once, while a new scorer version yields
//! new ids and can be replayed over history beside the old.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    EventKind,
    validate::{Checker, Limits, Violation},
};

/// Namespace of score event ids (UUIDv5 over `"<scorer_version>/<subject event id>"`).
const SCORE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a0b_51c2_8e3f_4d7a_9b1e_2c4d_5f60_7182);

/// Accept or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Worth paying for and training on.
    Accept,
    /// Junk, a duplicate or a bot's.
    Reject,
}

impl Verdict {
    /// `accept` or `reject`, as stored.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
        }
    }
}

/// The sub-scores a scorer measured, each in [0, 1]; absent where a scorer does not measure it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubScores {
    /// Reads like natural language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realism: Option<f64>,
    /// 1 − the similarity to the closest earlier submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originality: Option<f64>,
    /// How varied the contributor's recent submissions are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diversity: Option<f64>,
    /// Absence of bot, macro and spam behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<f64>,
}

impl SubScores {
    fn named(&self) -> [(&'static str, Option<f64>); 4] {
        [
            ("realism", self.realism),
            ("originality", self.originality),
            ("diversity", self.diversity),
            ("behaviour", self.behaviour),
        ]
    }
}

/// One rule that fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreReason {
    /// Stable identifier (`near_duplicate`, `keyboard_mash`, …).
    pub code: String,
    /// What it cost the sub-score it belongs to, in [0, 1]; 1 rejects outright.
    pub penalty: f64,
    /// What was measured, for people.
    pub detail: String,
}

/// Where the scored submission sits in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogPosition {
    /// Intake topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// The model a model-based scorer ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// Model id from its card (`gata/tiny-clip-64`).
    pub id: String,
    /// SHA-256 identifying the exact weights.
    pub sha256: String,
}

/// Time a model-based scorer spent on one submission, by stage (milliseconds; batched stages
/// are the batch's time divided among its submissions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timings {
    /// Decoding the image.
    pub decode_ms: f64,
    /// Resizing, cropping, normalising and tokenizing.
    pub preprocess_ms: f64,
    /// Running the encoders.
    pub inference_ms: f64,
}

/// One validator's score in a consensus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidatorVote {
    /// The DVA worker that cast it.
    pub validator: String,
    /// Its score, in [-1, 1].
    pub score: f64,
    /// Within the tolerance of the median: the validator agrees with the consensus.
    pub agrees: bool,
}

/// How a score agreed on by several independent validators came about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Consensus {
    /// Votes asked for (`dva.replicas`).
    pub replicas: u32,
    /// Largest distance from the median that still agrees.
    pub tolerance: f64,
    /// Share of the counted votes that agree, in [0, 1].
    pub agreement: f64,
    /// Every vote received in time, flagged validators' included (they never count toward the
    /// median).
    pub votes: Vec<ValidatorVote>,
}

/// A scorer's judgement of one submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QualityScore {
    /// [`QualityScore::id_for`] the scorer version and the submission.
    pub event_id: Uuid,
    /// Who submitted the scored submission (the partition key).
    pub contributor_id: String,
    /// The scored submission's event id.
    pub subject_event_id: Uuid,
    /// The scored submission's kind.
    pub subject_kind: EventKind,
    /// Scorer and rules version (`text-1.0.0`).
    pub scorer_version: String,
    /// Overall score: [0, 1] for text quality, [-1, 1] for image-caption agreement.
    pub score: f64,
    /// Accept or reject.
    pub verdict: Verdict,
    /// Sub-scores, where measured.
    #[serde(default)]
    pub sub_scores: SubScores,
    /// Every rule that fired, in the order checked.
    #[serde(default)]
    pub reasons: Vec<ScoreReason>,
    /// ISO 639-3 language of the text, when detected reliably.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// When the submission says it happened.
    pub occurred_at: DateTime<Utc>,
    /// When it was scored.
    pub scored_at: DateTime<Utc>,
    /// The submission's position in the log.
    pub source: LogPosition,
    /// The model that scored, for model-based scorers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// Time spent, for model-based scorers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// On the DVA votes topic: the worker that cast this vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<String>,
    /// On a score agreed by several DVA workers: the votes and how well they agreed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus: Option<Consensus>,
}

impl QualityScore {
    /// The event id of `scorer_version`'s score of submission `subject`.
    pub fn id_for(scorer_version: &str, subject: Uuid) -> Uuid {
        Uuid::new_v5(&SCORE_ID_NAMESPACE, format!("{scorer_version}/{subject}").as_bytes())
    }

    /// The event id of `validator`'s vote on submission `subject` with `scorer_version`.
    pub fn vote_id_for(scorer_version: &str, validator: &str, subject: Uuid) -> Uuid {
        Uuid::new_v5(&SCORE_ID_NAMESPACE, format!("{scorer_version}/{validator}/{subject}").as_bytes())
    }

    /// The event id this score must have: a vote's or a score's.
    pub fn expected_id(&self) -> Uuid {
        match &self.validator {
            Some(validator) => Self::vote_id_for(&self.scorer_version, validator, self.subject_event_id),
            None => Self::id_for(&self.scorer_version, self.subject_event_id),
        }
    }

    /// Parses and validates one score record.
    pub fn parse(json: &[u8], limits: &Limits) -> Result<QualityScore, Vec<Violation>> {
        let score: QualityScore = super::validate::from_json(json)?;
        let violations = score.violations(limits);
        if violations.is_empty() { Ok(score) } else { Err(violations) }
    }

    /// Every rule this score breaks.
    pub fn violations(&self, limits: &Limits) -> Vec<Violation> {
        let mut c = Checker::new(limits);
        c.require(
            self.event_id == self.expected_id(),
            "event_id",
            "must be the UUIDv5 of the scorer version, the validator (on votes) and the subject event id",
        );
        c.id("contributor_id", &self.contributor_id);
        c.id("scorer_version", &self.scorer_version);
        c.require((-1.0..=1.0).contains(&self.score), "score", format!("is {}; must be in [-1, 1]", self.score));
        for (name, value) in self.sub_scores.named() {
            if let Some(v) = value {
                c.require((0.0..=1.0).contains(&v), format!("sub_scores.{name}"), format!("is {v}; must be in [0, 1]"));
            }
        }
        for (i, r) in self.reasons.iter().enumerate() {
            c.id(&format!("reasons[{i}].code"), &r.code);
            c.require(
                (0.0..=1.0).contains(&r.penalty),
                format!("reasons[{i}].penalty"),
                format!("is {}; must be in [0, 1]", r.penalty),
            );
            c.require(
                r.detail.len() <= limits.max_text_bytes,
                format!("reasons[{i}].detail"),
                format!("is {} bytes; at most {}", r.detail.len(), limits.max_text_bytes),
            );
        }
        if let Some(language) = &self.language {
            c.id("language", language);
        }
        c.timestamp("occurred_at", self.occurred_at);
        c.timestamp("scored_at", self.scored_at);
        if let Some(validator) = &self.validator {
            c.id("validator", validator);
        }
        if let Some(consensus) = &self.consensus {
            c.require(!consensus.votes.is_empty(), "consensus.votes", "must not be empty");
            c.require((0.0..=1.0).contains(&consensus.agreement), "consensus.agreement", "must be in [0, 1]");
            for (i, vote) in consensus.votes.iter().enumerate() {
                c.id(&format!("consensus.votes[{i}].validator"), &vote.validator);
                c.require(
                    (-1.0..=1.0).contains(&vote.score),
                    format!("consensus.votes[{i}].score"),
                    "must be in [-1, 1]",
                );
            }
        }
        c.require(!self.source.topic.is_empty(), "source.topic", "must not be empty");
        c.require(self.source.offset >= 0, "source.offset", "must not be negative");
        c.out
    }

    /// The canonical JSON written to Kafka.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("scores serialize: all keys are strings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score() -> QualityScore {
        let subject = Uuid::now_v7();
        QualityScore {
            event_id: QualityScore::id_for("text-1.0.0", subject),
            contributor_id: "alice".into(),
            subject_event_id: subject,
            subject_kind: EventKind::ChatTurn,
            scorer_version: "text-1.0.0".into(),
            score: 0.8,
            verdict: Verdict::Accept,
            sub_scores: SubScores { realism: Some(0.9), ..SubScores::default() },
            reasons: vec![ScoreReason { code: "few_words".into(), penalty: 0.1, detail: "7 words".into() }],
            language: Some("eng".into()),
            occurred_at: Utc::now(),
            scored_at: Utc::now(),
            source: LogPosition { topic: "gata.chat_turns.v1".into(), partition: 0, offset: 3 },
            model: None,
            timings: None,
            validator: None,
            consensus: None,
        }
    }

    #[test]
    fn ids_depend_on_version_and_subject_only() {
        let subject = Uuid::now_v7();
        assert_eq!(QualityScore::id_for("v1", subject), QualityScore::id_for("v1", subject));
        assert_ne!(QualityScore::id_for("v1", subject), QualityScore::id_for("v2", subject));
        assert_ne!(QualityScore::id_for("v1", subject), QualityScore::id_for("v1", Uuid::now_v7()));
    }

    #[test]
    fn scores_round_trip_and_bad_ones_are_named() {
        let limits = Limits::default();
        let good = score();
        assert_eq!(QualityScore::parse(&good.to_json(), &limits).expect("valid"), good);

        let mut bad = score();
        bad.score = 1.5;
        bad.sub_scores.behaviour = Some(-0.1);
        bad.event_id = Uuid::now_v7();
        let fields: Vec<String> =
            QualityScore::parse(&bad.to_json(), &limits).expect_err("invalid").into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["event_id", "score", "sub_scores.behaviour"]);
    }

    #[test]
    fn votes_are_keyed_by_validator_too() {
        let limits = Limits::default();
        let mut vote = score();
        vote.validator = Some("worker-a".into());
        assert!(QualityScore::parse(&vote.to_json(), &limits).is_err(), "a vote under a score's id is refused");
        vote.event_id = vote.expected_id();
        assert_eq!(QualityScore::parse(&vote.to_json(), &limits).expect("vote"), vote);
        assert_ne!(vote.event_id, QualityScore::vote_id_for(&vote.scorer_version, "worker-b", vote.subject_event_id));
        assert_ne!(vote.event_id, QualityScore::id_for(&vote.scorer_version, vote.subject_event_id));
    }
}
