//! Trust-minimized DVA: with `dva.replicas = 3`, two volunteers run `gata dva-worker` (replica
//! slots 0 and 1) and a third votes random numbers straight onto the votes topic (slot 2, any
//! Kafka client can). The consensus scores every pair with the median — the honest score —,
//! records which votes agree, and flags the random voter; every vote lands in `dva_votes`.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::Engine as _;
use chrono::Utc;
use gata_contract::{
    topics::{DVA_VOTES, intake_topic},
    {EventKind, ImageTextPair, LogPosition, QualityScore, SubScores, Verdict},
};
use gata_infra::kafka::KafkaClients;
use gata_tests::{Gata, eventually, free_port};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};

use crate::{bin, scoring::uuid};

/// A `gata dva-worker` process, killed when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(id: &str, slot: u32, brokers: &str, env: &[(&str, &str)], log: &std::path::Path) -> Worker {
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(bin())
        .args(["dva-worker", "--worker-id", id, "--slot", &slot.to_string(), "--brokers", brokers])
        .envs(env.iter().copied())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    Worker(child)
}

/// Votes a uniformly random score on every pair of the intake topic, as validator `random`.
async fn random_voter(brokers: String) {
    let kafka = KafkaClients::new(brokers);
    let consumer: StreamConsumer = kafka.consumer("gata-dva-replica-random").create().unwrap();
    consumer.subscribe(&[intake_topic(EventKind::ImageTextPair)]).unwrap();
    let producer: FutureProducer = kafka.producer(Duration::from_secs(10)).create().unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let version = format!("dva/gata/tiny-clip-64@{}", fingerprint_prefix());
    loop {
        let msg = consumer.recv().await.unwrap();
        let pair: ImageTextPair = serde_json::from_slice(msg.payload().unwrap()).unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let vote = QualityScore {
            event_id: QualityScore::vote_id_for(&version, "random", pair.event_id),
            contributor_id: pair.contributor_id.clone(),
            subject_event_id: pair.event_id,
            subject_kind: EventKind::ImageTextPair,
            scorer_version: version.clone(),
            score: (seed % 2001) as f64 / 1000.0 - 1.0,
            verdict: Verdict::Accept,
            sub_scores: SubScores::default(),
            reasons: Vec::new(),
            language: None,
            occurred_at: pair.occurred_at,
            scored_at: Utc::now(),
            source: LogPosition { topic: msg.topic().into(), partition: msg.partition(), offset: msg.offset() },
            model: None,
            timings: None,
            validator: Some("random".into()),
            consensus: None,
        };
        let payload = vote.to_json();
        let record = FutureRecord::to(DVA_VOTES).key(&pair.contributor_id).payload(&payload);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
}

/// The first 12 hex digits of the shipped model's fingerprint (SHA-256 of its two encoder
/// hashes), as scorer versions carry it.
fn fingerprint_prefix() -> String {
    use sha2::{Digest, Sha256};
    let card: Value =
        serde_json::from_slice(&std::fs::read(crate::dva::model_dir().join("model.json")).unwrap()).unwrap();
    let both = format!("{}{}", card["image"]["sha256"].as_str().unwrap(), card["text"]["sha256"].as_str().unwrap());
    hex::encode(Sha256::digest(both.as_bytes()))[..12].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_median_of_independent_workers_scores_and_a_random_voter_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::dva::model_dir();
    let model_dir = model.to_str().unwrap();
    let env = [
        ("GATA__DVA__MODEL_DIR", model_dir),
        ("GATA__DVA__REPLICAS", "3"),
        ("GATA__DVA__FLAG_MIN_VOTES", "5"),
        ("GATA__DVA__CONSENSUS_WAIT", "60s"),
    ];
    let gata = Gata::start_on(bin(), dir.path(), free_port(), &env).await.unwrap();
    let brokers = gata.kafka_bootstrap().expect("printed Kafka address");
    let worker_env =
        [("GATA__DVA__MODEL_DIR", model_dir), ("GATA__DVA__REPLICAS", "3"), ("GATA__DVA__BATCH_SIZE", "4")];
    let _a = worker("honest-a", 0, &brokers, &worker_env, &dir.path().join("worker-a.log"));
    let _b = worker("honest-b", 1, &brokers, &worker_env, &dir.path().join("worker-b.log"));
    let random = tokio::spawn(random_voter(brokers.clone()));

    let heldout: Vec<Value> = serde_json::from_slice(&std::fs::read(model.join("heldout.json")).unwrap()).unwrap();
    let pairs: Vec<Value> = heldout
        .iter()
        .filter(|r| r["image"].as_str().unwrap().ends_with(".jpg"))
        .take(12)
        .enumerate()
        .map(|(i, row)| {
            let bytes = std::fs::read(model.join("heldout").join(row["image"].as_str().unwrap())).unwrap();
            json!({
                "event_id": uuid(500 + i as u32),
                "contributor_id": format!("shooter_{}", i % 4),
                "occurred_at": "2026-11-24T10:00:00Z",
                "caption": row[if i % 2 == 0 { "caption" } else { "mismatched" }],
                "image": {"content_type": "image/jpeg", "base64": base64::engine::general_purpose::STANDARD.encode(bytes)},
            })
        })
        .collect();
    let api = gata.client();
    let (status, body) = api.post_ndjson("/v1/image-text-pairs", &pairs).await.unwrap();
    assert_eq!(status, 202, "{body}");

    let scores = eventually("a consensus score per pair", Duration::from_secs(180), || async {
        let rows = api
            .rows("SELECT subject_event_id, score, verdict, consensus_replicas, consensus_agreement, consensus_votes FROM quality_scores WHERE subject_kind = 'image_text_pair'")
            .await
            .ok()?;
        (rows.len() >= pairs.len()).then_some(rows)
    })
    .await;
    random.abort();
    assert_eq!(scores.len(), pairs.len(), "one consensus score per pair");

    let votes = eventually("every vote in dva_votes", Duration::from_secs(60), || async {
        let rows = api.rows("SELECT subject_event_id, validator, score FROM dva_votes").await.ok()?;
        (rows.len() >= 3 * pairs.len()).then_some(rows)
    })
    .await;
    let mut by_pair: HashMap<(String, String), f64> = HashMap::new();
    for v in &votes {
        by_pair.insert(
            (v["subject_event_id"].as_str().unwrap().into(), v["validator"].as_str().unwrap().into()),
            v["score"].as_f64().unwrap(),
        );
    }
    assert_eq!(by_pair.len(), 3 * pairs.len(), "three distinct workers voted on every pair: {votes:?}");

    let mut random_agreed = 0;
    for s in &scores {
        let id = s["subject_event_id"].as_str().unwrap().to_string();
        let honest = by_pair[&(id.clone(), "honest-a".to_string())];
        assert!((honest - by_pair[&(id.clone(), "honest-b".to_string())]).abs() < 1e-4, "same model, same score");
        assert!((s["score"].as_f64().unwrap() - honest).abs() < 1e-4, "the median is the honest score: {s}");
        assert_eq!(s["consensus_replicas"], 3, "{s}");
        let cast = s["consensus_votes"].as_array().unwrap();
        assert_eq!(cast.len(), 3, "{s}");
        for v in cast {
            match v["validator"].as_str().unwrap() {
                "random" => random_agreed += usize::from(v["agrees"] == true),
                _ => assert_eq!(v["agrees"], true, "honest workers agree: {s}"),
            }
        }
    }
    assert!(random_agreed <= 3, "random votes rarely land within the tolerance: {random_agreed} of 12 did");

    // Per-worker agreement, with the query the README gives.
    let per_worker = api
        .rows("SELECT v['validator'] AS worker, COUNT(*) AS votes, SUM(CASE WHEN v['agrees'] THEN 1 ELSE 0 END) AS agreed \
               FROM (SELECT unnest(consensus_votes) AS v FROM quality_scores WHERE consensus_votes IS NOT NULL) GROUP BY 1 ORDER BY 1")
        .await
        .unwrap();
    let summary: Vec<(String, u64, u64)> = per_worker
        .iter()
        .map(|r| (r["worker"].as_str().unwrap().into(), r["votes"].as_u64().unwrap(), r["agreed"].as_u64().unwrap()))
        .collect();
    assert_eq!(summary[..2], [("honest-a".into(), 12, 12), ("honest-b".into(), 12, 12)], "{summary:?}");
    assert_eq!((summary[2].0.as_str(), summary[2].1, summary[2].2 as usize), ("random", 12, random_agreed));

    let metrics = reqwest::get(format!("{}/metrics", gata.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gata_dva_validator_flagged{validator=\"random\"} 1"), "the random voter is flagged");
    assert!(!metrics.contains("gata_dva_validator_flagged{validator=\"honest"), "honest workers are not");
}
