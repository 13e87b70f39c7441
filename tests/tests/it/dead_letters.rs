//! Records that reach the intake topics without going through intake (another producer, a
//! bug, a corrupted client) are not dropped: they go to the dead-letter topic with the reason,
//! and the sink carries on.

use std::time::Duration;

use gata_contract::topics::{DEAD_LETTERS, DLQ_REASON, DLQ_SOURCE_TOPIC};
use gata_infra::kafka::KafkaClients;
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

    // The same dead letters, queryable in the lake with their coordinates, bytes and reasons.
    let rows = eventually("two rows in dead_letters", Duration::from_secs(30), || async {
        let rows = api
            .rows("SELECT kafka_topic, kafka_offset, reason, payload FROM dead_letters ORDER BY reason")
            .await
            .ok()?;
        (rows.len() == 2).then_some(rows)
    })
    .await;
    assert!(rows.iter().all(|r| r["kafka_topic"] == "gata.chat_turns.v1"), "{rows:?}");
    assert!(rows[0]["reason"].as_str().unwrap().contains("malformed JSON"), "{rows:?}");
    assert_eq!(rows[0]["payload"], serde_json::json!(hex_of(b"{not json")));
    assert!(rows[1]["reason"].as_str().unwrap().contains("missing field"), "{rows:?}");
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_replay_after_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let port = gata_tests::free_port();
    let turn = example("chat_turn");
    {
        // A sink whose limits are too strict for the example turn's prompt.
        let strict = [("GATA__INGEST__LIMITS__MAX_TEXT_BYTES", "40")];
        let gata = Gata::start_on(bin(), dir.path(), port, &strict).await.unwrap();
        let kafka = KafkaClients::new(gata.kafka_bootstrap().expect("printed Kafka address"));
        let producer: FutureProducer = kafka.producer(Duration::from_secs(10)).create().unwrap();
        let payload = turn.to_string();
        let record = FutureRecord::to("gata.chat_turns.v1").key("ctr_7Hq2mZ").payload(&payload);
        producer.send(record, Duration::from_secs(10)).await.unwrap();
        let api = gata.client();
        eventually("the turn in dead_letters", Duration::from_secs(60), || async {
            (api.count("SELECT COUNT(*) AS n FROM dead_letters WHERE reason LIKE 'prompt:%'").await.ok()? == 1)
                .then_some(())
        })
        .await;
    } // killed; restarted below with the default limits: the fix.
    let gata = Gata::start_on(bin(), dir.path(), port, &[]).await.unwrap();
    let api = gata.client();
    assert_eq!(api.count("SELECT COUNT(*) AS n FROM chat_turns").await.unwrap(), 0);
    let out = std::process::Command::new(bin())
        .args(["dlq", "replay", "--data-dir"])
        .arg(dir.path())
        .args(["--brokers", &gata.kafka_bootstrap().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["replayed"], 1, "{report}");
    let event_id = turn["event_id"].as_str().unwrap().to_string();
    eventually("the replayed turn in chat_turns", Duration::from_secs(60), || async {
        let rows = api.rows("SELECT event_id FROM chat_turns").await.ok()?;
        (rows.len() == 1 && rows[0]["event_id"] == event_id).then_some(())
    })
    .await;
}
