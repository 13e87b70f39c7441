//! Publishing score events (or DVA votes) with a bounded number of deliveries in flight.
//!
//! Records are handed to the producer as soon as they are published (librdkafka batches and
//! sends them); their acknowledgements are taken in order. A delivery that fails is retried
//! with back-off; one that keeps failing stops the processor
//! (nothing is marked done, so after a restart the submission is scored and published again,
//! under the same event id).

use std::{future::Future, pin::Pin, time::Duration};

use futures::{FutureExt, StreamExt, stream::FuturesOrdered};
use gata_contract::QualityScore;
use gata_infra::record_mac::RecordMac;
use gata_lakehouse::{Offset, TopicPartition};
use rdkafka::{
    error::KafkaError,
    message::OwnedHeaders,
    producer::{FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
};

use crate::{ProcessorError, Result, poller::CommittedPositions};

/// Attempts per score event before the processor gives up.
const ATTEMPTS: u32 = 5;
/// How long one attempt may wait for a place in the producer queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// A record of `topic`, with its headers (the MAC) when there are some.
fn record<'a>(
    topic: &'a str,
    key: &'a String,
    payload: &'a Vec<u8>,
    headers: Option<&OwnedHeaders>,
) -> FutureRecord<'a, String, Vec<u8>> {
    let record = FutureRecord::to(topic).key(key).payload(payload);
    match headers {
        Some(headers) => record.headers(headers.clone()),
        None => record,
    }
}

type Delivery = Pin<Box<dyn Future<Output = (TopicPartition, Offset, Result<()>)> + Send>>;

/// Publishes score events on one topic.
pub(crate) struct Publisher {
    producer: FutureProducer,
    topic: &'static str,
    mac: Option<RecordMac>,
    in_flight: FuturesOrdered<Delivery>,
    window: usize,
    done: CommittedPositions,
}

impl Publisher {
    /// A publisher to `topic` keeping at most `window` deliveries in flight, recording in `done`
    /// the source positions whose scores were acknowledged; each record carries its MAC when
    /// `mac` is given.
    pub(crate) fn new(
        producer: FutureProducer,
        topic: &'static str,
        mac: Option<RecordMac>,
        window: usize,
        done: CommittedPositions,
    ) -> Self {
        Self { producer, topic, mac, in_flight: FuturesOrdered::new(), window: window.max(1), done }
    }

    /// Hands `score` (of the submission at `source`/`offset`) to the producer at once; waits
    /// while the window or the producer's queue is full.
    pub(crate) async fn publish(&mut self, score: &QualityScore, source: TopicPartition, offset: Offset) -> Result<()> {
        self.settle_ready()?;
        while self.in_flight.len() >= self.window {
            self.settle_one().await?;
        }
        let (key, payload) = (score.contributor_id.clone(), score.to_json());
        let (subject, topic) = (score.subject_event_id, self.topic);
        let headers = self.mac.as_ref().map(|m| m.signed(OwnedHeaders::new(), topic, key.as_bytes(), &payload));
        let first = loop {
            match self.producer.send_result(record(topic, &key, &payload, headers.as_ref())) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) if !self.in_flight.is_empty() => {
                    self.settle_one().await?;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((err, _)) => return Err(publish_error(topic, subject, &err)),
            }
        };
        let producer = self.producer.clone();
        self.in_flight.push_back(Box::pin(async move {
            let mut outcome = match first.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((err, _))) => Err(err),
                Err(_) => Err(KafkaError::Canceled),
            };
            let mut attempt = 1;
            while let Err(err) = &outcome {
                if attempt >= ATTEMPTS {
                    return (source, offset, Err(publish_error(topic, subject, err)));
                }
                tracing::warn!(%subject, attempt, error = %err, "score not acknowledged; retrying");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                attempt += 1;
                let again = record(topic, &key, &payload, headers.as_ref());
                outcome = producer.send(again, QUEUE_TIMEOUT).await.map(|_| ()).map_err(|(err, _)| err);
            }
            (source, offset, Ok(()))
        }));
        Ok(())
    }

    /// Takes in every delivery already acknowledged, without waiting.
    pub(crate) fn settle_ready(&mut self) -> Result<()> {
        while let Some(Some((source, offset, result))) = self.in_flight.next().now_or_never() {
            result?;
            self.mark(source, offset);
        }
        Ok(())
    }

    /// Whether no delivery is waiting for its acknowledgement.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Marks `offset` of `source` done without publishing (a record that needs no score event).
    pub(crate) fn skip(&self, source: TopicPartition, offset: Offset) {
        self.mark(source, offset);
    }

    /// Waits until every queued score is acknowledged.
    pub(crate) async fn drain(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    async fn settle_one(&mut self) -> Result<()> {
        if let Some((source, offset, result)) = self.in_flight.next().await {
            result?;
            self.mark(source, offset);
        }
        Ok(())
    }

    fn mark(&self, source: TopicPartition, offset: Offset) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let entry = done.entry(source).or_insert(offset);
        *entry = (*entry).max(offset);
    }
}

fn publish_error(topic: &'static str, subject: uuid::Uuid, err: &KafkaError) -> ProcessorError {
    ProcessorError::Publish { topic, subject: subject.to_string(), reason: err.to_string() }
}
