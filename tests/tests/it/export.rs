//! `gata export` over a lake the platform filled and scored: only preferences whose turn and
//! judgement were both accepted are exported, in each format's shape, and a bad request exits
//! non-zero without leaving a file behind.

use std::{path::Path, process::Command};

use gata_tests::Gata;
use serde_json::{Value, json};

use crate::{
    bin,
    scoring::{ANSWERS, PROMPTS, at, preference, turn, uuid, wait_for_scores},
};

/// Runs `gata export` on `data_dir`; returns (success, stdout, stderr).
fn export(data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin()).arg("export").arg("--data-dir").arg(data_dir).args(args).output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn exports_hold_accepted_preferences_only_in_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let gata = Gata::start(bin(), dir.path()).await.unwrap();
    let api = gata.client();

    // Six people ask and judge a minute later (answer "b" beats "a"); person_5 finds both bad;
    // person_4 judges in 300 ms; an account pasting person_0's prompt judges its copy too.
    let mut turns: Vec<Value> = (0..6)
        .map(|i| turn(&uuid(i), &format!("person_{i}"), &format!("turn_{i}"), PROMPTS[i as usize], at(i.into())))
        .collect();
    let mut prefs: Vec<Value> = (0..5)
        .map(|i| preference(&uuid(100 + i), &format!("person_{i}"), &format!("turn_{i}"), at(i as i64 + 1)))
        .collect();
    prefs[4]["occurred_at"] = json!(at(4) + chrono::Duration::milliseconds(300));
    prefs.push(json!({
        "event_id": uuid(105), "contributor_id": "person_5", "turn_id": "turn_5",
        "occurred_at": at(6), "all_bad": true, "rejected_response_ids": ["a", "b"],
    }));
    turns.push(turn(&uuid(200), "copycat", "copy_turn", PROMPTS[0], at(30)));
    prefs.push(preference(&uuid(201), "copycat", "copy_turn", at(31)));
    for (route, events) in [("/v1/chat-turns", &turns), ("/v1/preferences", &prefs)] {
        let (status, body) = api.post_ndjson(route, events).await.unwrap();
        assert_eq!(status, 202, "{body}");
    }
    wait_for_scores(&api, (turns.len() + prefs.len()) as u64).await;

    // DPO: the four decided, accepted judgements of accepted turns.
    let file = dir.path().join("dpo.jsonl");
    let (ok, _, stderr) =
        export(dir.path(), &["--format", "dpo", "--min-quality", "0.5", "--out", file.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("exported 4 records from 5 accepted preferences"), "{stderr}");
    let dpo = lines(&std::fs::read_to_string(&file).unwrap());
    let prompts: Vec<&str> = dpo.iter().map(|r| r["prompt"].as_str().unwrap()).collect();
    assert_eq!(prompts, PROMPTS[..4]);
    for r in &dpo {
        assert_eq!((r["chosen"].as_str(), r["rejected"].as_str()), (Some(ANSWERS[1]), Some(ANSWERS[0])), "{r}");
        assert_eq!(r.as_object().unwrap().len(), 3, "TRL's standard format: prompt, chosen, rejected: {r}");
    }

    // Arena: the same four battles plus person_5's both-bad tie, to stdout.
    let (ok, stdout, stderr) = export(dir.path(), &["--format", "arena"]);
    assert!(ok, "{stderr}");
    let arena = lines(&stdout);
    assert_eq!(arena.len(), 5, "{stdout}");
    for battle in &arena {
        let side = match battle["winner"].as_str().unwrap() {
            "model_a" => "conversation_a",
            "model_b" => "conversation_b",
            "tie (bothbad)" => continue,
            other => panic!("winner {other}"),
        };
        assert_eq!(battle[side][1]["content"], ANSWERS[1], "{battle}");
        assert_eq!(battle[side][0]["role"], "user");
    }
    assert_eq!(arena.iter().filter(|b| b["winner"] == "tie (bothbad)").count(), 1);
    assert!(arena.iter().all(|b| b["judge"] != "copycat" && b["judge"] != "person_4"));

    // JSONL: everything about the five, with both scores; nothing passes a bar above 1.
    let (ok, stdout, stderr) = export(dir.path(), &["--format", "jsonl", "--min-quality", "0"]);
    assert!(ok, "{stderr}");
    let full = lines(&stdout);
    assert_eq!(full.len(), 5);
    assert!(
        full.iter()
            .all(|r| r["scores"]["turn"].as_f64().unwrap() >= 0.5 && r["responses"].as_array().unwrap().len() == 2)
    );

    let bad = dir.path().join("bad.jsonl");
    let (ok, _, stderr) =
        export(dir.path(), &["--format", "dpo", "--min-quality", "1.5", "--out", bad.to_str().unwrap()]);
    assert!(!ok && stderr.contains("not in [0, 1]"), "{stderr}");
    assert!(!bad.exists() && !dir.path().join("bad.jsonl.partial").exists());
    let (ok, _, stderr) = export(dir.path(), &["--format", "parquet"]);
    assert!(!ok && stderr.contains("formats: dpo, arena, jsonl"), "{stderr}");
}
