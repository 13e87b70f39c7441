//! `preference.v1`: a contributor's pick of the best answer of a chat turn.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::validate::{Checker, Limits, Violation};

/// The contributor's judgement of one turn: the best answer (or "all bad"), optionally a rating
/// and a reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::fresh_event_id)]
pub struct Preference {
    /// Client-chosen id (UUIDv7 recommended); assigned by intake when absent.
    #[serde(default = "Uuid::now_v7")]
    pub event_id: Uuid,
    /// Who judged.
    pub contributor_id: String,
    /// The chat session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The turn being judged.
    pub turn_id: String,
    /// When the judgement was made (RFC 3339).
    pub occurred_at: DateTime<Utc>,
    /// The best answer; absent only when `all_bad` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_response_id: Option<String>,
    /// Answers judged worse than the chosen one.
    #[serde(default)]
    pub rejected_response_ids: Vec<String>,
    /// Every answer was bad.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_bad: bool,
    /// Rating of the chosen answer, 1 to 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    /// Why, in the contributor's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The principal that submitted the event, recorded by intake (a client never sends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
    /// The author's EIP-712 signature (`0x` + 130 hex digits) over the event's canonical bytes
    /// ([`super::Event::signing_digest`]), checked by intake against `contributor_id`, an
    /// address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Preference {
    /// Every rule this preference breaks on its own (without knowing the turn).
    pub fn violations(&self, limits: &Limits) -> Vec<Violation> {
        let mut c = Checker::new(limits);
        c.turn_header(&self.contributor_id, self.session_id.as_deref(), &self.turn_id, self.occurred_at);
        match (&self.chosen_response_id, self.all_bad) {
            (None, false) => c.require(false, "chosen_response_id", "is required unless all_bad is true"),
            (Some(_), true) => c.require(false, "all_bad", "cannot be true when chosen_response_id is set"),
            (Some(chosen), false) => {
                c.id("chosen_response_id", chosen);
                c.require(
                    !self.rejected_response_ids.contains(chosen),
                    "rejected_response_ids",
                    format!("contains the chosen response {chosen:?}"),
                );
            }
            (None, true) => {}
        }
        // A turn has at most `max_responses` answers and the chosen one is not rejected: a longer
        // list is refused whole, before any per-id work.
        let n = self.rejected_response_ids.len();
        let most = limits.max_responses.saturating_sub(1);
        c.require(n <= most, "rejected_response_ids", format!("has {n} ids; a turn has at most {most} other answers"));
        let mut seen = std::collections::HashSet::with_capacity(n);
        for (i, id) in self.rejected_response_ids.iter().enumerate().take_while(|_| n <= most) {
            c.id(&format!("rejected_response_ids[{i}]"), id);
            c.require(seen.insert(id.as_str()), format!("rejected_response_ids[{i}]"), format!("{id:?} appears twice"));
        }
        if let Some(rating) = self.rating {
            c.require((1..=5).contains(&rating), "rating", format!("is {rating}; must be 1 to 5"));
        }
        c.optional_text("reason", self.reason.as_deref());
        c.out
    }

    /// Rules that need the judged turn's answer ids: every id named must be one of them.
    pub fn violations_against_turn<'a>(&self, answers: impl IntoIterator<Item = &'a str> + Clone) -> Vec<Violation> {
        let known = |id: &str| answers.clone().into_iter().any(|a| a == id);
        let mut out = Vec::new();
        if let Some(chosen) = &self.chosen_response_id
            && !known(chosen)
        {
            out.push(Violation::new(
                "chosen_response_id",
                format!("{chosen:?} is not an answer of turn {:?}", self.turn_id),
            ));
        }
        for (i, id) in self.rejected_response_ids.iter().enumerate() {
            if !known(id) {
                out.push(Violation::new(
                    format!("rejected_response_ids[{i}]"),
                    format!("{id:?} is not an answer of turn {:?}", self.turn_id),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pref() -> Preference {
        Preference {
            event_id: Uuid::now_v7(),
            contributor_id: "ctr_1".into(),
            session_id: None,
            turn_id: "turn_1".into(),
            occurred_at: Utc::now(),
            chosen_response_id: Some("a".into()),
            rejected_response_ids: vec!["b".into()],
            all_bad: false,
            rating: Some(4),
            reason: None,
            submitted_by: None,
            signature: None,
        }
    }

    #[test]
    fn a_preference_rejects_at_most_the_turns_other_answers() {
        let limits = Limits::default();
        let mut many = pref();
        many.rejected_response_ids = (0..10_000).map(|i| format!("r{i}")).collect();
        let found = many.violations(&limits);
        assert_eq!(found.len(), 1, "one violation for the whole list, not one per id");
        assert_eq!(found[0].field, "rejected_response_ids");
        let mut most = pref();
        most.rejected_response_ids = (1..limits.max_responses).map(|i| format!("r{i}")).collect();
        assert!(most.violations(&limits).is_empty());
    }

    #[test]
    fn choice_and_rejections_must_be_consistent() {
        assert!(pref().violations(&Limits::default()).is_empty());
        let mut both = pref();
        both.rejected_response_ids.push("a".into());
        assert_eq!(both.violations(&Limits::default())[0].field, "rejected_response_ids");
        let mut none = pref();
        none.chosen_response_id = None;
        assert_eq!(none.violations(&Limits::default())[0].field, "chosen_response_id");
        let mut rating = pref();
        rating.rating = Some(9);
        assert_eq!(rating.violations(&Limits::default())[0].field, "rating");
    }

    #[test]
    fn unknown_answers_of_a_known_turn_are_named() {
        let v = pref().violations_against_turn(["a", "c"]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "rejected_response_ids[0]");
        assert!(pref().violations_against_turn(["a", "b"]).is_empty());
    }
}
