//! `review_label.v1`: a reviewer's judgement of one image-text pair, the human half of the
//! DVA's dual AI-human validation, published on the review labels topic.
//!
//! A label is a fact about a reviewer, not about the pair: the same pair labelled by two
//! reviewers is two labels, and a reviewer who changes their mind adds a label (the newest
//! counts). Its `event_id` is a function of the pair, the reviewer, the decision and the
//! reason (UUIDv5), so an identical label sent twice (a double key press, a retried request)
//! lands once.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    Verdict,
    validate::{Checker, Limits, Violation},
};

/// Namespace of label ids (UUIDv5 over `"<pair>/<reviewer>/<decision>/<reason>"`).
const LABEL_ID_NAMESPACE: Uuid = Uuid::from_u128(0x3c1e_77a0_5b2d_4e9f_8a61_0d4b_9e2f_c513);

/// Longest reason a reviewer may give, in bytes.
pub const MAX_LABEL_REASON_BYTES: usize = 500;

/// Why a pair was put in front of the reviewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewQueue {
    /// Its DVA score is close to the accept threshold.
    NearThreshold,
    /// Judges disagree on it: DVA workers, or reviewers who labelled it before.
    Disagreement,
    /// A random sample of everything scored, to audit the rest.
    Audit,
    /// The reviewer picked it while browsing.
    Browse,
}

impl ReviewQueue {
    /// The snake_case name, as stored.
    pub fn name(self) -> &'static str {
        match self {
            ReviewQueue::NearThreshold => "near_threshold",
            ReviewQueue::Disagreement => "disagreement",
            ReviewQueue::Audit => "audit",
            ReviewQueue::Browse => "browse",
        }
    }
}

/// One reviewer's label of one image-text pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewLabel {
    /// UUIDv5 of the pair, the reviewer, the decision and the reason ([`ReviewLabel::id_for`]).
    pub event_id: Uuid,
    /// The image-text pair labelled.
    pub subject_event_id: Uuid,
    /// The pair's contributor (held-out sets are split by it).
    pub contributor_id: String,
    /// The principal who labelled it.
    pub reviewer: String,
    /// Whether the caption describes the image well enough to train on.
    pub decision: Verdict,
    /// Why, in the reviewer's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why the pair was shown.
    pub queue: ReviewQueue,
    /// When the reviewer labelled it.
    pub labelled_at: DateTime<Utc>,
}

impl ReviewLabel {
    /// The event id of `reviewer`'s label `decision` (with `reason`) of pair `subject`.
    pub fn id_for(subject: Uuid, reviewer: &str, decision: Verdict, reason: Option<&str>) -> Uuid {
        let name = format!("{subject}/{reviewer}/{}/{}", decision.name(), reason.unwrap_or(""));
        Uuid::new_v5(&LABEL_ID_NAMESPACE, name.as_bytes())
    }

    /// The event id this label must have.
    pub fn expected_id(&self) -> Uuid {
        Self::id_for(self.subject_event_id, &self.reviewer, self.decision, self.reason.as_deref())
    }

    /// Parses and validates one label record.
    pub fn parse(json: &[u8], limits: &Limits) -> Result<ReviewLabel, Vec<Violation>> {
        let label: ReviewLabel = super::validate::from_json(json)?;
        let violations = label.violations(limits);
        if violations.is_empty() { Ok(label) } else { Err(violations) }
    }

    /// Every rule this label breaks.
    pub fn violations(&self, limits: &Limits) -> Vec<Violation> {
        let mut c = Checker::new(limits);
        c.require(
            self.event_id == self.expected_id(),
            "event_id",
            "must be the UUIDv5 of the pair, the reviewer, the decision and the reason",
        );
        c.id("contributor_id", &self.contributor_id);
        c.id("reviewer", &self.reviewer);
        if let Some(reason) = &self.reason {
            if reason.len() > MAX_LABEL_REASON_BYTES {
                c.out.push(Violation::too_large(
                    "reason",
                    format!("is {} bytes; at most {MAX_LABEL_REASON_BYTES}", reason.len()),
                ));
            }
            c.require(!reason.trim().is_empty(), "reason", "must not be blank (leave it out instead)");
        }
        c.timestamp("labelled_at", self.labelled_at);
        c.out
    }

    /// The canonical JSON written to Kafka.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("labels serialize: all keys are strings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(decision: Verdict, reason: Option<&str>) -> ReviewLabel {
        let subject = Uuid::from_u128(7);
        ReviewLabel {
            event_id: ReviewLabel::id_for(subject, "rita", decision, reason),
            subject_event_id: subject,
            contributor_id: "alice".into(),
            reviewer: "rita".into(),
            decision,
            reason: reason.map(String::from),
            queue: ReviewQueue::NearThreshold,
            labelled_at: Utc::now(),
        }
    }

    #[test]
    fn identical_labels_share_an_id_and_others_do_not() {
        let a = label(Verdict::Accept, None);
        assert_eq!(ReviewLabel::parse(&a.to_json(), &Limits::default()).expect("valid"), a);
        let later = ReviewLabel { labelled_at: a.labelled_at + chrono::Duration::seconds(5), ..a.clone() };
        assert_eq!(later.expected_id(), a.event_id, "the time is not part of the id");
        assert_ne!(label(Verdict::Reject, None).event_id, a.event_id);
        assert_ne!(label(Verdict::Accept, Some("unusual wording")).event_id, a.event_id);
    }

    #[test]
    fn forged_ids_long_reasons_and_bad_reviewers_are_refused() {
        let mut bad = label(Verdict::Reject, Some(&"x".repeat(MAX_LABEL_REASON_BYTES + 1)));
        bad.event_id = Uuid::from_u128(1);
        bad.reviewer = "has space".into();
        let fields: Vec<String> = bad.violations(&Limits::default()).into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["event_id", "reviewer", "reason"], "{fields:?}");
    }
}
