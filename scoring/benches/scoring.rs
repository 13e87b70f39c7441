//! Scoring benchmark (not a test): `cargo bench -p gata-scoring --bench scoring`.
//!
//! On the documents of the evaluation set, in one run: MinHash signatures per second here next
//! to datatrove's (PyPI) signature step on the same documents with the same shape (word
//! 3-grams, 64 hashes), and whole submissions scored per second on one core.

use std::{io::Write as _, process::Command, time::Instant};

use gata_infra::contract::{ChatTurn, Preference};
use gata_scoring::{Scorer, minhash::signature};

fn main() {
    // `cargo test --all-targets` runs bench binaries too; measure only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("scoring: a benchmark, not a test; run it with `cargo bench -p gata-scoring --bench scoring`");
        return;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../eval/quality_eval.jsonl");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(path)
        .expect("eval/quality_eval.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("eval row"))
        .collect();
    let mut docs: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r["kind"] == "chat_turn") {
        docs.push(r["event"]["prompt"].as_str().unwrap_or_default().to_string());
        for a in r["event"]["responses"].as_array().into_iter().flatten() {
            docs.push(a["text"].as_str().unwrap_or_default().to_string());
        }
    }

    let started = Instant::now();
    let signed = docs.iter().filter_map(|d| signature(d)).count();
    let ours = docs.len() as f64 / started.elapsed().as_secs_f64();
    assert!(signed > 0);

    let reference = datatrove_rate(&docs);

    let submissions = rows.len();
    let started = Instant::now();
    let mut scorer = Scorer::default();
    for r in &rows {
        let event = r["event"].clone();
        if r["kind"] == "chat_turn" {
            scorer.score_turn(&serde_json::from_value::<ChatTurn>(event).expect("turn"));
        } else {
            scorer.score_preference(&serde_json::from_value::<Preference>(event).expect("preference"));
        }
    }
    let scored = submissions as f64 / started.elapsed().as_secs_f64();

    println!("\n| measure | items | per second | vs reference |\n|---|---:|---:|---:|");
    match reference {
        Ok(r) => {
            println!(
                "| MinHash signatures, datatrove 0.10 (Python, reference) | {} | {r:.0} | reference |",
                docs.len()
            );
            println!("| MinHash signatures, gata-scoring | {} | {ours:.0} | {:.1}x |", docs.len(), ours / r);
        }
        Err(why) => {
            println!("| MinHash signatures, datatrove (reference) | - | - | unavailable: {why} |");
            println!("| MinHash signatures, gata-scoring | {} | {ours:.0} | - |", docs.len());
        }
    }
    println!("| submissions scored on one core (all signals, eval set order) | {submissions} | {scored:.0} | - |");
}

/// Documents per second of datatrove's signature step, run by `bench/datatrove_minhash.py`.
fn datatrove_rate(docs: &[String]) -> Result<f64, String> {
    let mut file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    for d in docs {
        writeln!(file, "{}", serde_json::Value::String(d.clone())).map_err(|e| e.to_string())?;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/datatrove_minhash.py");
    let out = Command::new("python3").arg(script).arg(file.path()).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "pip install datatrove tokenizers spacy xxhash==3.4.1 ({})",
            err.lines().last().unwrap_or("")
        ));
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|e| format!("{e}"))
}
