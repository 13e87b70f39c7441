//! How decoded records ([`crate::decoded`]) become Arrow rows of each table.
//!
//! The tables every submission lands in (`events`, `chat_turns`, `preferences`) are built
//! column by column ([`crate::columns`]): they carry the sink's volume. The others are
//! serialized from row structs through `arrow-json`'s serde decoder. Either way the Rust types
//! and the Arrow schema cannot drift apart silently: a mismatch is an error the tests hit,
//! not a wrong column.

use chrono::{DateTime, Utc};
use deltalake::arrow::record_batch::RecordBatch;
use gata_contract::{ClientInfo, Event, MarketAction, ModelResponse, ScoreReason, ValidatorVote};
use serde::Serialize;

use crate::columns::{
    self, bools, days, int32s, int64s, optional_int32s, optional_int64s, optional_strings, strings, times, uuids,
};
use crate::{Body, DeadLetter, LakeError, LakeRecord, Result, TableId};
use deltalake::arrow::datatypes::Fields;

#[derive(Serialize)]
struct DeadLetterRow<'a> {
    kafka_topic: &'a str,
    kafka_partition: i32,
    kafka_offset: i64,
    received_at: i64,
    reason: &'a str,
    /// Hex, as arrow-json decodes binary columns from hex strings.
    payload: String,
    day: String,
}

/// Builds one record batch of the `dead_letters` table.
pub fn dead_letter_batch(letters: &[&DeadLetter]) -> Result<RecordBatch> {
    let rows: Vec<DeadLetterRow<'_>> = letters
        .iter()
        .map(|d| DeadLetterRow {
            kafka_topic: &d.record.source.topic,
            kafka_partition: d.record.source.partition,
            kafka_offset: d.record.offset.0,
            received_at: micros(d.record.received_at),
            reason: &d.reason,
            payload: hex::encode(&d.record.payload),
            day: d.record.received_at.format("%Y-%m-%d").to_string(),
        })
        .collect();
    serialize(TableId::DeadLetters, &rows)
}

/// Serializes `rows` into a batch of `table`'s schema.
pub fn serialize<R: Serialize>(table: TableId, rows: &[R]) -> Result<RecordBatch> {
    let wrap = |source| LakeError::Rows { table: table.name(), source };
    let mut decoder = arrow_json::ReaderBuilder::new(table.schema())
        .with_batch_size(rows.len().max(1))
        .build_decoder()
        .map_err(wrap)?;
    decoder.serialize(rows).map_err(wrap)?;
    Ok(decoder.flush().map_err(wrap)?.unwrap_or_else(|| RecordBatch::new_empty(table.schema())))
}

/// A payload as text: borrowed when it is UTF-8, as every decoded one is (checked a word at a
/// time, several times faster than the lossy conversion's scan), with replacement characters
/// otherwise.
fn text(payload: &[u8]) -> std::borrow::Cow<'_, str> {
    std::str::from_utf8(payload).map_or_else(|_| String::from_utf8_lossy(payload), std::borrow::Cow::Borrowed)
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

#[derive(Serialize)]
struct ImageTextPairRow<'a> {
    event_id: String,
    contributor_id: &'a str,
    occurred_at: i64,
    received_at: i64,
    caption: &'a str,
    image_content_type: &'a str,
    image_sha256: Option<&'a str>,
    image_width: Option<u32>,
    image_height: Option<u32>,
    image_size_bytes: Option<usize>,
    /// Hex, as arrow-json decodes binary columns from hex strings.
    image: Option<String>,
    source_url: Option<&'a str>,
    license: Option<&'a str>,
    image_url: Option<&'a str>,
    submitted_by: Option<&'a str>,
    signature: Option<&'a str>,
    day: String,
}

/// Builds one record batch of `table` from `records` (all of which must belong to it). The
/// `dead_letters` table is built by [`dead_letter_batch`]; no decoded record belongs to it.
pub fn record_batch(table: TableId, records: &[&LakeRecord]) -> Result<RecordBatch> {
    match table {
        TableId::Events => events(records),
        TableId::ChatTurns => chat_turns(records),
        TableId::Preferences => preferences(records),
        TableId::ImageTextPairs => serialize(table, &records.iter().filter_map(|r| image_row(r)).collect::<Vec<_>>()),
        TableId::QualityScores | TableId::DvaVotes => serialize(
            table,
            &records.iter().filter(|r| r.silver() == table).filter_map(|r| score_row(r)).collect::<Vec<_>>(),
        ),
        TableId::MarketEvents => serialize(table, &records.iter().filter_map(|r| market_row(r)).collect::<Vec<_>>()),
        TableId::ReviewLabels => serialize(table, &records.iter().filter_map(|r| label_row(r)).collect::<Vec<_>>()),
        TableId::DeadLetters | TableId::Rewards => Ok(RecordBatch::new_empty(table.schema())),
    }
}

/// A record holding a submission, its event, and the part of it a table takes.
struct Row<'a, T> {
    record: &'a LakeRecord,
    event: &'a Event,
    it: &'a T,
}

/// The rows of the records whose submission `pick` takes.
fn rows_of<'a, T>(records: &[&'a LakeRecord], pick: impl Fn(&'a Event) -> Option<&'a T>) -> Vec<Row<'a, T>> {
    records
        .iter()
        .filter_map(|record| {
            let event = record.event()?;
            Some(Row { record, event, it: pick(event)? })
        })
        .collect()
}

/// The columns every table of submissions has.
fn common<T>(rows: &[Row<'_, T>]) -> Vec<columns::Column> {
    vec![
        ("event_id", uuids(rows, |r| r.event.event_id())),
        ("contributor_id", strings(rows, |r| r.event.contributor_id())),
        ("occurred_at", times(rows, |r| r.event.occurred_at())),
        ("received_at", times(rows, |r| r.record.record.received_at)),
        ("submitted_by", optional_strings(rows, |r| r.event.submitted_by())),
        ("day", days(rows, |r| r.record.record.received_at)),
    ]
}

fn events(records: &[&LakeRecord]) -> Result<RecordBatch> {
    let rows = rows_of(records, Some);
    let payloads: Vec<_> = rows.iter().map(|r| text(&r.record.record.payload)).collect();
    let mut columns = common(&rows);
    columns.extend([
        ("kafka_topic", strings(&rows, |r| &r.record.record.source.topic)),
        ("kafka_partition", int32s(&rows, |r| r.record.record.source.partition)),
        ("kafka_offset", int64s(&rows, |r| r.record.record.offset.0)),
        ("payload", strings(&payloads, |p| p)),
        ("event_type", strings(&rows, |r| r.event.kind().name())),
    ]);
    columns::batch(TableId::Events, columns)
}

fn chat_turns(records: &[&LakeRecord]) -> Result<RecordBatch> {
    let table = TableId::ChatTurns;
    let rows = rows_of(records, |e| match e {
        Event::ChatTurn(turn) => Some(turn),
        _ => None,
    });
    let responses = |responses: &[&ModelResponse], fields: &Fields| {
        let children = vec![
            ("response_id", strings(responses, |m| &m.response_id)),
            ("model", strings(responses, |m| &m.model)),
            ("text", strings(responses, |m| &m.text)),
            ("latency_ms", optional_int64s(responses, |m| m.latency_ms.map(i64::from))),
        ];
        columns::structs(table, fields, children, None)
    };
    let client =
        |f: fn(&ClientInfo) -> Option<&str>| optional_strings(&rows, move |r| r.it.client.as_ref().and_then(f));
    let clients = vec![
        ("app", client(|c| c.app.as_deref())),
        ("version", client(|c| c.version.as_deref())),
        ("locale", client(|c| c.locale.as_deref())),
    ];
    let present = rows.iter().map(|r| r.it.client.is_some()).collect();
    let mut columns = common(&rows);
    columns.extend([
        ("session_id", optional_strings(&rows, |r| r.it.session_id.as_deref())),
        ("turn_id", strings(&rows, |r| &r.it.turn_id)),
        ("prompt", strings(&rows, |r| &r.it.prompt)),
        ("responses", columns::lists(table, "responses", &rows, |r| &r.it.responses, responses)?),
        ("client", columns::structs(table, &columns::struct_fields(table, "client")?, clients, Some(present))?),
        ("signature", optional_strings(&rows, |r| r.it.signature.as_deref())),
    ]);
    columns::batch(table, columns)
}

fn preferences(records: &[&LakeRecord]) -> Result<RecordBatch> {
    let table = TableId::Preferences;
    let rows = rows_of(records, |e| match e {
        Event::Preference(p) => Some(p),
        _ => None,
    });
    let ids = |ids: &[&String], _: &Fields| Ok(strings(ids, |id| id.as_str()));
    let rejected = columns::lists(table, "rejected_response_ids", &rows, |r| &r.it.rejected_response_ids, ids)?;
    let mut columns = common(&rows);
    columns.extend([
        ("session_id", optional_strings(&rows, |r| r.it.session_id.as_deref())),
        ("turn_id", strings(&rows, |r| &r.it.turn_id)),
        ("chosen_response_id", optional_strings(&rows, |r| r.it.chosen_response_id.as_deref())),
        ("rejected_response_ids", rejected),
        ("all_bad", bools(&rows, |r| r.it.all_bad)),
        ("rating", optional_int32s(&rows, |r| r.it.rating.map(i32::from))),
        ("reason", optional_strings(&rows, |r| r.it.reason.as_deref())),
        ("signature", optional_strings(&rows, |r| r.it.signature.as_deref())),
    ]);
    columns::batch(table, columns)
}

fn image_row(r: &LakeRecord) -> Option<ImageTextPairRow<'_>> {
    let Body::Submission { event: Event::ImageTextPair(p), image } = &r.body else { return None };
    Some(ImageTextPairRow {
        event_id: p.event_id.to_string(),
        contributor_id: &p.contributor_id,
        occurred_at: micros(p.occurred_at),
        received_at: micros(r.record.received_at),
        caption: &p.caption,
        image_content_type: &p.image.content_type,
        image_sha256: image.as_ref().map(|i| i.sha256.as_str()),
        image_width: image.as_ref().map(|i| i.width),
        image_height: image.as_ref().map(|i| i.height),
        image_size_bytes: image.as_ref().map(|i| i.bytes.len()),
        image: image.as_ref().map(|i| hex::encode(&i.bytes)),
        source_url: p.source_url.as_deref(),
        license: p.license.as_deref(),
        image_url: p.image.url.as_deref(),
        submitted_by: p.submitted_by.as_deref(),
        signature: p.signature.as_deref(),
        day: r.day(),
    })
}

#[derive(Serialize)]
struct ReviewLabelRow<'a> {
    event_id: String,
    subject_event_id: String,
    contributor_id: &'a str,
    reviewer: &'a str,
    decision: &'static str,
    reason: Option<&'a str>,
    queue: &'static str,
    labelled_at: i64,
    received_at: i64,
    kafka_partition: i32,
    kafka_offset: i64,
    day: String,
}

fn label_row(r: &LakeRecord) -> Option<ReviewLabelRow<'_>> {
    let Body::Label(l) = &r.body else { return None };
    Some(ReviewLabelRow {
        event_id: l.event_id.to_string(),
        subject_event_id: l.subject_event_id.to_string(),
        contributor_id: &l.contributor_id,
        reviewer: &l.reviewer,
        decision: l.decision.name(),
        reason: l.reason.as_deref(),
        queue: l.queue.name(),
        labelled_at: micros(l.labelled_at),
        received_at: micros(r.record.received_at),
        kafka_partition: r.record.source.partition,
        kafka_offset: r.record.offset.0,
        day: r.day(),
    })
}

#[derive(Serialize)]
struct MarketEventRow<'a> {
    event_id: String,
    actor: &'a str,
    action: &'static str,
    listing_id: Option<&'a str>,
    contributor_id: Option<&'a str>,
    buyer: Option<&'a str>,
    price: Option<u64>,
    purchase_id: Option<String>,
    occurred_at: i64,
    received_at: i64,
    kafka_partition: i32,
    kafka_offset: i64,
    payload: std::borrow::Cow<'a, str>,
    day: String,
}

fn market_row(r: &LakeRecord) -> Option<MarketEventRow<'_>> {
    let Body::Market(e) = &r.body else { return None };
    let (contributor_id, buyer, price, purchase_id) = match &e.action {
        MarketAction::Grant { contributor_id, .. }
        | MarketAction::Revoke { contributor_id, .. }
        | MarketAction::LinkAddress { contributor_id, .. } => (Some(contributor_id.as_str()), None, None, None),
        MarketAction::Purchase { purchase_id, buyer, price, .. } => {
            (None, Some(buyer.as_str()), Some(*price), Some(purchase_id.to_string()))
        }
        MarketAction::PublishListing { listing } => (None, None, Some(listing.price), None),
        MarketAction::ConfirmPayment { purchase_id, .. } => (None, None, None, Some(purchase_id.to_string())),
        MarketAction::WithdrawListing { .. } => (None, None, None, None),
    };
    Some(MarketEventRow {
        event_id: e.event_id.to_string(),
        actor: &e.actor,
        action: e.action_name(),
        listing_id: e.listing_id(),
        contributor_id,
        buyer,
        price,
        purchase_id,
        occurred_at: micros(e.occurred_at),
        received_at: micros(r.record.received_at),
        kafka_partition: r.record.source.partition,
        kafka_offset: r.record.offset.0,
        payload: text(&r.record.payload),
        day: r.day(),
    })
}

#[derive(Serialize)]
struct QualityScoreRow<'a> {
    event_id: String,
    contributor_id: &'a str,
    subject_event_id: String,
    subject_kind: &'static str,
    scorer_version: &'a str,
    score: f64,
    verdict: &'static str,
    realism: Option<f64>,
    originality: Option<f64>,
    diversity: Option<f64>,
    behaviour: Option<f64>,
    reasons: &'a [ScoreReason],
    language: Option<&'a str>,
    occurred_at: i64,
    received_at: i64,
    scored_at: i64,
    source_topic: &'a str,
    source_partition: i32,
    source_offset: i64,
    model_id: Option<&'a str>,
    model_sha256: Option<&'a str>,
    decode_ms: Option<f64>,
    preprocess_ms: Option<f64>,
    inference_ms: Option<f64>,
    validator: Option<&'a str>,
    consensus_replicas: Option<u32>,
    consensus_agreement: Option<f64>,
    consensus_votes: Option<&'a [ValidatorVote]>,
    day: String,
}

fn score_row(r: &LakeRecord) -> Option<QualityScoreRow<'_>> {
    let (Body::Score(s) | Body::Vote(s)) = &r.body else { return None };
    Some(QualityScoreRow {
        event_id: s.event_id.to_string(),
        contributor_id: &s.contributor_id,
        subject_event_id: s.subject_event_id.to_string(),
        subject_kind: s.subject_kind.name(),
        scorer_version: &s.scorer_version,
        score: s.score,
        verdict: s.verdict.name(),
        realism: s.sub_scores.realism,
        originality: s.sub_scores.originality,
        diversity: s.sub_scores.diversity,
        behaviour: s.sub_scores.behaviour,
        reasons: &s.reasons,
        language: s.language.as_deref(),
        occurred_at: micros(s.occurred_at),
        received_at: micros(r.record.received_at),
        scored_at: micros(s.scored_at),
        source_topic: &s.source.topic,
        source_partition: s.source.partition,
        source_offset: s.source.offset,
        model_id: s.model.as_ref().map(|m| m.id.as_str()),
        model_sha256: s.model.as_ref().map(|m| m.sha256.as_str()),
        decode_ms: s.timings.map(|t| t.decode_ms),
        preprocess_ms: s.timings.map(|t| t.preprocess_ms),
        inference_ms: s.timings.map(|t| t.inference_ms),
        validator: s.validator.as_deref(),
        consensus_replicas: s.consensus.as_ref().map(|c| c.replicas),
        consensus_agreement: s.consensus.as_ref().map(|c| c.agreement),
        consensus_votes: s.consensus.as_ref().map(|c| c.votes.as_slice()),
        day: r.day(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use gata_contract::{ChatTurn, Limits, LogRecord, Preference, QualityScore, topics::Feed};

    use super::*;
    use crate::{Offset, TopicPartition};
    use gata_contract::topics::intake_topic;
    use gata_infra::workload::Workload;

    /// Decoded records of a seeded workload, as the sink would see them.
    pub(crate) fn records(turns: usize, images: usize) -> Vec<LakeRecord> {
        Workload::new(3, 20)
            .events(turns, images)
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let kind = e.kind();
                let record = LogRecord {
                    source: TopicPartition::new(intake_topic(kind), 0),
                    offset: Offset(i as i64),
                    received_at: Utc::now(),
                    payload: e.to_json(),
                };
                LakeRecord::decode(Feed::Intake(kind), record, &Limits::default()).expect("workload events are valid")
            })
            .collect()
    }

    // The serde rows the column builders of `events`, `chat_turns` and `preferences` replaced:
    // the reference they must match value for value.
    #[derive(Serialize)]
    struct EventRow<'a> {
        event_id: String,
        contributor_id: &'a str,
        occurred_at: i64,
        received_at: i64,
        kafka_topic: &'a str,
        kafka_partition: i32,
        kafka_offset: i64,
        payload: std::borrow::Cow<'a, str>,
        event_type: &'static str,
        submitted_by: Option<&'a str>,
        day: String,
    }

    #[derive(Serialize)]
    struct ChatTurnRow<'a> {
        event_id: String,
        contributor_id: &'a str,
        session_id: Option<&'a str>,
        turn_id: &'a str,
        occurred_at: i64,
        received_at: i64,
        prompt: &'a str,
        responses: &'a [ModelResponse],
        client: Option<&'a ClientInfo>,
        submitted_by: Option<&'a str>,
        signature: Option<&'a str>,
        day: String,
    }

    #[derive(Serialize)]
    struct PreferenceRow<'a> {
        event_id: String,
        contributor_id: &'a str,
        session_id: Option<&'a str>,
        turn_id: &'a str,
        occurred_at: i64,
        received_at: i64,
        chosen_response_id: Option<&'a str>,
        rejected_response_ids: &'a [String],
        all_bad: bool,
        rating: Option<u8>,
        reason: Option<&'a str>,
        submitted_by: Option<&'a str>,
        signature: Option<&'a str>,
        day: String,
    }

    fn event_row(r: &LakeRecord) -> Option<EventRow<'_>> {
        let event = r.event()?;
        Some(EventRow {
            event_id: event.event_id().to_string(),
            contributor_id: event.contributor_id(),
            occurred_at: micros(event.occurred_at()),
            received_at: micros(r.record.received_at),
            kafka_topic: &r.record.source.topic,
            kafka_partition: r.record.source.partition,
            kafka_offset: r.record.offset.0,
            payload: String::from_utf8_lossy(&r.record.payload),
            event_type: event.kind().name(),
            submitted_by: event.submitted_by(),
            day: r.day(),
        })
    }

    fn chat_turn_row(r: &LakeRecord) -> Option<ChatTurnRow<'_>> {
        let Event::ChatTurn(ChatTurn {
            event_id,
            contributor_id,
            session_id,
            turn_id,
            occurred_at,
            prompt,
            responses,
            client,
            submitted_by,
            signature,
        }) = r.event()?
        else {
            return None;
        };
        Some(ChatTurnRow {
            event_id: event_id.to_string(),
            contributor_id,
            session_id: session_id.as_deref(),
            turn_id,
            occurred_at: micros(*occurred_at),
            received_at: micros(r.record.received_at),
            prompt,
            responses,
            client: client.as_ref(),
            submitted_by: submitted_by.as_deref(),
            signature: signature.as_deref(),
            day: r.day(),
        })
    }

    fn preference_row(r: &LakeRecord) -> Option<PreferenceRow<'_>> {
        let Event::Preference(p) = r.event()? else { return None };
        let Preference {
            event_id,
            contributor_id,
            session_id,
            turn_id,
            occurred_at,
            chosen_response_id,
            rejected_response_ids,
            all_bad,
            rating,
            reason,
            submitted_by,
            signature,
        } = p;
        Some(PreferenceRow {
            event_id: event_id.to_string(),
            contributor_id,
            session_id: session_id.as_deref(),
            turn_id,
            occurred_at: micros(*occurred_at),
            received_at: micros(r.record.received_at),
            chosen_response_id: chosen_response_id.as_deref(),
            rejected_response_ids,
            all_bad: *all_bad,
            rating: *rating,
            reason: reason.as_deref(),
            submitted_by: submitted_by.as_deref(),
            signature: signature.as_deref(),
            day: r.day(),
        })
    }

    #[test]
    fn built_columns_match_the_serde_rows_they_replaced() {
        let mut recs = records(24, 0);
        for (i, r) in recs.iter_mut().enumerate() {
            if i % 3 == 0 {
                r.record.received_at -= chrono::Duration::days(1);
            }
            let Body::Submission { event, .. } = &mut r.body else { continue };
            match event {
                Event::ChatTurn(t) if i % 2 == 0 => {
                    (t.client, t.session_id) = (None, None);
                    (t.submitted_by, t.signature) = (Some("relay-1".into()), Some("c2ln".into()));
                    t.responses[0].latency_ms = None;
                }
                Event::Preference(p) if i % 2 == 0 => {
                    (p.chosen_response_id, p.rating, p.reason) = (None, None, None);
                    p.rejected_response_ids.clear();
                    (p.submitted_by, p.signature) = (Some("relay-1".into()), Some("c2ln".into()));
                }
                _ => {}
            }
        }
        let refs: Vec<&LakeRecord> = recs.iter().collect();
        let built = events(&refs).expect("events");
        assert_eq!(
            built,
            serialize(TableId::Events, &refs.iter().filter_map(|r| event_row(r)).collect::<Vec<_>>()).expect("serde")
        );
        let turns = chat_turns(&refs).expect("chat turns");
        let reference = refs.iter().filter_map(|r| chat_turn_row(r)).collect::<Vec<_>>();
        assert_eq!(turns, serialize(TableId::ChatTurns, &reference).expect("serde"));
        let prefs = preferences(&refs).expect("preferences");
        let reference = refs.iter().filter_map(|r| preference_row(r)).collect::<Vec<_>>();
        assert_eq!(prefs, serialize(TableId::Preferences, &reference).expect("serde"));

        // The records above cover what the builders treat apart: nulls, empty lists, two days.
        let nulls = |b: &RecordBatch, c: &str| b.column_by_name(c).expect(c).null_count();
        assert!(nulls(&turns, "client") > 0 && nulls(&turns, "client") < turns.num_rows());
        assert!(nulls(&prefs, "chosen_response_id") > 0 && nulls(&prefs, "signature") < prefs.num_rows());
        let days = built.column_by_name("day").expect("day");
        let days = days.as_any().downcast_ref::<deltalake::arrow::array::StringArray>().expect("utf8");
        assert!(days.iter().collect::<std::collections::BTreeSet<_>>().len() == 2, "two days");
        let rejected = prefs.column_by_name("rejected_response_ids").expect("list");
        let rejected = rejected.as_any().downcast_ref::<deltalake::arrow::array::ListArray>().expect("list");
        assert!((0..prefs.num_rows()).any(|i| rejected.value_length(i) == 0));
        assert!((0..prefs.num_rows()).any(|i| rejected.value_length(i) > 0));
    }

    #[test]
    fn every_table_gets_its_rows_with_its_schema() {
        let recs = records(10, 4);
        let refs: Vec<_> = recs.iter().collect();
        for table in TableId::ALL {
            let batch = record_batch(table, &refs).expect("rows build");
            assert_eq!(batch.schema(), table.schema());
            let expected = match table {
                TableId::Events => recs.len(),
                TableId::DeadLetters | TableId::Rewards => 0,
                t => recs.iter().filter(|r| r.silver() == t).count(),
            };
            assert_eq!(batch.num_rows(), expected, "{}", table.name());
        }
    }

    #[test]
    fn scores_become_rows_with_their_reasons() {
        use gata_contract::{EventKind, LogPosition, SubScores, Verdict};
        let subject = uuid::Uuid::now_v7();
        let score = QualityScore {
            event_id: QualityScore::id_for("text-1.0.0", subject),
            contributor_id: "alice".into(),
            subject_event_id: subject,
            subject_kind: EventKind::Preference,
            scorer_version: "text-1.0.0".into(),
            score: 0.25,
            verdict: Verdict::Reject,
            sub_scores: SubScores { behaviour: Some(0.2), ..SubScores::default() },
            reasons: vec![ScoreReason { code: "too_fast_to_read".into(), penalty: 0.8, detail: "0.4s".into() }],
            language: None,
            occurred_at: Utc::now(),
            scored_at: Utc::now(),
            source: LogPosition { topic: "gata.preferences.v1".into(), partition: 1, offset: 9 },
            model: None,
            timings: None,
            validator: None,
            consensus: None,
        };
        let record = LogRecord {
            source: TopicPartition::new(gata_contract::topics::QUALITY_SCORES, 0),
            offset: Offset(0),
            received_at: Utc::now(),
            payload: score.to_json(),
        };
        let rec = LakeRecord::decode(Feed::QualityScores, record, &Limits::default()).expect("valid score");
        assert_eq!(rec.silver(), TableId::QualityScores);
        let batch = record_batch(TableId::QualityScores, &[&rec]).expect("rows");
        assert_eq!((batch.num_rows(), batch.schema()), (1, TableId::QualityScores.schema()));
        assert_eq!(record_batch(TableId::Events, &[&rec]).expect("rows").num_rows(), 0, "scores are not bronze events");
        let verdict = batch.column_by_name("verdict").expect("verdict");
        assert_eq!(
            verdict.as_any().downcast_ref::<deltalake::arrow::array::StringArray>().expect("utf8").value(0),
            "reject"
        );
        let realism = batch.column_by_name("realism").expect("realism");
        assert!(realism.is_null(0), "unmeasured sub-scores are null");

        // The same judgement as a DVA worker's vote: only on the votes topic, into dva_votes.
        let vote = QualityScore { validator: Some("worker-a".into()), ..score };
        let vote = QualityScore { event_id: vote.expected_id(), ..vote };
        let decode = |feed: Feed, s: &QualityScore| {
            let tp = TopicPartition::new(feed.topic(), 0);
            let record = LogRecord { source: tp, offset: Offset(1), received_at: Utc::now(), payload: s.to_json() };
            LakeRecord::decode(feed, record, &Limits::default())
        };
        let refused = decode(Feed::QualityScores, &vote).expect_err("a vote on the scores topic");
        assert_eq!(refused[0].field, "validator");
        let rec = decode(Feed::DvaVotes, &vote).expect("a vote");
        assert_eq!(rec.silver(), TableId::DvaVotes);
        assert_eq!(record_batch(TableId::DvaVotes, &[&rec]).expect("rows").num_rows(), 1);
        assert_eq!(record_batch(TableId::QualityScores, &[&rec]).expect("rows").num_rows(), 0);
    }

    #[test]
    fn dead_letters_keep_their_raw_bytes_and_reason() {
        let record = LogRecord {
            source: TopicPartition::new("gata.chat_turns.v1", 2),
            offset: Offset(7),
            received_at: Utc::now(),
            payload: vec![0xff, b'{'],
        };
        let letter = DeadLetter { record, reason: "malformed JSON".into() };
        let batch = dead_letter_batch(&[&letter]).expect("rows");
        assert_eq!(batch.num_rows(), 1);
        let payload = batch.column_by_name("payload").expect("payload column");
        let payload = payload.as_any().downcast_ref::<deltalake::arrow::array::BinaryArray>().expect("binary");
        assert_eq!(payload.value(0), [0xff, b'{']);
    }

    #[test]
    fn invalid_records_are_refused_with_reasons() {
        let err = Body::decode(Feed::Intake(gata_contract::EventKind::ChatTurn), b"{\"x\":1}", &Limits::default())
            .expect_err("not a turn");
        assert!(!err.is_empty());
    }
}
