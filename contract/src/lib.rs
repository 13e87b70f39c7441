//! The v1 event contract, with no I/O: one Rust type per submission kind, its JSON Schema
//! (generated from the type and checked into `schemas/`), validation with precise, located
//! reasons, the topics events travel on ([`topics`]) and Kafka positions as the lake records
//! them ([`offsets`]). Every other crate speaks this contract; it depends on none of them.
//!
//! Events are immutable facts. `event_id` is chosen by the client (a UUID, v7 recommended) so a
//! retried request is recognised downstream; when absent, intake assigns a UUIDv7. The time the
//! platform received an event is the Kafka record timestamp, not a field of the event.

mod chat_turn;
mod image_text_pair;
mod market;
pub mod offsets;
mod preference;
mod provenance;
pub mod topics;

pub use provenance::vote_digest;
mod quality_score;
mod record;
mod review_label;
mod validate;

use serde::{Deserialize, Serialize};

pub use chat_turn::{ChatTurn, ClientInfo, ModelResponse};
pub use image_text_pair::{CheckedImage, DecodedImage, ImageFormat, ImagePayload, ImageTextPair, MAX_IMAGE_URL_BYTES};
pub use market::{
    LISTING_ID_PATTERN, ListingSpec, MAX_LISTING_ID_BYTES, MarketAction, MarketEvent, PaymentMethod,
    RESERVED_LISTING_IDS, RevenueShare, is_tx_hash, payment_reference,
};
pub use preference::Preference;
pub use quality_score::{
    Consensus, LogPosition, ModelRef, QualityScore, ScoreReason, SubScores, Timings, ValidatorVote, Verdict,
};
pub use record::LogRecord;
pub use review_label::{MAX_LABEL_REASON_BYTES, ReviewLabel, ReviewQueue};
pub use validate::{ID_PATTERN, Limits, Violation};

/// The kinds of submission the platform accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// One prompt answered by several models.
    ChatTurn,
    /// A contributor's pick among a turn's answers.
    Preference,
    /// An image with its caption.
    ImageTextPair,
}

impl EventKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EventKind; 3] = [EventKind::ChatTurn, EventKind::Preference, EventKind::ImageTextPair];

    /// The snake_case name (`chat_turn`), used in tables and headers.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ChatTurn => "chat_turn",
            EventKind::Preference => "preference",
            EventKind::ImageTextPair => "image_text_pair",
        }
    }

    /// The versioned contract name carried in the `gata-schema` header (`chat_turn.v1`).
    pub fn schema_name(self) -> String {
        format!("{}.v1", self.name())
    }

    /// The JSON Schema of this kind's contract.
    pub fn json_schema(self) -> serde_json::Value {
        let schema = match self {
            EventKind::ChatTurn => schemars::schema_for!(ChatTurn),
            EventKind::Preference => schemars::schema_for!(Preference),
            EventKind::ImageTextPair => schemars::schema_for!(ImageTextPair),
        };
        schema.to_value()
    }
}

/// The default of `event_id` is "a fresh UUIDv7", not a constant: the schema of a submission
/// states none (the derive would write one drawn when the schema is made).
fn fresh_event_id(schema: &mut schemars::Schema) {
    if let Some(event_id) = schema.pointer_mut("/properties/event_id").and_then(|v| v.as_object_mut()) {
        event_id.remove("default");
    }
}

/// Every contract published on a topic, as (`<name>.v1`, JSON Schema): the submission kinds,
/// then the quality score and the marketplace event.
pub fn schemas() -> Vec<(String, serde_json::Value)> {
    let mut out: Vec<_> = EventKind::ALL.into_iter().map(|k| (k.schema_name(), k.json_schema())).collect();
    out.push(("quality_score.v1".to_string(), schemars::schema_for!(QualityScore).to_value()));
    out.push(("market_event.v1".to_string(), schemars::schema_for!(MarketEvent).to_value()));
    out.push(("review_label.v1".to_string(), schemars::schema_for!(ReviewLabel).to_value()));
    out
}

/// Any v1 event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Event {
    /// A chat turn.
    ChatTurn(ChatTurn),
    /// A preference.
    Preference(Preference),
    /// An image-text pair.
    ImageTextPair(ImageTextPair),
}

impl Event {
    /// Parses one JSON object as an event of `kind`, then validates it. Errors carry the field
    /// path and the reason for every problem found.
    pub fn parse(kind: EventKind, json: &[u8], limits: &Limits) -> Result<Event, Vec<Violation>> {
        let event = match kind {
            EventKind::ChatTurn => validate::from_json(json).map(Event::ChatTurn),
            EventKind::Preference => validate::from_json(json).map(Event::Preference),
            EventKind::ImageTextPair => validate::from_json(json).map(Event::ImageTextPair),
        }?;
        let violations = event.violations(limits);
        if violations.is_empty() { Ok(event) } else { Err(violations) }
    }

    /// The kind of this event.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::ChatTurn(_) => EventKind::ChatTurn,
            Event::Preference(_) => EventKind::Preference,
            Event::ImageTextPair(_) => EventKind::ImageTextPair,
        }
    }

    /// The event's id.
    pub fn event_id(&self) -> uuid::Uuid {
        match self {
            Event::ChatTurn(e) => e.event_id,
            Event::Preference(e) => e.event_id,
            Event::ImageTextPair(e) => e.event_id,
        }
    }

    /// Who submitted it; also the partition key.
    pub fn contributor_id(&self) -> &str {
        match self {
            Event::ChatTurn(e) => &e.contributor_id,
            Event::Preference(e) => &e.contributor_id,
            Event::ImageTextPair(e) => &e.contributor_id,
        }
    }

    /// When the contributor says it happened.
    pub fn occurred_at(&self) -> chrono::DateTime<chrono::Utc> {
        match self {
            Event::ChatTurn(e) => e.occurred_at,
            Event::Preference(e) => e.occurred_at,
            Event::ImageTextPair(e) => e.occurred_at,
        }
    }

    /// Every rule this event breaks, each with the field it concerns.
    pub fn violations(&self, limits: &Limits) -> Vec<Violation> {
        match self {
            Event::ChatTurn(e) => e.violations(limits),
            Event::Preference(e) => e.violations(limits),
            Event::ImageTextPair(e) => e.violations(limits),
        }
    }

    /// The canonical JSON written to Kafka.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("events serialize: all keys are strings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Vec<u8> {
        let path = format!("{}/../examples/{name}.json", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn examples_are_valid_events() {
        let limits = Limits::default();
        for kind in EventKind::ALL {
            let event = Event::parse(kind, &example(kind.name()), &limits).expect("valid example");
            assert_eq!(event.kind(), kind);
            let again = Event::parse(kind, &event.to_json(), &limits).expect("canonical JSON parses");
            assert_eq!(again, event);
        }
    }

    #[test]
    fn checked_in_schemas_match_the_types() {
        for (name, schema) in schemas() {
            let path = format!("{}/../schemas/{name}.schema.json", env!("CARGO_MANIFEST_DIR"));
            let on_disk: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (run `gata schema --write schemas`)")),
            )
            .expect("schema file is JSON");
            assert_eq!(on_disk, schema, "{path} is stale: run `gata schema --write schemas`");
        }
    }

    #[test]
    fn non_objects_and_broken_json_are_refused() {
        let limits = Limits::default();
        for body in [&b"{"[..], b"[]", b"42", b"\"x\""] {
            let err = Event::parse(EventKind::ChatTurn, body, &limits).expect_err("not an event");
            assert_eq!(err.len(), 1);
        }
    }

    #[test]
    fn missing_fields_are_named() {
        let err = Event::parse(EventKind::ChatTurn, br#"{"contributor_id":"x"}"#, &Limits::default())
            .expect_err("incomplete");
        assert!(err[0].reason.contains("missing field"), "{err:?}");
    }
}
