#![allow(clippy::unwrap_used)] // a test crate: a failed unwrap is a failed test
//! End-to-end suite: real `gata serve` processes (embedded Kafka-protocol broker, Delta tables
//! on a temp dir, HTTP on loopback), driven through the public API.

mod api_contract;
mod architecture;
mod attack;
mod backlog;
mod bad_input;
mod broker_restart;
mod browser;
mod cluster;
mod consistency;
mod crash;
mod dead_letters;
mod demo;
mod dva;
mod dva_consensus;
mod dva_head;
mod e2e;
mod export;
mod foreground;
mod forgery;
mod fuzz;
mod identity;
mod kafka_auth;
mod labelling;
mod maintenance;
mod marketplace;
mod mirror;
mod rewards;
mod s3;
mod sail;
mod scale_out;
mod scoring;
mod scoring_shards;
mod sql;
mod validation;

use std::path::Path;

use gata_contract::Event;
use gata_infra::workload::Workload;
use serde_json::Value;

/// The `gata` binary under test.
fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gata"))
}

/// Seeded events as JSON, split by kind: (turns, preferences, images).
pub(crate) fn workload(seed: u64, turns: usize, images: usize) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let events = Workload::new(seed, 40).events(turns, images);
    let json = |f: fn(&Event) -> bool| -> Vec<Value> {
        events.iter().filter(|e| f(e)).map(|e| serde_json::to_value(e).expect("event JSON")).collect()
    };
    (
        json(|e| matches!(e, Event::ChatTurn(_))),
        json(|e| matches!(e, Event::Preference(_))),
        json(|e| matches!(e, Event::ImageTextPair(_))),
    )
}
