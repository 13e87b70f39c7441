//! Scoring benchmark (not a test): `cargo bench -p gata-scoring --bench scoring`.
//!
//! In one run: MinHash signatures per second here next to datatrove's (PyPI) signature step on
//! the evaluation set's documents with the same shape (word 3-grams, 64 hashes); and whole
//! submissions scored per second, on the evaluation set and on a generated workload, one at a
//! time on one core (the reference) and in batches assessed in parallel and folded in order,
//! and with the texts assessed on every core while the fold runs (as `gata replay` does), the
//! assessment and the fold also timed apart, every variant checked to give identical scores.

use std::{io::Write as _, process::Command, time::Instant};

use gata_contract::{ChatTurn, Event, Preference};
use gata_infra::workload::Workload;
use gata_parallel::{SMALL_ITEMS_PER_THREAD, available_threads, map_fold_ordered, map_ordered};
use gata_scoring::{Prepared, Score, Scorer, minhash::signature};

/// The allocator `gata` runs with, so the figures are the scoring processor's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

    let eval: Vec<Event> = rows
        .iter()
        .map(|r| {
            let event = r["event"].clone();
            if r["kind"] == "chat_turn" {
                Event::ChatTurn(serde_json::from_value::<ChatTurn>(event).expect("turn"))
            } else {
                Event::Preference(serde_json::from_value::<Preference>(event).expect("preference"))
            }
        })
        .collect();
    let generated: Vec<Event> = Workload::new(7, 500).events(WORKLOAD_TURNS, 0);
    let threads = available_threads();
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
    for (name, events) in [("eval set", &eval), ("generated workload, 500 contributors", &generated)] {
        let (sequential, reference) = timed(|| one_at_a_time(events));
        let (assessing, prepared) = timed(|| events.iter().map(Prepared::of).collect::<Vec<_>>());
        let mut scorer = Scorer::default();
        let (folding, folded) =
            timed(|| events.iter().zip(prepared).filter_map(|(e, p)| scorer.score_event(e, p)).collect::<Vec<_>>());
        let (batched, in_batches) = timed(|| processor(events, threads));
        let (overlapped, pipelined) = timed(|| pipelined(events, threads));
        let identical = |scores: &[Score]| if scores == reference { "identical scores" } else { "SCORES DIFFER" };
        let (n, count) = (events.len() as f64, events.len());
        println!(
            "| submissions scored one at a time on one core, {name} | {count} | {:.0} | reference |",
            n / sequential
        );
        println!(
            "| their texts assessed (no scorer state), one core, {name} | {count} | {:.0} | {:.0} µs each |",
            n / assessing,
            assessing * 1e6 / n
        );
        println!(
            "| their assessments folded in order (the sequential part), one core, {name} | {count} | {:.0} | {:.0} µs each, {} |",
            n / folding,
            folding * 1e6 / n,
            identical(&folded)
        );
        println!(
            "| chunks of {AHEAD} assessed on {threads} threads while the chunk before is folded (the scoring processor under a backlog), {name} | {count} | {:.0} | {:.2}x, {} |",
            n / batched,
            sequential / batched,
            identical(&in_batches)
        );
        println!(
            "| assessed on {threads} threads while the fold runs (`gata replay`), {name} | {count} | {:.0} ({:.0} per core) | {:.2}x, {} |",
            n / overlapped,
            n / overlapped / threads as f64,
            sequential / overlapped,
            identical(&pipelined)
        );
        let mut scorer = Scorer::default();
        let (remembering, ()) = timed(|| events.iter().for_each(|e| scorer.remember(e, Prepared::remembered(e))));
        println!(
            "| every submission only remembered (what each shard spends on the others' share), one core, {name} | {count} | {:.0} | {:.1} µs each: the shards' ceiling |",
            n / remembering,
            remembering * 1e6 / n
        );
        for shards in [2, 3, 4] {
            let (slowest, judged) = sharded(events, shards);
            println!(
                "| {shards} shards, one core each, each folding every submission and judging its share (the slowest shard's pace), {name} | {count} | {:.0} | {:.2}x, {} |",
                n / slowest,
                sequential / slowest,
                identical(&judged)
            );
        }
    }
    println!("\nTarget (issue 23): 50 000 submissions per second per core.");
}

/// Chat turns of the generated workload (with their preferences, about 1.85 submissions each).
const WORKLOAD_TURNS: usize = 100_000;
/// Submissions the scoring processor assesses ahead of its fold (`ASSESSED_AHEAD` in
/// `stream-processors/src/scoring/mod.rs`).
const AHEAD: usize = 2048;

/// Seconds `f` took, and what it returned.
fn timed<R>(f: impl FnOnce() -> R) -> (f64, R) {
    let started = Instant::now();
    let out = f();
    (started.elapsed().as_secs_f64(), out)
}

/// Every score, one submission at a time.
fn one_at_a_time(events: &[Event]) -> Vec<Score> {
    let mut scorer = Scorer::default();
    events.iter().filter_map(|e| scorer.score_event(e, Prepared::Nothing)).collect()
}

/// Every score as the scoring processor takes a backlog: chunks of [`AHEAD`], each assessed on
/// `threads` threads while the one before is folded.
fn processor(events: &[Event], threads: usize) -> Vec<Score> {
    let mut scorer = Scorer::default();
    let mut scores = Vec::with_capacity(events.len());
    let mut chunks = events.chunks(AHEAD);
    let assess = |chunk: &[Event], threads| map_ordered(chunk, threads, SMALL_ITEMS_PER_THREAD, Prepared::of);
    let mut current = chunks.next().map(|first| (first, assess(first, threads)));
    while let Some((chunk, prepared)) = current.take() {
        current = std::thread::scope(|scope| {
            let next = chunks.next().map(|next| scope.spawn(move || (next, assess(next, threads))));
            scores.extend(chunk.iter().zip(prepared).filter_map(|(e, p)| scorer.score_event(e, p)));
            next.map(|n| n.join().expect("assessing a chunk"))
        });
    }
    scores
}

/// Every score, texts assessed on `threads` threads while the scorer folds the ones before.
fn pipelined(events: &[Event], threads: usize) -> Vec<Score> {
    let mut scorer = Scorer::default();
    let mut scores = Vec::with_capacity(events.len());
    map_fold_ordered(events, threads, Prepared::of, |e, p| scores.extend(scorer.score_event(e, p)));
    scores
}

/// The seconds of the slowest of `shards` shards, each on one core folding every submission but
/// judging only its contributors' (the others only remembered: [`Scorer::remember`]), and
/// the shards' judgements in log order.
fn sharded(events: &[Event], shards: usize) -> (f64, Vec<Score>) {
    let shard_of = |e: &Event| e.contributor_id().bytes().fold(0usize, |h, b| h * 31 + usize::from(b)) % shards;
    let mut judged: Vec<Option<Score>> = vec![None; events.len()];
    let mut slowest: f64 = 0.0;
    for shard in 0..shards {
        let mut scorer = Scorer::default();
        let (seconds, ()) = timed(|| {
            for (i, event) in events.iter().enumerate() {
                if shard_of(event) == shard {
                    judged[i] = scorer.score_event(event, Prepared::of(event));
                } else {
                    scorer.remember(event, Prepared::remembered(event));
                }
            }
        });
        slowest = slowest.max(seconds);
    }
    (slowest, judged.into_iter().flatten().collect())
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
