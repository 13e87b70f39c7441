//! The scoring processor in a running platform: every chat turn and preference gets exactly
//! one score event in `quality_scores`, copies across accounts and unreadably fast judgements
//! are rejected with their reasons, a preference read before its turn waits for it, the
//! contributor view shows a contributor their own scores, and after a SIGKILL the scorer's
//! state is rebuilt from the log (a copy of a prompt sent before the crash is still caught)
//! without publishing any score twice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gata_contract::QualityScore;
use gata_tests::{Api, Gata, eventually, free_port};
use serde_json::{Value, json};

use crate::bin;

pub(crate) const PROMPTS: [&str; 8] = [
    "How do I keep basil alive on a north-facing windowsill? Mine wilts within two weeks of buying it.",
    "What is the difference between a Roth IRA and a traditional one for someone who just started working?",
    "Can you explain why the sky looks red at sunset but blue at noon, in words a ten year old follows?",
    "My bike chain keeps slipping when I climb hills. Is it the chain, the cassette or the way I shift?",
    "Which questions should I ask a landlord before signing a one year lease on an old apartment?",
    "How long should bread dough rise in a cold kitchen, and how can I tell when it is ready to bake?",
    "What are good ways to practise a second language when nobody around me speaks it at home?",
    "Why does my laptop fan spin loudly even when I only have a browser and a text editor open?",
];

pub(crate) const ANSWERS: [&str; 2] = [
    "Start with the simplest explanation and check it against what you see. Most of the time the cause is ordinary, and a small change in routine fixes it within a few days.",
    "It depends on your situation, but a careful first step is to write down what happens and when. That record makes the pattern obvious and tells you which fix is worth trying first.",
];

pub(crate) fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T09:00:00Z").unwrap().with_timezone(&Utc)
        + chrono::Duration::minutes(minutes)
}

pub(crate) fn turn(event_id: &str, who: &str, turn_id: &str, prompt: &str, when: DateTime<Utc>) -> Value {
    json!({
        "event_id": event_id,
        "contributor_id": who,
        "turn_id": turn_id,
        "occurred_at": when,
        "prompt": prompt,
        "responses": [
            {"response_id": "a", "model": "model-one", "text": ANSWERS[0]},
            {"response_id": "b", "model": "model-two", "text": ANSWERS[1]},
        ],
    })
}

pub(crate) fn preference(event_id: &str, who: &str, turn_id: &str, when: DateTime<Utc>) -> Value {
    json!({
        "event_id": event_id,
        "contributor_id": who,
        "turn_id": turn_id,
        "occurred_at": when,
        "chosen_response_id": "b",
        "rejected_response_ids": ["a"],
    })
}

pub(crate) fn uuid(n: u32) -> String {
    format!("0190a000-0000-7000-8000-{n:012x}")
}

/// Score rows keyed by the subject's event id.
async fn scores(api: &Api) -> std::collections::HashMap<String, Value> {
    api.rows("SELECT subject_event_id, event_id, scorer_version, verdict, score, reasons FROM quality_scores")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r["subject_event_id"].as_str().unwrap().to_string(), r))
        .collect()
}

fn codes(row: &Value) -> Vec<&str> {
    row["reasons"].as_array().unwrap().iter().filter_map(|r| r["code"].as_str()).collect()
}

pub(crate) async fn wait_for_scores(api: &Api, n: u64) {
    eventually(&format!("{n} scores"), Duration::from_secs(90), || async {
        let got = api.count("SELECT COUNT(*) AS n FROM quality_scores").await.ok()?;
        (got >= n).then_some(())
    })
    .await;
    let distinct = api.count("SELECT COUNT(DISTINCT subject_event_id) AS n FROM quality_scores").await.unwrap();
    let rows = api.count("SELECT COUNT(*) AS n FROM quality_scores").await.unwrap();
    assert_eq!((rows, distinct), (n, n), "one score per submission");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_submission_is_scored_once_with_reasons_and_state_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut gata = Gata::start_on(bin(), dir.path(), port, &[]).await.unwrap();
    let api = gata.client();

    // Eight people, one genuine prompt each; the first four also judge their turn a minute later.
    let turns: Vec<Value> = (0..8)
        .map(|i| turn(&uuid(i), &format!("person_{i}"), &format!("turn_{i}"), PROMPTS[i as usize], at(i as i64)))
        .collect();
    let mut prefs: Vec<Value> = (0..4)
        .map(|i| preference(&uuid(100 + i), &format!("person_{i}"), &format!("turn_{i}"), at(i as i64 + 1)))
        .collect();
    // A judgement 300 ms after the answers appeared: nobody reads two paragraphs that fast.
    let mut fast = preference(&uuid(104), "person_4", "turn_4", at(4));
    fast["occurred_at"] = json!(at(4) + chrono::Duration::milliseconds(300));
    prefs.push(fast);
    // Three fresh accounts paste person_0's prompt.
    let copies: Vec<Value> = (0..3)
        .map(|i| turn(&uuid(200 + i), &format!("sock_{i}"), &format!("sock_turn_{i}"), PROMPTS[0], at(20 + i as i64)))
        .collect();

    // Preferences go first: they reach the scorer before their turns and must wait for them.
    let (status, body) = api.post_ndjson("/v1/preferences", &prefs).await.unwrap();
    assert_eq!(status, 202, "{body}");
    let (status, body) = api.post_ndjson("/v1/chat-turns", &turns).await.unwrap();
    assert_eq!(status, 202, "{body}");
    let (status, body) = api.post_ndjson("/v1/chat-turns", &copies).await.unwrap();
    assert_eq!(status, 202, "{body}");
    // A client retry of one turn: the same event, scored once.
    let (status, _) = api.post_ndjson("/v1/chat-turns", &turns[..1]).await.unwrap();
    assert_eq!(status, 202);

    let submitted = (turns.len() + prefs.len() + copies.len()) as u64;
    wait_for_scores(&api, submitted).await;
    let by_subject = scores(&api).await;
    for t in &turns {
        let id = t["event_id"].as_str().unwrap();
        let row = &by_subject[id];
        assert_eq!(row["verdict"], "accept", "genuine prompt rejected: {row}");
        let version = row["scorer_version"].as_str().unwrap();
        let expected = QualityScore::id_for(version, id.parse().unwrap()).to_string();
        assert_eq!(row["event_id"], expected.as_str(), "score ids are derived from version and subject");
    }
    for c in &copies[1..] {
        let row = &by_subject[c["event_id"].as_str().unwrap()];
        assert_eq!(row["verdict"], "reject", "{row}");
        assert!(codes(row).contains(&"copied_across_accounts"), "{row}");
    }
    for p in &prefs[..4] {
        let row = &by_subject[p["event_id"].as_str().unwrap()];
        assert_eq!(row["verdict"], "accept", "{row}");
        assert!(!codes(row).contains(&"unknown_turn"), "a preference read first waited for its turn: {row}");
    }
    let row = &by_subject[&uuid(104)];
    assert_eq!(row["verdict"], "reject", "{row}");
    assert!(codes(row).contains(&"too_fast_to_read"), "{row}");

    // The contributor view: person_0 sees their turn and their preference, with sub-scores.
    let (status, view) = api.get("/v1/contributors/person_0/scores").await.unwrap();
    assert_eq!(status, 200, "{view}");
    let mine = view["scores"].as_array().unwrap();
    assert_eq!(mine.len(), 2, "{view}");
    assert!(mine.iter().all(|s| s["sub_scores"]["realism"].is_number() && s["verdict"] == "accept"), "{view}");
    assert!(mine.iter().any(|s| s["prompt"].as_str().is_some_and(|p| PROMPTS[0].starts_with(p))), "{view}");
    assert_eq!(view["summary"][0]["accepted"], 2, "{view}");
    let (status, view) = api.get("/v1/contributors/sock_2/scores?verdict=reject").await.unwrap();
    assert_eq!(status, 200, "{view}");
    assert!(!view["scores"][0]["reasons"].as_array().unwrap().is_empty(), "{view}");
    for bad in ["/v1/contributors/sock_2/scores?limit=0", "/v1/contributors/sock_2/scores?verdict=maybe"] {
        let (status, body) = api.get(bad).await.unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }

    // SIGKILL, restart: the new incarnation rebuilds its state from the log. A fourth account
    // pasting person_1's prompt (sent before the crash) is caught; nothing is scored twice.
    gata.kill();
    let gata = Gata::start_on(bin(), dir.path(), port, &[]).await.unwrap();
    let api = gata.client();
    let late = turn(&uuid(300), "sock_late", "sock_turn_late", PROMPTS[1], at(40));
    let (status, body) = api.post_ndjson("/v1/chat-turns", &[late]).await.unwrap();
    assert_eq!(status, 202, "{body}");
    wait_for_scores(&api, submitted + 1).await;
    let row = &scores(&api).await[&uuid(300)];
    assert_eq!(row["verdict"], "reject", "{row}");
    assert!(codes(row).contains(&"copied_across_accounts"), "state was not rebuilt: {row}");
    let metrics = reqwest::get(format!("{}/metrics", gata.base)).await.unwrap().text().await.unwrap();
    let rebuilt = gata_tests::metric(&metrics, "gata_scoring_rebuilt_total").unwrap_or(0.0);
    assert_eq!(rebuilt as u64, submitted, "every earlier submission re-read, none re-published");
}
