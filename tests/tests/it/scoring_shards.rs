//! Scoring scaled out: the quality evaluation set goes through one scoring process and, over a
//! copy of the same log, through three shards (`--scoring-shard I/3`), each a process of its own
//! against `gata broker`. Every verdict, score and reason is the same, copies across accounts
//! and Sybil clusters included, though the copies and their originals are judged by different
//! shards.

use std::{collections::BTreeMap, path::Path, time::Duration};

use gata_tests::{Api, Broker, Gata, eventually, free_port};
use serde_json::Value;

use crate::bin;

/// The evaluation set's submissions in file order, each with the intake route it goes to.
fn evaluation_set() -> Vec<(&'static str, Value)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/eval/quality_eval.jsonl");
    let text = std::fs::read_to_string(path).expect("eval/quality_eval.jsonl");
    text.lines()
        .map(|line| {
            let mut row: Value = serde_json::from_str(line).expect("eval row");
            let route = if row["kind"] == "chat_turn" { "/v1/chat-turns" } else { "/v1/preferences" };
            (route, row["event"].take())
        })
        .collect()
}

/// Runs of consecutive submissions to one route, at most 200 each, in file order.
fn batches(rows: &[(&'static str, Value)]) -> Vec<(&'static str, Vec<Value>)> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (route, event) in rows {
        match out.last_mut() {
            Some((r, batch)) if r == route && batch.len() < 200 => batch.push(event.clone()),
            _ => out.push((route, vec![event.clone()])),
        }
    }
    out
}

/// Every score of the lake by subject: verdict, score and reason codes.
async fn verdicts(api: &Api, n: u64) -> BTreeMap<String, (String, String, Vec<String>)> {
    eventually(&format!("{n} scores"), Duration::from_secs(240), || async {
        (api.count("SELECT COUNT(DISTINCT subject_event_id) AS n FROM quality_scores").await.ok()? >= n).then_some(())
    })
    .await;
    let rows = api.rows("SELECT subject_event_id, verdict, score, reasons FROM quality_scores").await.unwrap();
    assert_eq!(rows.len() as u64, n, "one score per submission");
    rows.into_iter()
        .map(|r| {
            let codes = r["reasons"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap().to_string());
            let subject = r["subject_event_id"].as_str().unwrap().to_string();
            (subject, (r["verdict"].as_str().unwrap().to_string(), r["score"].to_string(), codes.collect()))
        })
        .collect()
}

/// Starts a broker on `dir`'s log, a sink and query process on its lake and one scoring process
/// per entry of `shards` (none: one unsharded process), and returns every score once landed.
async fn score_with(dir: &Path, shards: &[&str], n: u64) -> BTreeMap<String, (String, String, Vec<String>)> {
    let broker = Broker::start(bin(), &dir.join("broker")).await.unwrap();
    let lake = format!("file://{}", dir.join("lake").display());
    let shared = ["--brokers", broker.bootstrap.as_str(), "--lake", lake.as_str()];
    let front = Gata::start_with(
        bin(),
        &dir.join("front"),
        free_port(),
        &[&shared[..], &["--roles", "sink,query"]].concat(),
        &[],
    )
    .await
    .unwrap();
    let mut scorers = Vec::new();
    let plain: [&[&str]; 1] = [&[]];
    let flags: Vec<Vec<&str>> = if shards.is_empty() {
        plain.iter().map(|f| f.to_vec()).collect()
    } else {
        shards.iter().map(|s| vec!["--scoring-shard", *s]).collect()
    };
    for (i, extra) in flags.iter().enumerate() {
        let args = [&shared[..], &["--roles", "scoring"], &extra[..]].concat();
        scorers
            .push(Gata::start_with(bin(), &dir.join(format!("scoring-{i}")), free_port(), &args, &[]).await.unwrap());
    }
    let scores = verdicts(&front.client(), n).await;
    for scorer in &scorers {
        let metrics = reqwest::get(format!("{}/metrics", scorer.base)).await.unwrap().text().await.unwrap();
        let judged: f64 = gata_tests::labelled_metrics(&metrics, "gata_scoring_scored_total").iter().sum();
        let remembered = gata_tests::metric(&metrics, "gata_scoring_remembered_total").unwrap_or(0.0);
        println!("scoring process: judged {judged}, remembered {remembered}");
        assert!(judged > 0.0, "every process judges a share");
        assert_eq!(judged + remembered, n as f64, "every process folds every submission");
    }
    scores
}

#[tokio::test(flavor = "multi_thread")]
async fn three_scoring_shards_give_the_verdicts_of_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (one, three) = (dir.path().join("one"), dir.path().join("three"));
    let rows = evaluation_set();
    let mut accepted = 0;
    {
        // Fill the log and the lake's bronze table with the evaluation set, scoring nothing.
        let broker = Broker::start(bin(), &one.join("broker")).await.unwrap();
        let lake = format!("file://{}", one.join("lake").display());
        let args = ["--brokers", broker.bootstrap.as_str(), "--lake", lake.as_str(), "--roles", "intake,sink,query"];
        let front = Gata::start_with(bin(), &one.join("front"), free_port(), &args, &[]).await.unwrap();
        let api = front.client();
        for (route, batch) in batches(&rows) {
            let (status, body) = api.post_ndjson(route, &batch).await.unwrap();
            if status == 202 {
                accepted += batch.len() as u64;
                continue;
            }
            // Intake refuses a few on their own (a response both chosen and rejected).
            assert_eq!(status, 422, "{body}");
            for event in batch {
                let (status, body) = api.post_ndjson(route, &[event]).await.unwrap();
                assert!(status == 202 || status == 422, "{status}: {body}");
                accepted += u64::from(status == 202);
            }
        }
        let n = accepted;
        eventually("the evaluation set in bronze", Duration::from_secs(120), || async {
            (api.count("SELECT COUNT(*) AS n FROM events").await.ok()? >= n).then_some(())
        })
        .await;
    }
    assert!(accepted * 10 > rows.len() as u64 * 9, "intake took only {accepted} of {}", rows.len());
    let n = accepted;
    // The same log and lake for the three shards.
    std::fs::create_dir_all(&three).unwrap();
    for part in ["broker", "lake"] {
        let copied = std::process::Command::new("cp").arg("-a").arg(one.join(part)).arg(&three).status().unwrap();
        assert!(copied.success());
    }

    let single = score_with(&one, &[], n).await;
    let sharded = score_with(&three, &["0/3", "1/3", "2/3"], n).await;
    let copies = single.values().filter(|(_, _, codes)| codes.iter().any(|c| c == "copied_across_accounts")).count();
    let sybils = single.values().filter(|(_, _, codes)| codes.iter().any(|c| c == "sybil_cluster")).count();
    let rejected = single.values().filter(|(verdict, _, _)| verdict == "reject").count();
    let differ = single.iter().filter(|(id, v)| sharded.get(*id) != Some(v)).count();
    println!(
        "scoring shards: {n} submissions, {rejected} rejected, {copies} copies across accounts, {sybils} in Sybil clusters; {differ} differ"
    );
    assert!(copies > 20 && sybils > 5, "too few cross-account signals for the comparison to prove anything");
    assert_eq!(differ, 0, "three shards disagree with one process");
}
