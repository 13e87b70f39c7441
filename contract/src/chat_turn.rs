//! `chat_turn.v1`: one prompt sent to several models, with every model's answer.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::validate::{Checker, Limits, Violation};

/// One prompt answered by several models in parallel (multi-model chat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::fresh_event_id)]
pub struct ChatTurn {
    /// Client-chosen id (UUIDv7 recommended); assigned by intake when absent.
    #[serde(default = "Uuid::now_v7")]
    pub event_id: Uuid,
    /// Who asked.
    pub contributor_id: String,
    /// The chat session this turn belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The turn's id; preferences refer to it.
    pub turn_id: String,
    /// When the turn happened (RFC 3339).
    pub occurred_at: DateTime<Utc>,
    /// What was asked.
    pub prompt: String,
    /// Every model's answer: at least two.
    pub responses: Vec<ModelResponse>,
    /// The client application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
    /// The principal that submitted the event, recorded by intake (a client never sends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
    /// The author's EIP-712 signature (`0x` + 130 hex digits) over the event's canonical bytes
    /// ([`super::Event::signing_digest`]), checked by intake against `contributor_id`, an
    /// address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// One model's answer within a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelResponse {
    /// Unique within the turn; preferences name it.
    pub response_id: String,
    /// The model that answered (`gpt-4o`).
    pub model: String,
    /// The answer.
    pub text: String,
    /// How long the model took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u32>,
}

/// The application the contributor used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientInfo {
    /// Application name (`gatagpt-web`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Application version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// BCP 47 locale (`en-US`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

impl ChatTurn {
    /// Every rule this turn breaks.
    pub fn violations(&self, limits: &Limits) -> Vec<Violation> {
        let mut c = Checker::new(limits);
        c.turn_header(&self.contributor_id, self.session_id.as_deref(), &self.turn_id, self.occurred_at);
        c.text("prompt", &self.prompt);
        let n = self.responses.len();
        c.require(n >= 2, "responses", format!("has {n} model answers; a chat turn needs at least 2"));
        c.require(
            n <= limits.max_responses,
            "responses",
            format!("has {n} model answers; at most {}", limits.max_responses),
        );
        let mut seen = HashSet::new();
        for (i, r) in self.responses.iter().enumerate() {
            c.id(&format!("responses[{i}].response_id"), &r.response_id);
            c.require(
                seen.insert(r.response_id.as_str()),
                format!("responses[{i}].response_id"),
                format!("{:?} appears twice in this turn", r.response_id),
            );
            c.id(&format!("responses[{i}].model"), &r.model);
            c.text(&format!("responses[{i}].text"), &r.text);
        }
        if let Some(client) = &self.client {
            for (field, value) in
                [("client.app", &client.app), ("client.version", &client.version), ("client.locale", &client.locale)]
            {
                if let Some(v) = value {
                    c.id(field, v);
                }
            }
        }
        c.out
    }

    /// The ids of this turn's answers.
    pub fn response_ids(&self) -> impl Iterator<Item = &str> {
        self.responses.iter().map(|r| r.response_id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn() -> ChatTurn {
        ChatTurn {
            event_id: Uuid::now_v7(),
            contributor_id: "ctr_1".into(),
            session_id: None,
            turn_id: "turn_1".into(),
            occurred_at: Utc::now(),
            prompt: "Why is the sky blue?".into(),
            responses: ["a", "b"]
                .map(|id| ModelResponse {
                    response_id: id.into(),
                    model: "m".into(),
                    text: "Rayleigh scattering".into(),
                    latency_ms: None,
                })
                .to_vec(),
            client: None,
            submitted_by: None,
            signature: None,
        }
    }

    #[test]
    fn a_turn_needs_two_distinct_answers() {
        assert!(turn().violations(&Limits::default()).is_empty());
        let mut one = turn();
        one.responses.truncate(1);
        let v = one.violations(&Limits::default());
        assert_eq!(v[0].field, "responses");
        let mut twins = turn();
        twins.responses[1].response_id = "a".into();
        assert_eq!(twins.violations(&Limits::default())[0].field, "responses[1].response_id");
    }

    #[test]
    fn oversized_prompt_is_a_size_violation() {
        let mut big = turn();
        big.prompt = "x".repeat(Limits::default().max_text_bytes + 1);
        let v = big.violations(&Limits::default());
        assert!(v[0].too_large && v[0].field == "prompt", "{v:?}");
    }
}
