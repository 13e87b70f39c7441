//! Producing validated events to their intake topic and waiting for the broker's
//! acknowledgement.

use std::time::Duration;

use futures::future::join_all;
use gata_contract::{
    Event,
    topics::{SCHEMA_HEADER, intake_topic},
};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use serde::Serialize;

use crate::IngestError;

/// Where the log put one event.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Receipt {
    /// The event's id.
    pub event_id: String,
    /// The partition of its intake topic.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

/// The answer to an accepted submission: one receipt per event, in the order sent.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Receipts {
    /// How many events were accepted.
    pub accepted: usize,
    /// Where each landed.
    pub events: Vec<Receipt>,
}

/// Sends every event (keyed by contributor) and waits until all are acknowledged or
/// `timeout` passes. Events sent before a failure stay in the log; a client retry with the same
/// ids is deduplicated downstream.
pub(crate) async fn produce_all(
    producer: &FutureProducer,
    events: &[Event],
    timeout: Duration,
) -> Result<Vec<Receipt>, IngestError> {
    let total = events.len();
    let unavailable = |failed: usize, reason: String| IngestError::Unavailable { failed, total, reason };
    let payloads: Vec<(Vec<u8>, String)> = events.iter().map(|e| (e.to_json(), e.kind().schema_name())).collect();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut pending = Vec::with_capacity(total);
    for (event, (payload, schema)) in events.iter().zip(&payloads) {
        let record = FutureRecord::to(intake_topic(event.kind()))
            .key(event.contributor_id())
            .payload(payload.as_slice())
            .timestamp(now_ms)
            .headers(OwnedHeaders::new().insert(Header { key: SCHEMA_HEADER, value: Some(schema.as_str()) }));
        match producer.send_result(record) {
            Ok(delivery) => pending.push(delivery),
            Err((err, _)) => return Err(unavailable(total - pending.len(), format!("producer queue: {err}"))),
        }
    }
    let acks = tokio::time::timeout(timeout, join_all(pending))
        .await
        .map_err(|_| unavailable(total, format!("no acknowledgement within {timeout:?}")))?;
    let mut receipts = Vec::with_capacity(total);
    let mut failures = Vec::new();
    for (event, ack) in events.iter().zip(acks) {
        match ack {
            Ok(Ok(d)) => receipts.push(Receipt {
                event_id: event.event_id().to_string(),
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Err((err, _))) => failures.push(err.to_string()),
            Err(_) => failures.push("producer was shut down".to_string()),
        }
    }
    match failures.first() {
        None => Ok(receipts),
        Some(first) => Err(unavailable(failures.len(), first.clone())),
    }
}
