//! `gata demo --once` on a fresh data directory, started from another working directory, with
//! the DVA on tract (as on a machine without ONNX Runtime): the report says what happened and the
//! logs went to their file; from the lake, the DVA scored every demo pair, reward epochs closed
//! with roots that `gata rewards verify` accepts, and `gata replay` finds no difference. Then
//! `gata serve` over the same data serves the demo listing to the `delta-sharing` client (every
//! table loads, as many rows as SQL shows) and renders the pages the demo advertises.

use std::{path::Path, process::Command};

use gata_tests::{Gata, free_port};
use serde_json::Value;

use crate::bin;

const IMAGES: u64 = 20;

/// Runs `gata ARGS` with `env` (and the demo's reward policy) and returns its stdout; fails on a
/// non-zero exit.
fn gata(args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new(bin());
    cmd.args(args).env("GATA__REWARDS__POLICY", "demo");
    let out = match stdin {
        None => cmd.output().unwrap(),
        Some(text) => {
            use std::io::Write as _;
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "gata {args:?}: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

fn count(data_dir: &Path, sql: &str) -> u64 {
    let out = gata(&["sql", sql, "--data-dir", data_dir.to_str().unwrap(), "--format", "json"], None);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    rows[0]["n"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_scores_pays_proves_and_replays_without_onnx_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let port = free_port().to_string();
    let images = IMAGES.to_string();
    let demo = tokio::task::spawn_blocking({
        let data_dir = data_dir.clone();
        move || {
            Command::new(bin())
                .args(["demo", "--once", "--turns", "120", "--images", &images, "--contributors", "30"])
                .args(["--seed", "21", "--http", &format!("127.0.0.1:{port}"), "--data-dir"])
                .arg(&data_dir)
                .env("GATA__DVA__ENGINE", "tract")
                .env("GATA__QUERY__FLIGHT_ADDR", "127.0.0.1:0")
                .current_dir(&elsewhere)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&demo.stdout).to_string();
    assert!(demo.status.success(), "gata demo: {}\n{report}\n{}", demo.status, String::from_utf8_lossy(&demo.stderr));
    println!("{report}");
    for line in ["Every image-text pair scored by the DVA", "engine=\"tract\"", "verify: valid:", "no difference"] {
        assert!(report.contains(line), "the report lacks {line:?}");
    }
    let log = std::fs::read_to_string(data_dir.join("gata-demo.log")).unwrap();
    assert!(log.contains("DVA model loaded") && log.contains("tract"), "{log}");
    assert!(!report.contains("DVA model loaded"), "logs stay out of the report");

    // From the lake: the DVA scored every pair the demo sent.
    let d = data_dir.to_str().unwrap();
    assert_eq!(count(&data_dir, "SELECT COUNT(*) AS n FROM image_text_pairs"), IMAGES);
    let scored = "SELECT COUNT(DISTINCT s.subject_event_id) AS n FROM quality_scores s \
                  JOIN image_text_pairs p ON p.event_id = s.subject_event_id WHERE s.scorer_version LIKE 'dva/%'";
    assert_eq!(count(&data_dir, scored), IMAGES);

    // At least one epoch closed; a contributor's proof verifies against the recorded root.
    let epochs = gata(&["rewards", "epochs", "--data-dir", d], None);
    let closed: Vec<Vec<&str>> = epochs.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert!(!closed.is_empty(), "{epochs}");
    let busiest = closed.iter().max_by_key(|c| c[3].parse::<u64>().unwrap()).unwrap();
    let (epoch, root) = (busiest[0], busiest[5]);
    assert_eq!(busiest[2], "demo", "{epochs}");
    let account = count_account(&data_dir, epoch);
    let proof = gata(&["rewards", "proof", "--epoch", epoch, "--contributor", &account, "--data-dir", d], None);
    let verdict = gata(&["rewards", "verify", "-", "--root", root], Some(&proof));
    assert!(verdict.starts_with(&format!("valid: {account} is paid")), "{verdict}");

    // Replay from the bronze log recomputes scores, epochs and statistics with no difference.
    let replay = gata(&["replay", "--data-dir", d], None);
    assert!(replay.contains(&format!("epoch {epoch} (")) && replay.contains("same root"), "{replay}");
    assert!(!replay.contains("DIFFERS"), "{replay}");

    // What the demo advertises works with its reference clients, over the same data.
    let server = Gata::start_free(bin(), &data_dir, &[("GATA__DVA__ENGINE", "tract")]).await.unwrap();
    let api = server.client();
    let shared = crate::marketplace::sharing_client(&format!("{}/delta-sharing", server.base), "local", dir.path());
    for table in ["chat_turns", "preferences"] {
        let loaded = &shared["tables"][format!("demo_chat.default.{table}")];
        let rows = api.rows(&format!("SELECT COUNT(*) AS n FROM demo_chat.{table}")).await.unwrap();
        assert_eq!(loaded["event_ids"].as_array().map(Vec::len), rows[0]["n"].as_u64().map(|n| n as usize), "{table}");
        assert!(rows[0]["n"].as_u64().unwrap() > 0, "{table}");
    }
    for page in ["/market", "/review"] {
        let resp = api.request(reqwest::Method::GET, page).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{page}");
        assert!(resp.text().await.unwrap().contains("<html"), "{page}");
    }
}

/// The account with the largest payout in `epoch`.
fn count_account(data_dir: &Path, epoch: &str) -> String {
    let sql = format!("SELECT account FROM rewards WHERE epoch = {epoch} ORDER BY amount DESC, account LIMIT 1");
    let out = gata(&["sql", &sql, "--data-dir", data_dir.to_str().unwrap(), "--format", "json"], None);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    rows[0]["account"].as_str().unwrap().to_string()
}

/// A demo that cannot bind its ports stops at once and names the address and its setting,
/// rather than a bare "stopped before it was ready".
#[test]
fn a_demo_whose_port_is_taken_names_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["demo", "--once", "--turns", "5", "--images", "0", "--data-dir"])
        .arg(dir.path())
        .args(["--http", &format!("127.0.0.1:{}", free_port())])
        .env("GATA__QUERY__FLIGHT_ADDR", &addr)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&addr) && stderr.contains("query.flight_addr"), "{stderr}");
    assert!(stderr.contains("Address already in use"), "{stderr}");
}
