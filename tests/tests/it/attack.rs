//! The attack suite: one real `gata serve` with principals configured, a steady legitimate load
//! (a contributor submitting, an analyst querying), and every attack on the budgets at once.
//! It asserts that the process never dies, that each attack gets a 4xx/408/429 with a JSON
//! reason, that the legitimate requests keep succeeding, and that resident memory stays under
//! [`RSS_CEILING`] (sampled from `/proc`). Latency under attack is for the benchmark, not here.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::join_all;
use gata_tests::{Api, Gata, example, principals_env};
use serde_json::{Value, json};

use crate::bin;

const ROOT: &str = "tok-root-0123456789";
const ANALYST: &str = "tok-analyst-0123456789";
const MALLORY: &str = "tok-mallory-0123456789";
const FLOOD: &str = "tok-flood-0123456789";

/// Resident memory the server must stay under while attacked.
const RSS_CEILING: u64 = 1536 << 20;

/// Resident memory of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// What the legitimate load saw.
#[derive(Default)]
struct Legit {
    ok: AtomicU64,
    failed: AtomicU64,
}

fn turn(i: u64, contributor: &str) -> Value {
    let mut t = example("chat_turn");
    t["event_id"] = json!(format!("01936f0e-7c2a-7b3e-9a41-{i:012}"));
    t["contributor_id"] = json!(contributor);
    t["turn_id"] = json!(format!("turn_legit_{i}"));
    t["prompt"] = json!(format!("Legitimate question number {i}: how long should bread dough rest?"));
    t
}

/// Posts `body` and returns status, the `Retry-After` header and the JSON error code.
async fn attempt(api: &Api, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Option<String>, Value) {
    let resp = api.request(reqwest::Method::POST, path).header("content-type", content_type).body(body).send().await;
    let resp = resp.unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, retry, body["error"]["code"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_request_crashes_stalls_or_starves_the_platform() {
    let dir = tempfile::tempdir().unwrap();
    let principals = principals_env(&[
        ("root", "admin", ROOT, ""),
        ("ana", "analyst", ANALYST, r#",datasets=["chat"]"#),
        ("mallory", "analyst", MALLORY, r#",datasets=["chat"]"#),
        ("flood", "analyst", FLOOD, r#",datasets=["chat"]"#),
    ]);
    let env = [
        ("GATA__AUTH__PRINCIPALS", principals.as_str()),
        ("GATA__RATE__SQL__PER_SECOND", "2"),
        ("GATA__RATE__SQL__BURST", "10"),
        ("GATA__RATE__CONTRIBUTOR_EVENTS__PER_SECOND", "1"),
        ("GATA__RATE__CONTRIBUTOR_EVENTS__BURST", "20"),
        ("GATA__HTTP__HEADER_READ_TIMEOUT", "2s"),
        ("GATA__HTTP__MAX_CONNECTIONS", "64"),
        ("GATA__INGEST__MAX_BODY_BYTES", "1048576"),
        ("GATA__QUERY__TIMEOUT", "3s"),
    ];
    let roles = ["--roles", "intake,sink,query"];
    let mut gata = Gata::start_with(bin(), dir.path(), gata_tests::free_port(), &roles, &env).await.unwrap();
    let pid = gata.pid();
    let addr = gata.base.trim_start_matches("http://").to_string();
    let api = gata.client();
    let (root, analyst, mallory, flood) =
        (api.with_token(ROOT), api.with_token(ANALYST), api.with_token(MALLORY), api.with_token(FLOOD));

    // Memory, sampled all along.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // The legitimate load: a new contributor's turn and an analyst's query, once a second.
    // `paused` holds it while the connection table is deliberately full.
    let legit = Arc::new(Legit::default());
    let paused = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, paused, legit, root, analyst) =
            (stop.clone(), paused.clone(), legit.clone(), root.clone(), analyst.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if paused.load(Ordering::Relaxed) {
                    continue;
                }
                i += 1;
                let body = turn(i, &format!("ctr_legit_{i}")).to_string();
                let submitted = root.post("/v1/chat-turns", "application/json", body).await;
                let queried = analyst.sql("SELECT COUNT(*) AS n FROM chat_turns").await;
                for ok in [matches!(submitted, Ok((202, _))), matches!(queried, Ok((200, _)))] {
                    let counter = if ok { &legit.ok } else { &legit.failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // SQL whose result size the caller controls: refused with the budget named; SQL that would
    // run for hours: stopped at query.timeout (408).
    for bomb in [
        "SELECT length(repeat(arrow_cast('x', 'LargeUtf8'), 1000000000000)) AS n",
        "SELECT cardinality(array_repeat(1, 1000000000)) AS n",
        "SELECT count(*) FROM generate_series(1, 100000000000)",
    ] {
        let (s, _, code) =
            attempt(&mallory, "/v1/sql", "application/json", json!({ "sql": bomb }).to_string().into()).await;
        assert!((400..500).contains(&s), "{bomb}: {s} {code}");
        assert!(code.is_string(), "{bomb}: a JSON reason");
    }

    // A statement flood: the principal's bucket empties, 429 with Retry-After, others unaffected.
    let sql = json!({ "sql": "SELECT 1 AS n" }).to_string();
    let answers = join_all((0..30).map(|_| attempt(&flood, "/v1/sql", "application/json", sql.clone().into()))).await;
    let mut limited = 0;
    for (s, retry, code) in answers {
        if s == 429 {
            limited += 1;
            assert_eq!(code, "rate_limited");
            assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
        } else {
            assert_eq!(s, 200);
        }
    }
    assert!(limited >= 10, "a burst of 10 then 2/s lets about 10 of 30 through: {limited} refused");

    // A bot contributor: its burst passes, then it is slowed at the door.
    let bot = (0..40).map(|i| turn(10_000 + i, "ctr_bot").to_string());
    let answers = join_all(bot.map(|t| attempt(&root, "/v1/chat-turns", "application/json", t.into()))).await;
    let mut bot_limited = 0;
    for (s, retry, code) in answers {
        if s == 429 {
            bot_limited += 1;
            assert_eq!(code, "rate_limited");
            assert!(retry.is_some());
        } else {
            assert_eq!(s, 202, "{code}");
        }
    }
    assert!(bot_limited >= 15, "{bot_limited} of 40 refused");

    // Contract bounds: a preference rejecting 10 000 answers, a body over the limit, JSON nested
    // past any parser's patience.
    let mut pref = example("preference");
    pref["rejected_response_ids"] = json!((0..10_000).map(|i| format!("rsp_{i}")).collect::<Vec<_>>());
    let (s, _, code) = attempt(&root, "/v1/preferences", "application/json", pref.to_string().into()).await;
    assert_eq!((s, code.as_str()), (422, Some("invalid_event")));
    let (s, _, code) = attempt(&root, "/v1/chat-turns", "application/x-ndjson", vec![b'{'; 2 << 20]).await;
    assert_eq!((s, code.as_str()), (413, Some("body_too_large")));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (s, _, code) = attempt(&root, "/v1/chat-turns", "application/json", deep.into()).await;
    assert!(matches!(s, 400 | 422) && code.is_string(), "{s} {code}");
    let (s, _, code) = attempt(&mallory, "/v1/sql", "application/json", deep_sql().into()).await;
    assert!((400..500).contains(&s) && code.is_string(), "{s} {code}");

    // Slow headers (slowloris): connections that never finish their headers are closed after
    // http.header_read_timeout, while the legitimate load goes on beside them.
    let slow: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut c = TcpStream::connect(&addr).unwrap();
            c.write_all(b"POST /v1/sql HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").unwrap();
            c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            c
        })
        .collect();
    let started = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        // Closed (or reset, the request being unread) by the server, not timed out on our side.
        let closed = |c: &TcpStream| match (&*c).read(&mut [0u8; 512]) {
            Ok(_) => true,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        };
        slow.iter().filter(|c| closed(c)).count()
    })
    .await
    .unwrap();
    assert_eq!(closed, 40);
    assert!(started.elapsed() < Duration::from_secs(12), "closed after {:?}", started.elapsed());

    // A connection flood past http.max_connections: the excess is closed at once, and the server
    // answers again as soon as the flood lets go.
    paused.store(true, Ordering::Relaxed);
    let held: Vec<TcpStream> = (0..80).filter_map(|_| TcpStream::connect(&addr).ok()).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused_now = held
        .iter()
        .filter(|c| {
            c.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
            matches!((&**c).read(&mut [0u8; 1]), Ok(0))
        })
        .count();
    assert!(refused_now >= 10, "{refused_now} of 80 connections closed on accept");
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;
    paused.store(false, Ordering::Relaxed);
    let metrics = root.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gata_http_connections_refused_total"), "refusals are counted");
    assert!(metrics.contains("gata_rate_limited_total{limit=\"sql\"}"), "rate limits are counted");

    // Unauthenticated /readyz in a burst (within the connection cap): every probe answered.
    let probes: Vec<_> = (0..40)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.request(reqwest::Method::GET, "/readyz").send().await.map(|r| r.status()) })
        })
        .collect();
    for p in probes {
        assert_eq!(p.await.unwrap().unwrap(), 200);
    }

    // Let the legitimate load run a little past the attacks, then look at everything.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    sampler.await.unwrap();
    assert!(gata.is_running(), "the server survived:\n{}", gata.log_text());
    let (ok, failed) = (legit.ok.load(Ordering::Relaxed), legit.failed.load(Ordering::Relaxed));
    assert!(ok >= 10 && failed == 0, "legitimate requests: {ok} succeeded, {failed} failed");
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak > 0 && peak < RSS_CEILING, "peak RSS {} MiB", peak >> 20);
    let (s, _) = analyst.sql("SELECT COUNT(*) AS n FROM chat_turns").await.unwrap();
    assert_eq!(s, 200, "the next query after the attacks succeeds");
}

/// A SELECT nesting parentheses far past the SQL parser's recursion limit.
fn deep_sql() -> String {
    json!({ "sql": format!("SELECT {}1{}", "(".repeat(50_000), ")".repeat(50_000)) }).to_string()
}
