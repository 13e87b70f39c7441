//! Kafka is not a trust boundary: records on the topics only the platform writes (quality
//! scores, DVA votes, the marketplace, review labels) carry an HMAC-SHA256 of their topic, key and payload
//! (`gata-mac` header), made with `kafka.record_secret`. Consumers given the same secret refuse
//! records without a valid one (the sink dead-letters them, the other consumers skip them), so a
//! client that can write to the broker cannot forge a score, a vote, a grant or a payment
//! confirmation.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use gata_contract::topics::{DVA_VOTES, MARKETPLACE, QUALITY_SCORES, REVIEW_LABELS};

/// The header holding a record's MAC (hex).
pub const MAC_HEADER: &str = "gata-mac";

/// Whether only the platform writes `topic`, so its records must carry a MAC.
pub fn is_platform_topic(topic: &str) -> bool {
    [QUALITY_SCORES, DVA_VOTES, MARKETPLACE, REVIEW_LABELS].contains(&topic)
}

/// Makes and checks record MACs with the platform's secret.
#[derive(Clone)]
pub struct RecordMac {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for RecordMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordMac(..)")
    }
}

impl RecordMac {
    /// The MAC for a secret given as hex of at least 32 bytes; none otherwise.
    pub fn from_hex(secret: &str) -> Option<RecordMac> {
        let key = hex::decode(secret.trim()).ok().filter(|k| k.len() >= 32)?;
        Some(RecordMac { key: key.into() })
    }

    fn mac(&self, topic: &str, key: Option<&[u8]>, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        // Lengths first, so no two (topic, key, payload) triples share their bytes.
        let key = key.unwrap_or_default();
        for part in [topic.as_bytes(), key, payload] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The header value for a record of `topic` with `key` and `payload`.
    pub fn tag(&self, topic: &str, key: Option<&[u8]>, payload: &[u8]) -> String {
        hex::encode(self.mac(topic, key, payload).finalize().into_bytes())
    }

    /// `headers` with the MAC header of a record of `topic` with `key` and `payload` added.
    pub fn signed(
        &self,
        headers: rdkafka::message::OwnedHeaders,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> rdkafka::message::OwnedHeaders {
        let tag = self.tag(topic, Some(key), payload);
        headers.insert(rdkafka::message::Header { key: MAC_HEADER, value: Some(tag.as_str()) })
    }

    /// Checks a record's header value (`tag`); why not, if it does not match.
    pub fn check(&self, topic: &str, key: Option<&[u8]>, payload: &[u8], tag: Option<&[u8]>) -> Result<(), String> {
        let tag = tag.ok_or_else(|| format!("no {MAC_HEADER} header: not written by the platform"))?;
        let tag = hex::decode(tag).map_err(|_| format!("{MAC_HEADER} is not hex"))?;
        self.mac(topic, key, payload)
            .verify_slice(&tag)
            .map_err(|_| format!("{MAC_HEADER} does not match: forged or altered"))
    }
}

/// Produces `payload` keyed by `key` to `topic`, with its MAC header when `mac` is given, and
/// waits for the acknowledgement (at most `queue_timeout` for room in the producer's queue).
pub async fn send_signed(
    producer: &rdkafka::producer::FutureProducer,
    mac: Option<&RecordMac>,
    topic: &str,
    key: &str,
    payload: &[u8],
    queue_timeout: std::time::Duration,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut record = rdkafka::producer::FutureRecord::to(topic).key(key).payload(payload);
    if let Some(mac) = mac {
        record = record.headers(mac.signed(rdkafka::message::OwnedHeaders::new(), topic, key.as_bytes(), payload));
    }
    producer.send(record, queue_timeout).await.map(|_| ()).map_err(|(e, _)| e)
}

/// Why `msg` is not the platform's own: its topic needs a MAC (and a secret is configured) and
/// it lacks a valid one. None for every other record.
pub fn forged(mac: Option<&RecordMac>, msg: &impl rdkafka::Message) -> Option<String> {
    use rdkafka::message::Headers as _;
    let mac = mac.filter(|_| is_platform_topic(msg.topic()))?;
    let tag = msg.headers().and_then(|h| h.iter().find(|h| h.key == MAC_HEADER)).and_then(|h| h.value);
    mac.check(msg.topic(), msg.key(), msg.payload().unwrap_or_default(), tag).err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_topic_key_and_payload_pass() {
        let mac = RecordMac::from_hex(&"ab".repeat(32)).expect("secret");
        let tag = mac.tag(MARKETPLACE, Some(b"listing"), b"{}");
        assert!(mac.check(MARKETPLACE, Some(b"listing"), b"{}", Some(tag.as_bytes())).is_ok());
        assert!(mac.check(DVA_VOTES, Some(b"listing"), b"{}", Some(tag.as_bytes())).is_err());
        assert!(mac.check(MARKETPLACE, Some(b"listin"), b"g{}", Some(tag.as_bytes())).is_err());
        assert!(mac.check(MARKETPLACE, Some(b"listing"), b"{}", None).unwrap_err().contains("not written"));
        let other = RecordMac::from_hex(&"cd".repeat(32)).expect("secret");
        assert!(other.check(MARKETPLACE, Some(b"listing"), b"{}", Some(tag.as_bytes())).is_err());
        assert!(RecordMac::from_hex("abcd").is_none(), "a short secret is refused");
        assert!(is_platform_topic(QUALITY_SCORES) && !is_platform_topic("gata.chat_turns.v1"));
    }
}
