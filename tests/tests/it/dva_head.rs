//! The DVA's filter trained from human labels: `gata dva train` on the shipped labelled set
//! reproduces the same model (hash for hash); trained from reviewers' labels in the lake, its
//! head is opened by the DVA after a restart, which scores every pair with it (older ones
//! included) beside the base cosine.

use std::{path::Path, process::Command, time::Duration};

use base64::Engine as _;
use gata_tests::{Gata, eventually};
use serde_json::{Value, json};

use crate::{bin, dva::model_dir, scoring::uuid};

/// Runs `gata dva train` with `args`; returns the head's card.
fn train(args: &[&str], out: &Path) -> Value {
    let run = Command::new(bin()).args(["dva", "train", "--out"]).arg(out).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("step 1: loss") && stdout.contains("held out, trained head: AUC"), "progress: {stdout}");
    serde_json::from_slice(&std::fs::read(out.join("head.json")).unwrap()).unwrap()
}

/// Labelled pairs a head's card counts, over its three splits.
fn labels_used(card: &Value) -> u64 {
    let t = &card["training"];
    ["train", "calibration", "test"]
        .iter()
        .map(|s| t[s]["accept"].as_u64().unwrap() + t[s]["reject"].as_u64().unwrap())
        .sum()
}

fn file_sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn training_on_the_shipped_set_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let set = model_dir().join("labelled");
    let set = set.to_str().unwrap();
    let data = dir.path().join("data");
    let args = ["--set", set, "--l2", "0.03,1", "--data-dir", data.to_str().unwrap()];
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (first, second) = (train(&args, &a), train(&args, &b));
    assert_eq!(first, second, "same labels, same seed: the same card");
    assert_eq!(file_sha256(&a.join("head.onnx")), file_sha256(&b.join("head.onnx")));
    assert_eq!(first["sha256"].as_str().unwrap(), file_sha256(&a.join("head.onnx")), "the card hashes its graph");
    assert_eq!(labels_used(&first), 1440, "{first}");
    assert_eq!(first["training"]["source"], "set:labelled");
    for m in ["base_measures", "head_measures"] {
        assert!(first[m]["auc"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{first}");
    }
    // Another seed splits contributors differently: another model.
    let c = dir.path().join("c");
    let other = train(&["--set", set, "--l2", "0.03,1", "--seed", "2", "--data-dir", data.to_str().unwrap()], &c);
    assert_ne!(other["sha256"], first["sha256"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_trained_from_lake_labels_scores_beside_the_base_model() {
    let dir = tempfile::tempdir().unwrap();
    let set = model_dir().join("labelled");
    let rows: Vec<Value> = serde_json::from_slice(&std::fs::read(set.join("labels.json")).unwrap()).unwrap();
    // 45 contributors' pairs: enough for every split to hold both decisions.
    let rows: Vec<&Value> = rows.iter().take(45 * 9).collect();
    let pairs: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let image = std::fs::read(set.join("images").join(r["image"].as_str().unwrap())).unwrap();
            json!({
                "event_id": uuid(20_000 + i as u32),
                "contributor_id": r["contributor_id"],
                "occurred_at": "2026-11-24T10:00:00Z",
                "caption": r["caption"],
                "image": {"content_type": "image/jpeg", "base64": base64::engine::general_purpose::STANDARD.encode(image)},
            })
        })
        .collect();
    let env = [("GATA__RATE__LABELS__PER_SECOND", "100000"), ("GATA__RATE__LABELS__BURST", "100000")];
    let mut gata = Gata::start_free(bin(), dir.path(), &env).await.unwrap();
    let api = gata.client();
    for chunk in pairs.chunks(200) {
        let (status, body) = api.post_ndjson("/v1/image-text-pairs", chunk).await.unwrap();
        assert_eq!(status, 202, "{body}");
    }
    let count = |sql: &'static str| {
        let api = api.clone();
        async move { api.count(sql).await.ok() }
    };
    eventually("the pairs in the lake", Duration::from_secs(120), || async {
        (count("SELECT COUNT(*) AS n FROM image_text_pairs").await? == pairs.len() as u64).then_some(())
    })
    .await;
    // The reviewer's labels, as the page sends them.
    let labels = futures::future::join_all(rows.iter().zip(&pairs).map(|(r, p)| {
        let api = api.clone();
        let decision = if r["accept"] == true { "accept" } else { "reject" };
        let body = json!({"pair_id": p["event_id"], "decision": decision, "queue": "audit"}).to_string();
        async move { api.post("/v1/review/labels", "application/json", body).await.unwrap().0 }
    }))
    .await;
    assert!(labels.iter().all(|s| *s == 202), "{labels:?}");
    eventually("the labels in the lake", Duration::from_secs(60), || async {
        (count("SELECT COUNT(*) AS n FROM review_labels").await? == pairs.len() as u64).then_some(())
    })
    .await;
    let base = "SELECT COUNT(*) AS n FROM quality_scores WHERE subject_kind = 'image_text_pair'";
    eventually("a base score per pair", Duration::from_secs(120), || async {
        (count(base).await? == pairs.len() as u64).then_some(())
    })
    .await;

    let head_dir = dir.path().join("head");
    let data = dir.path().to_str().unwrap().to_string();
    let card = tokio::task::spawn_blocking({
        let head_dir = head_dir.clone();
        move || train(&["--data-dir", &data, "--l2", "0.03,1"], &head_dir)
    })
    .await
    .unwrap();
    assert_eq!(card["training"]["source"], "lake");
    assert_eq!(labels_used(&card), pairs.len() as u64, "every labelled pair, once: {card}");

    // Restarted with the head: every pair, older ones too, gets the head's score.
    gata.terminate(Duration::from_secs(30)).await.unwrap();
    let head = head_dir.to_str().unwrap();
    let gata = Gata::start_free(bin(), dir.path(), &[("GATA__DVA__HEAD", head)]).await.unwrap();
    let api = gata.client();
    let rows = eventually("a head score per pair", Duration::from_secs(120), || async {
        let rows = api
            .rows("SELECT scorer_version, score, verdict, model_id, model_sha256 FROM quality_scores WHERE scorer_version LIKE '%+head@%'")
            .await
            .ok()?;
        (rows.len() >= pairs.len()).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), pairs.len());
    let threshold = card["threshold"].as_f64().unwrap();
    for r in &rows {
        let score = r["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{r}");
        assert_eq!(r["verdict"] == "accept", score >= threshold, "{r}");
        assert_eq!(r["model_sha256"], card["sha256"], "{r}");
        assert!(r["scorer_version"].as_str().unwrap().ends_with(&card["sha256"].as_str().unwrap()[..12]), "{r}");
    }
    let base_now = api
        .count("SELECT COUNT(*) AS n FROM quality_scores WHERE scorer_version NOT LIKE '%+head@%' AND subject_kind = 'image_text_pair'")
        .await
        .unwrap();
    assert_eq!(base_now, pairs.len() as u64, "the base scores land once, rescoring or not");
}
