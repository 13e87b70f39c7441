//! The scorer against the labelled evaluation set (`eval/quality_eval.jsonl`, built by
//! `eval/make_quality_eval.py`): precision and recall of the reject verdict, on the tuning split
//! and on the held-out contributors, and the reject rate per category (tuning split only: rules
//! and thresholds are adjusted looking at the tuning split, never at the held-out one). Prints the table the
//! README quotes; fails if the held-out figures fall below the floors. Also checks that shards
//! which judge only their own contributors, remembering everyone else's submissions, give the
//! one scorer's scores exactly.

use std::collections::BTreeMap;

use gata_contract::{ChatTurn, Event, Preference};
use gata_scoring::{Prepared, Scorer, Verdict};
use serde::Deserialize;

#[derive(Deserialize)]
struct Row {
    kind: String,
    label: String,
    category: String,
    split: String,
    event: serde_json::Value,
}

#[derive(Default)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
    tn: usize,
}

impl Counts {
    fn add(&mut self, junk: bool, rejected: bool) {
        match (junk, rejected) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }
    fn precision(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }
    fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }
}

#[test]
fn reject_verdicts_on_the_evaluation_set() {
    let text = evaluation_set();
    let mut scorer = Scorer::default();
    let mut splits: BTreeMap<String, Counts> = BTreeMap::new();
    let mut categories: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut rows = 0;
    for line in text.lines() {
        let row: Row = serde_json::from_str(line).expect("eval row");
        let score = match row.kind.as_str() {
            "chat_turn" => scorer.score_turn(&serde_json::from_value::<ChatTurn>(row.event).expect("turn")),
            _ => scorer.score_preference(&serde_json::from_value::<Preference>(row.event).expect("preference")),
        };
        let rejected = score.verdict == Verdict::Reject;
        let junk = row.label == "junk";
        splits.entry(row.split.clone()).or_default().add(junk, rejected);
        splits.entry("all".into()).or_default().add(junk, rejected);
        if row.split == "tune" {
            let c = categories.entry((row.label.clone(), format!("{} {}", row.kind, row.category))).or_default();
            c.0 += 1;
            c.1 += usize::from(rejected);
        }
        if rejected && row.split == "tune" {
            for r in &score.reasons {
                *reasons.entry(r.code).or_default() += 1;
            }
        }
        rows += 1;
    }
    assert!(rows >= 2000, "the evaluation set has only {rows} submissions");

    println!("\n| split | submissions | precision | recall |\n|---|---:|---:|---:|");
    for (split, c) in &splits {
        println!("| {split} | {} | {:.3} | {:.3} |", c.tp + c.fp + c.fn_ + c.tn, c.precision(), c.recall());
    }
    println!("\n| label | category (tuning split) | submissions | rejected |\n|---|---|---:|---:|");
    for ((label, category), (n, rejected)) in &categories {
        println!("| {label} | {category} | {n} | {:.1}% |", *rejected as f64 * 100.0 / *n as f64);
    }
    println!("\nreasons among rejections (tuning split): {reasons:?}");
    let holdout = &splits["holdout"];
    assert!(holdout.precision() >= 0.9, "held-out precision {:.3}", holdout.precision());
    assert!(holdout.recall() >= 0.8, "held-out recall {:.3}", holdout.recall());
}

fn evaluation_set() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../eval/quality_eval.jsonl");
    std::fs::read_to_string(path).expect("eval/quality_eval.jsonl (python3 eval/make_quality_eval.py)")
}

/// Three shards fold every submission of the evaluation set in the same order, each judging
/// only its own contributors' (as the scoring processor's shards own partitions, which are
/// chosen by contributor) and only remembering the rest ([`Scorer::remember`]). Together
/// their scores are the single scorer's, bit for bit, copies across shards included.
#[test]
fn shards_that_remember_the_others_submissions_judge_their_own_as_one_scorer_does() {
    let events: Vec<Event> = evaluation_set()
        .lines()
        .map(|line| {
            let row: Row = serde_json::from_str(line).expect("eval row");
            match row.kind.as_str() {
                "chat_turn" => Event::ChatTurn(serde_json::from_value(row.event).expect("turn")),
                _ => Event::Preference(serde_json::from_value(row.event).expect("preference")),
            }
        })
        .collect();
    let mut one = Scorer::default();
    let reference: Vec<String> =
        events.iter().map(|e| format!("{:?}", one.score_event(e, Prepared::of(e)).expect("a score"))).collect();
    let shards = 3;
    let shard_of = |e: &Event| e.contributor_id().bytes().fold(0usize, |h, b| h * 31 + usize::from(b)) % shards;
    let mut judged = 0;
    let mut cross_account = 0;
    for shard in 0..shards {
        let mut scorer = Scorer::default();
        for (event, expected) in events.iter().zip(&reference) {
            if shard_of(event) != shard {
                scorer.remember(event, Prepared::remembered(event));
                continue;
            }
            let score = format!("{:?}", scorer.score_event(event, Prepared::of(event)).expect("a score"));
            assert_eq!(&score, expected, "shard {shard}, submission {}", event.event_id());
            judged += 1;
            cross_account += usize::from(score.contains("copied_across_accounts"));
        }
    }
    assert_eq!(judged, events.len());
    assert!(cross_account > 20, "only {cross_account} copies across accounts: the check proves little");
}
