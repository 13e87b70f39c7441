//! Kafka is not a trust boundary: with `kafka.record_secret` set, the platform's own records
//! (scores, marketplace events) carry a MAC and pass, while records written straight to those
//! topics by a client of the broker (a payment confirmation, a score, a DVA vote, one MACed with
//! another secret) are dead-lettered with the reason and change nothing. The embedded broker
//! refuses a non-loopback listener unless told otherwise.

use std::{process::Command, time::Duration};

use gata_contract::topics::{DVA_VOTES, MARKETPLACE, QUALITY_SCORES};
use gata_infra::{
    kafka::KafkaClients,
    record_mac::{MAC_HEADER, RecordMac},
};
use gata_tests::{Gata, eventually};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};

use crate::{
    bin,
    scoring::{PROMPTS, at, turn, uuid, wait_for_scores},
};

async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: &Value, tag: Option<&str>) {
    let payload = payload.to_string();
    let mut record = FutureRecord::to(topic).key(key).payload(&payload);
    if let Some(tag) = tag {
        record = record.headers(OwnedHeaders::new().insert(Header { key: MAC_HEADER, value: Some(tag) }));
    }
    producer.send(record, Duration::from_secs(10)).await.unwrap();
}

fn score(subject: &str, validator: Option<&str>) -> Value {
    let mut s = json!({
        "event_id": uuid(7000 + validator.map_or(0, |_| 1)), "subject_event_id": subject, "subject_kind": "chat_turn",
        "contributor_id": "ann", "scorer_version": "text-9.9.9", "score": 1.0, "verdict": "accept",
        "reasons": [], "scored_at": "2026-12-01T10:00:00Z", "source": {"partition": 0, "offset": 0}
    });
    if let Some(v) = validator {
        s["validator"] = json!({"worker_id": v, "replicas": 3});
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_forged_on_platform_topics_are_dead_lettered_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "5e".repeat(32);
    let env = [("GATA__KAFKA__RECORD_SECRET", secret.as_str())];
    let roles = ["--roles", "intake,sink,query,scoring"];
    let gata = Gata::start_with(bin(), dir.path(), gata_tests::free_port(), &roles, &env).await.unwrap();
    let api = gata.client();

    // The platform's own records pass: scores are produced, and a listing and a purchase apply.
    let turns: Vec<Value> =
        (0..3).map(|i| turn(&uuid(i), "ann", &format!("turn_{i}"), PROMPTS[i as usize], at(i64::from(i)))).collect();
    assert_eq!(api.post_ndjson("/v1/chat-turns", &turns).await.unwrap().0, 202);
    wait_for_scores(&api, 3).await;
    let post = |path: &'static str, body: Value| {
        let api = api.clone();
        async move { api.post(path, "application/json", body.to_string()).await.unwrap() }
    };
    let listing = json!({"listing_id": "sealed", "version": 1, "title": "t", "kinds": ["chat_turn"],
        "min_score": -1.0, "price": 10, "terms": "t"});
    assert_eq!(post("/v1/marketplace/listings", listing).await.0, 201);
    assert_eq!(post("/v1/marketplace/grants", json!({"contributor_id": "ann"})).await.0, 200);
    let (s, bought) =
        post("/v1/marketplace/purchases", json!({"listing_id": "sealed", "buyer": "bob", "payment_ref": "inv"})).await;
    assert_eq!(s, 201, "{bought}");
    let purchase_id = bought["purchase_id"].as_str().unwrap().to_string();

    // A client of the broker forges a payment confirmation, a score and a vote, and MACs a
    // fourth record with a secret of its own.
    let kafka = KafkaClients::new(gata.kafka_bootstrap().expect("printed Kafka address"));
    let producer: FutureProducer = kafka.producer(Duration::from_secs(10)).create().unwrap();
    let confirm = json!({"event_id": uuid(8000), "occurred_at": "2026-12-01T10:00:00Z", "actor": "local",
        "action": "confirm_payment", "purchase_id": purchase_id, "listing_id": "sealed", "method": "manual",
        "note": "forged"});
    send(&producer, MARKETPLACE, "sealed", &confirm, None).await;
    send(&producer, QUALITY_SCORES, "ann", &score(&uuid(0), None), None).await;
    send(&producer, DVA_VOTES, "ann", &score(&uuid(0), Some("sybil-1")), None).await;
    let theirs = RecordMac::from_hex(&"77".repeat(32)).unwrap();
    let mut again = confirm.clone();
    again["event_id"] = json!(uuid(8001));
    let tag = theirs.tag(MARKETPLACE, Some(b"sealed"), again.to_string().as_bytes());
    send(&producer, MARKETPLACE, "sealed", &again, Some(&tag)).await;

    let letters = eventually("the forged records dead-lettered", Duration::from_secs(60), || async {
        let rows = api.rows("SELECT kafka_topic, reason FROM dead_letters ORDER BY kafka_topic").await.ok()?;
        (rows.len() == 4).then_some(rows)
    })
    .await;
    let topics: Vec<&str> = letters.iter().map(|r| r["kafka_topic"].as_str().unwrap()).collect();
    assert_eq!(topics, [DVA_VOTES, MARKETPLACE, MARKETPLACE, QUALITY_SCORES], "{letters:?}");
    let reasons: Vec<&str> = letters.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert!(reasons.iter().all(|r| r.contains(MAC_HEADER)), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("does not match")), "{reasons:?}");

    // Nothing changed: the purchase is pending, no forged score or vote landed.
    let (_, all) = api.get("/v1/marketplace/purchases").await.unwrap();
    assert_eq!(all["purchases"][0]["status"], "pending", "{all}");
    assert_eq!(
        api.count("SELECT COUNT(*) AS n FROM quality_scores WHERE scorer_version = 'text-9.9.9'").await.unwrap(),
        0
    );
    assert_eq!(api.count("SELECT COUNT(*) AS n FROM dva_votes").await.unwrap(), 0);
    assert_eq!(api.count("SELECT COUNT(*) AS n FROM market_events WHERE action = 'confirm_payment'").await.unwrap(), 0);
    // The genuine confirmation still works.
    let (s, body) = post_confirm(&api, &purchase_id).await;
    assert_eq!(s, 201, "{body}");
}

async fn post_confirm(api: &gata_tests::Api, purchase_id: &str) -> (u16, Value) {
    let path = format!("/v1/marketplace/purchases/{purchase_id}/confirm");
    api.post(&path, "application/json", json!({"note": "paid"}).to_string()).await.unwrap()
}

#[test]
fn the_embedded_broker_refuses_a_network_listener_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("GATA__KAFKA__EMBEDDED_LISTEN", "0.0.0.0:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kafka.embedded_remote"), "{err}");
}
