//! The DVA in a running platform with the shipped model on ONNX Runtime (CPU): every
//! image-text pair gets one agreement score; captions that describe their image outscore
//! captions of other scenes; each score names the model and its timings; a corrupt image gets
//! a reject with the decoder's reason and goes to the dead-letter topic.

use std::{path::PathBuf, time::Duration};

use base64::Engine as _;
use gata_infra::{
    kafka::KafkaClients,
    topics::{DEAD_LETTERS, DLQ_REASON},
};
use gata_tests::{Gata, eventually, free_port};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    message::Headers,
};
use serde_json::{Value, json};

use crate::{bin, scoring::uuid};

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny-clip")
}

fn pair(id: u32, who: &str, caption: &str, image: &[u8], content_type: &str) -> Value {
    json!({
        "event_id": uuid(id),
        "contributor_id": who,
        "occurred_at": "2026-11-24T10:00:00Z",
        "caption": caption,
        "image": {"content_type": content_type, "base64": base64::engine::general_purpose::STANDARD.encode(image)},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_pair_is_scored_by_the_model_and_corrupt_images_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir();
    let env = [("GATA__DVA__MODEL_DIR", model.to_str().unwrap()), ("GATA__DVA__BATCH_SIZE", "8")];
    let gata = Gata::start_on(bin(), dir.path(), free_port(), &env).await.unwrap();
    let api = gata.client();

    let heldout: Vec<Value> = serde_json::from_slice(&std::fs::read(model.join("heldout.json")).unwrap()).unwrap();
    let card: Value = serde_json::from_slice(&std::fs::read(model.join("model.json")).unwrap()).unwrap();
    let mut pairs = Vec::new();
    for (i, row) in heldout.iter().filter(|r| r["image"].as_str().unwrap().ends_with(".jpg")).take(12).enumerate() {
        let bytes = std::fs::read(model.join("heldout").join(row["image"].as_str().unwrap())).unwrap();
        let i = i as u32;
        pairs.push(pair(i, &format!("shooter_{i}"), row["caption"].as_str().unwrap(), &bytes, "image/jpeg"));
        pairs.push(pair(100 + i, &format!("shooter_{i}"), row["mismatched"].as_str().unwrap(), &bytes, "image/jpeg"));
    }
    // A JPEG cut in half: its header passes intake, its body cannot be decoded.
    let whole = std::fs::read(model.join("heldout").join(heldout[0]["image"].as_str().unwrap())).unwrap();
    pairs.push(pair(999, "truncator", "a red circle", &whole[..whole.len() / 2], "image/jpeg"));
    let (status, body) = api.post_ndjson("/v1/image-text-pairs", &pairs).await.unwrap();
    assert_eq!(status, 202, "{body}");

    let rows = eventually("a DVA score per pair", Duration::from_secs(120), || async {
        let rows = api
            .rows("SELECT subject_event_id, scorer_version, score, verdict, reasons, model_id, model_sha256, inference_ms FROM quality_scores WHERE subject_kind = 'image_text_pair'")
            .await
            .ok()?;
        (rows.len() >= pairs.len()).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), pairs.len(), "one score per pair");
    let score = |id: String| rows.iter().find(|r| r["subject_event_id"] == id.as_str()).unwrap().clone();
    let threshold = card["threshold"].as_f64().unwrap();
    let (mut matching, mut mismatched) = (Vec::new(), Vec::new());
    for i in 0..12 {
        for (id, into) in [(uuid(i), &mut matching), (uuid(100 + i), &mut mismatched)] {
            let r = score(id);
            let s = r["score"].as_f64().unwrap();
            assert!((-1.0..=1.0).contains(&s), "{r}");
            assert_eq!(r["verdict"] == "accept", s >= threshold, "verdict follows the threshold: {r}");
            assert_eq!(r["model_id"], card["id"], "{r}");
            assert!(r["scorer_version"].as_str().unwrap().starts_with("dva/gata/tiny-clip-64@"), "{r}");
            assert!(r["inference_ms"].as_f64().unwrap() > 0.0, "{r}");
            into.push(s);
        }
    }
    let wins = matching.iter().flat_map(|m| mismatched.iter().map(move |n| f64::from(u8::from(m > n)))).sum::<f64>();
    let auc = wins / (matching.len() * mismatched.len()) as f64;
    println!("dva in the platform: 12 matching vs 12 mismatched captions, AUC {auc:.3}");
    assert!(auc >= 0.85, "AUC {auc}: matching {matching:?} mismatched {mismatched:?}");

    let corrupt = score(uuid(999));
    assert_eq!(corrupt["verdict"], "reject", "{corrupt}");
    assert_eq!(corrupt["reasons"][0]["code"], "undecodable_image", "{corrupt}");

    let kafka = KafkaClients::new(gata.kafka_bootstrap().expect("printed Kafka address"));
    let consumer: StreamConsumer = kafka.consumer("dva-dlq-reader").create().unwrap();
    consumer.subscribe(&[DEAD_LETTERS]).unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.expect("a dead letter").unwrap();
    let reason = msg
        .headers()
        .and_then(|h| {
            h.iter().find(|h| h.key == DLQ_REASON).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).to_string())
        })
        .unwrap_or_default();
    assert!(reason.starts_with("dva: image:"), "{reason}");
}
