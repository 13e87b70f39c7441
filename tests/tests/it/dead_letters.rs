//! Records that reach the intake topics without going through intake (another producer, a
//! bug, a corrupted client) are not dropped: they go to the dead-letter topic with the reason,
//! and the sink carries on.

use std::time::Duration;

use gata_infra::{
    kafka::KafkaClients,
    topics::{DEAD_LETTERS, DLQ_REASON, DLQ_SOURCE_TOPIC},
};
use gata_tests::{Gata, eventually, example};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    message::Headers,
    producer::{FutureProducer, FutureRecord},
};

use crate::bin;

#[tokio::test(flavor = "multi_thread")]
async fn undecodable_records_are_dead_lettered_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let gata = Gata::start(bin(), dir.path()).await.unwrap();
    let api = gata.client();
    let kafka = KafkaClients::new(gata.kafka_bootstrap().expect("printed Kafka address"));

    let producer: FutureProducer = kafka.producer(Duration::from_secs(10)).create().unwrap();
    for (key, payload) in [("ctr_x", &b"{not json"[..]), ("ctr_y", br#"{"contributor_id":"ctr_y"}"#)] {
        producer
            .send(FutureRecord::to("gata.chat_turns.v1").key(key).payload(payload), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let (s, _) = api.post("/v1/chat-turns", "application/json", example("chat_turn").to_string()).await.unwrap();
    assert_eq!(s, 202);
    eventually("the good event after the bad ones", Duration::from_secs(60), || async {
        (api.count("SELECT COUNT(*) AS n FROM chat_turns").await.ok()? == 1).then_some(())
    })
    .await;

    let consumer: StreamConsumer = kafka.consumer("dlq-reader").create().unwrap();
    consumer.subscribe(&[DEAD_LETTERS]).unwrap();
    let mut letters = Vec::new();
    while letters.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("dead letters within 30 s")
            .unwrap();
        let headers = msg.headers().expect("dead letters carry headers");
        let header = |name: &str| {
            headers.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).to_string())
        };
        assert_eq!(header(DLQ_SOURCE_TOPIC).as_deref(), Some("gata.chat_turns.v1"));
        letters.push((msg.payload().unwrap_or_default().to_vec(), header(DLQ_REASON).unwrap_or_default()));
    }
    // Different keys, different partitions: no order between the two.
    letters.sort();
    assert_eq!(letters[1].0, b"{not json");
    assert!(letters[1].1.contains("malformed JSON"), "{}", letters[1].1);
    assert_eq!(letters[0].0, br#"{"contributor_id":"ctr_y"}"#);
    assert!(letters[0].1.contains("missing field"), "{}", letters[0].1);
    assert_eq!(api.count("SELECT COUNT(*) AS n FROM events").await.unwrap(), 1, "bad records reached bronze");
}
