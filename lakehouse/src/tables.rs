//! The table catalogue: where each table lives under the lake root, its Arrow schema and its
//! partitioning.
//!
//! - `events` (`bronze/events`): every event record read from the intake topics, as the log
//!   has it (a client's retry of an event appears as often as it was sent), with its Kafka
//!   coordinates and raw JSON payload; partitioned by `event_type` and `day`.
//! - `chat_turns`, `preferences`, `image_text_pairs` (`silver/…`): one row per distinct
//!   `event_id`, typed columns, partitioned by `day` (the UTC day the platform received it).
//! - `quality_scores` (`silver/quality_scores`): one row per score event (a submission scored by
//!   one scorer version), from the scores topic; partitioned by `day`.
//! - `market_events` (`marketplace/events`): one row per distinct marketplace event, from the
//!   marketplace topic; partitioned by `day`.
//! - `review_labels` (`silver/review_labels`): one row per distinct reviewer's label of an
//!   image-text pair, from the review labels topic; partitioned by `day`.

use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use gata_contract::{EventKind, topics::Feed};

/// A table of the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableId {
    /// Bronze: every raw event from the log.
    Events,
    /// Silver: distinct chat turns.
    ChatTurns,
    /// Silver: distinct preferences.
    Preferences,
    /// Silver: distinct image-text pairs.
    ImageTextPairs,
    /// Silver: one score per submission and scorer version.
    QualityScores,
    /// Silver: one vote per image-text pair, DVA worker and scorer version.
    DvaVotes,
    /// Bronze: records of the lake's feeds that could not be decoded, with the reason.
    DeadLetters,
    /// Gold: one payout per account and closed epoch, with its lines and Merkle leaf.
    Rewards,
    /// Marketplace: one row per distinct marketplace event (listing, grant, revoke, purchase).
    MarketEvents,
    /// Silver: one row per distinct reviewer's label of an image-text pair.
    ReviewLabels,
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

impl TableId {
    /// Every table, bronze first.
    pub const ALL: [TableId; 10] = [
        TableId::Events,
        TableId::ChatTurns,
        TableId::Preferences,
        TableId::ImageTextPairs,
        TableId::QualityScores,
        TableId::DvaVotes,
        TableId::DeadLetters,
        TableId::Rewards,
        TableId::MarketEvents,
        TableId::ReviewLabels,
    ];

    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            TableId::Events => "events",
            TableId::ChatTurns => "chat_turns",
            TableId::Preferences => "preferences",
            TableId::ImageTextPairs => "image_text_pairs",
            TableId::QualityScores => "quality_scores",
            TableId::DvaVotes => "dva_votes",
            TableId::DeadLetters => "dead_letters",
            TableId::Rewards => "rewards",
            TableId::MarketEvents => "market_events",
            TableId::ReviewLabels => "review_labels",
        }
    }

    /// Location under the lake root.
    pub fn path(self) -> &'static str {
        match self {
            TableId::Events => "bronze/events",
            TableId::ChatTurns => "silver/chat_turns",
            TableId::Preferences => "silver/preferences",
            TableId::ImageTextPairs => "silver/image_text_pairs",
            TableId::QualityScores => "silver/quality_scores",
            TableId::DvaVotes => "silver/dva_votes",
            TableId::DeadLetters => "bronze/dead_letters",
            TableId::Rewards => "gold/rewards",
            TableId::MarketEvents => "marketplace/events",
            TableId::ReviewLabels => "silver/review_labels",
        }
    }

    /// The silver table submissions of `kind` land in.
    pub fn silver(kind: EventKind) -> TableId {
        match kind {
            EventKind::ChatTurn => TableId::ChatTurns,
            EventKind::Preference => TableId::Preferences,
            EventKind::ImageTextPair => TableId::ImageTextPairs,
        }
    }

    /// Every table that records positions in the topic of `feed`: where its records land, and
    /// the dead letters.
    pub fn fed_by(feed: Feed) -> Vec<TableId> {
        match feed {
            Feed::Intake(kind) => vec![TableId::Events, Self::silver(kind), TableId::DeadLetters],
            Feed::QualityScores => vec![TableId::QualityScores, TableId::DeadLetters],
            Feed::DvaVotes => vec![TableId::DvaVotes, TableId::DeadLetters],
            Feed::Market => vec![TableId::MarketEvents, TableId::DeadLetters],
            Feed::ReviewLabels => vec![TableId::ReviewLabels, TableId::DeadLetters],
        }
    }

    /// Whether records of `topic` land in (or are dead-lettered to) this table.
    pub fn is_fed_by_topic(self, topic: &str) -> bool {
        Feed::of_topic(topic).is_some_and(|f| Self::fed_by(f).contains(&self))
    }

    /// Whether the table keeps one row per `event_id` (silver) or every record (bronze).
    pub fn is_deduplicated(self) -> bool {
        !matches!(self, TableId::Events | TableId::DeadLetters)
    }

    /// Partition columns.
    pub fn partition_columns(self) -> &'static [&'static str] {
        match self {
            TableId::Events => &["event_type", "day"],
            _ => &["day"],
        }
    }

    /// Columns to keep file statistics for, when not all (binary image bytes have no useful
    /// min/max).
    pub fn stats_columns(self) -> Option<String> {
        let schema = self.schema();
        let binary = |f: &Field| f.data_type() == &DataType::Binary;
        schema.fields().iter().any(|f| binary(f)).then(|| {
            let names: Vec<&str> = schema
                .fields()
                .iter()
                .filter(|f| !binary(f) && !self.partition_columns().contains(&f.name().as_str()))
                .map(|f| f.name().as_str())
                .collect();
            names.join(",")
        })
    }

    /// One line on what the table holds, for `GET /v1/tables`.
    pub fn description(self) -> &'static str {
        match self {
            TableId::Events => "bronze: every event record from the intake topics, with Kafka coordinates and raw JSON",
            TableId::ChatTurns => "silver: one row per distinct chat turn, with every model's answer",
            TableId::Preferences => {
                "silver: one row per distinct preference (the contributor's pick of a turn's answers)"
            }
            TableId::ImageTextPairs => {
                "silver: one row per distinct image-text pair, image bytes included (or its URL, for images sent by URL)"
            }
            TableId::QualityScores => {
                "silver: one row per submission and scorer version: score, verdict, sub-scores and the reasons"
            }
            TableId::DvaVotes => "silver: one row per DVA worker's vote on an image-text pair (consensus inputs)",
            TableId::DeadLetters => {
                "bronze: records that could not be decoded, with Kafka coordinates, raw bytes and the reason"
            }
            TableId::Rewards => {
                "gold: one payout per account and closed epoch: amount, cap and penalty, the scored submissions behind it, Merkle leaf and epoch root"
            }
            TableId::MarketEvents => {
                "marketplace: one row per listing published or withdrawn, grant, revoke and purchase (with its revenue split), raw JSON included"
            }
            TableId::ReviewLabels => {
                "silver: one row per reviewer's label (accept or reject, with a reason) of an image-text pair, from the review page"
            }
        }
    }

    /// The Arrow schema (partition columns last).
    pub fn schema(self) -> SchemaRef {
        let head = [utf8("event_id", false), utf8("contributor_id", false)];
        let times = [Field::new("occurred_at", ts(), false), Field::new("received_at", ts(), false)];
        // Who submitted each submission (intake's record) and its author's signature.
        let provenance = [utf8("submitted_by", true), utf8("signature", true)];
        let fields: Vec<Field> = match self {
            TableId::DeadLetters => vec![
                utf8("kafka_topic", false),
                Field::new("kafka_partition", DataType::Int32, false),
                Field::new("kafka_offset", DataType::Int64, false),
                Field::new("received_at", ts(), false),
                utf8("reason", false),
                Field::new("payload", DataType::Binary, false),
            ],
            TableId::Events => [
                &head[..],
                &times,
                &[
                    utf8("kafka_topic", false),
                    Field::new("kafka_partition", DataType::Int32, false),
                    Field::new("kafka_offset", DataType::Int64, false),
                    utf8("payload", false),
                    utf8("event_type", false),
                    utf8("submitted_by", true),
                ],
            ]
            .concat(),
            TableId::ChatTurns => {
                let response = Fields::from(vec![
                    utf8("response_id", false),
                    utf8("model", false),
                    utf8("text", false),
                    Field::new("latency_ms", DataType::Int64, true),
                ]);
                let client = Fields::from(vec![utf8("app", true), utf8("version", true), utf8("locale", true)]);
                [
                    &head[..],
                    &[utf8("session_id", true), utf8("turn_id", false)],
                    &times,
                    &[
                        utf8("prompt", false),
                        Field::new(
                            "responses",
                            DataType::List(Arc::new(Field::new("element", DataType::Struct(response), false))),
                            false,
                        ),
                        Field::new("client", DataType::Struct(client), true),
                    ],
                    &provenance,
                ]
                .concat()
            }
            TableId::Preferences => [
                &head[..],
                &[utf8("session_id", true), utf8("turn_id", false)],
                &times,
                &[
                    utf8("chosen_response_id", true),
                    Field::new(
                        "rejected_response_ids",
                        DataType::List(Arc::new(Field::new("element", DataType::Utf8, false))),
                        false,
                    ),
                    Field::new("all_bad", DataType::Boolean, false),
                    Field::new("rating", DataType::Int32, true),
                    utf8("reason", true),
                ],
                &provenance,
            ]
            .concat(),
            TableId::ImageTextPairs => [
                &head[..],
                &times,
                &[
                    utf8("caption", false),
                    utf8("image_content_type", false),
                    utf8("image_sha256", true),
                    Field::new("image_width", DataType::Int32, true),
                    Field::new("image_height", DataType::Int32, true),
                    Field::new("image_size_bytes", DataType::Int64, true),
                    Field::new("image", DataType::Binary, true),
                    utf8("source_url", true),
                    utf8("license", true),
                    utf8("image_url", true),
                ],
                &provenance,
            ]
            .concat(),
            TableId::Rewards => return rewards_schema(),
            TableId::MarketEvents => vec![
                utf8("event_id", false),
                utf8("actor", false),
                utf8("action", false),
                utf8("listing_id", true),
                utf8("contributor_id", true),
                utf8("buyer", true),
                Field::new("price", DataType::Int64, true),
                utf8("purchase_id", true),
                Field::new("occurred_at", ts(), false),
                Field::new("received_at", ts(), false),
                Field::new("kafka_partition", DataType::Int32, false),
                Field::new("kafka_offset", DataType::Int64, false),
                utf8("payload", false),
            ],
            TableId::ReviewLabels => vec![
                utf8("event_id", false),
                utf8("subject_event_id", false),
                utf8("contributor_id", false),
                utf8("reviewer", false),
                utf8("decision", false),
                utf8("reason", true),
                utf8("queue", false),
                Field::new("labelled_at", ts(), false),
                Field::new("received_at", ts(), false),
                Field::new("kafka_partition", DataType::Int32, false),
                Field::new("kafka_offset", DataType::Int64, false),
            ],
            TableId::QualityScores | TableId::DvaVotes => {
                let reason = Fields::from(vec![
                    utf8("code", false),
                    Field::new("penalty", DataType::Float64, false),
                    utf8("detail", false),
                ]);
                let score = |name: &str| Field::new(name, DataType::Float64, true);
                let vote = Fields::from(vec![
                    utf8("validator", false),
                    Field::new("score", DataType::Float64, false),
                    Field::new("agrees", DataType::Boolean, false),
                ]);
                [
                    &head[..],
                    &[utf8("subject_event_id", false), utf8("subject_kind", false), utf8("scorer_version", false)],
                    &[Field::new("score", DataType::Float64, false), utf8("verdict", false)],
                    &[score("realism"), score("originality"), score("diversity"), score("behaviour")],
                    &[
                        Field::new(
                            "reasons",
                            DataType::List(Arc::new(Field::new("element", DataType::Struct(reason), false))),
                            false,
                        ),
                        utf8("language", true),
                    ],
                    &times,
                    &[
                        Field::new("scored_at", ts(), false),
                        utf8("source_topic", false),
                        Field::new("source_partition", DataType::Int32, false),
                        Field::new("source_offset", DataType::Int64, false),
                        utf8("model_id", true),
                        utf8("model_sha256", true),
                        score("decode_ms"),
                        score("preprocess_ms"),
                        score("inference_ms"),
                        utf8("validator", true),
                        Field::new("consensus_replicas", DataType::Int32, true),
                        score("consensus_agreement"),
                        Field::new(
                            "consensus_votes",
                            DataType::List(Arc::new(Field::new("element", DataType::Struct(vote), false))),
                            true,
                        ),
                    ],
                ]
                .concat()
            }
        };
        let mut fields = fields;
        fields.push(utf8("day", false));
        Arc::new(Schema::new(fields))
    }
}

/// `gold/rewards`: amounts are token base units (Int64: Delta has no unsigned integers), the
/// day is the epoch's first; `sales` are the account's shares of marketplace sales.
fn rewards_schema() -> SchemaRef {
    let int = |name: &str| Field::new(name, DataType::Int64, false);
    let line = Fields::from(vec![
        utf8("role", false),
        utf8("subject_event_id", false),
        utf8("kind", false),
        utf8("scorer_version", false),
        int("score_bp"),
        utf8("verdict", false),
        utf8("tier", false),
        int("amount"),
    ]);
    let sale = Fields::from(vec![
        utf8("purchase_id", false),
        utf8("listing_id", false),
        int("accepted"),
        int("amount"),
        Field::new("received_at", ts(), false),
    ]);
    Arc::new(Schema::new(vec![
        utf8("event_id", false),
        utf8("account", false),
        int("epoch"),
        Field::new("epoch_start", ts(), false),
        Field::new("epoch_end", ts(), false),
        utf8("policy_version", false),
        int("amount"),
        int("gross"),
        int("cap_cut"),
        Field::new("flagged", DataType::Boolean, false),
        int("penalty"),
        int("validation"),
        int("leaf_index"),
        int("leaf_count"),
        utf8("leaf_hash", false),
        utf8("epoch_root", false),
        Field::new("lines", DataType::List(Arc::new(Field::new("element", DataType::Struct(line), false))), false),
        Field::new("sales", DataType::List(Arc::new(Field::new("element", DataType::Struct(sale), false))), true),
        utf8("payee", true),
        utf8("day", false),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_listing_can_take_a_lake_tables_name() {
        for t in TableId::ALL {
            assert!(gata_contract::RESERVED_LISTING_IDS.contains(&t.name()), "{}", t.name());
        }
    }

    #[test]
    fn partition_columns_exist_in_every_schema() {
        for t in TableId::ALL {
            let schema = t.schema();
            for p in t.partition_columns() {
                assert!(schema.field_with_name(p).is_ok(), "{} lacks {p}", t.name());
            }
            assert_eq!(schema.field_with_name("event_id").is_ok(), t != TableId::DeadLetters);
        }
    }
}
