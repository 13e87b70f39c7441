//! Signed submissions benchmark (not a test): `cargo bench -p gata-infra --bench provenance`.
//!
//! What a signed event costs intake, side by side in one run: parsing and validating chat turns
//! (what every event pays), then the same with the author's EIP-712 signature checked (canonical
//! bytes, keccak-256, secp256k1 recovery), on one core. Prints events per second, microseconds
//! per event and the ratio.

use std::time::Instant;

use gata_contract::{Event, EventKind, Limits};
use gata_infra::workload::Workload;
use gata_wallet::Account;

fn main() {
    // `cargo test --all-targets` runs bench binaries too; measure only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("provenance: a benchmark, not a test; run it with `cargo bench -p gata-infra --bench provenance`");
        return;
    }
    let author = Account::from_private_key_hex(&"5a".repeat(32)).expect("key");
    let limits = Limits::default();
    let events: Vec<Event> = Workload::new(11, 50)
        .events(5_000, 0)
        .into_iter()
        .filter_map(|e| match e {
            Event::ChatTurn(mut t) => {
                t.contributor_id = author.address().to_string();
                let unsigned = Event::ChatTurn(t.clone());
                let signature = author.sign_digest(&unsigned.signing_digest(56)).expect("sign");
                t.signature = Some(format!("0x{}", hex::encode(signature)));
                Some(Event::ChatTurn(t))
            }
            _ => None,
        })
        .collect();
    let lines: Vec<Vec<u8>> = events.iter().map(Event::to_json).collect();
    let n = lines.len();
    let time = |check: bool| {
        let started = Instant::now();
        for line in &lines {
            let event = Event::parse(EventKind::ChatTurn, line, &limits).expect("valid");
            if check {
                event.check_signature(56).expect("the author's signature");
            }
        }
        started.elapsed()
    };
    time(true); // warm-up
    let parse = time(false);
    let signed = time(true);
    let row = |what: &str, d: std::time::Duration, ratio: String| {
        let per = d.as_secs_f64() / n as f64;
        println!("| {what} | {n} | {:.0} | {:.1} | {ratio} |", 1.0 / per, per * 1e6);
    };
    println!("| intake step, one core | events | events/s | µs/event | vs parse |");
    println!("|---|---:|---:|---:|---:|");
    row("parse + validate (every event)", parse, "1.00x".into());
    row(
        "parse + validate + EIP-712 signature check",
        signed,
        format!("{:.2}x", signed.as_secs_f64() / parse.as_secs_f64()),
    );
}
