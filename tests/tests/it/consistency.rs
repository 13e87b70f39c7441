//! Consistent reads across query instances: two `gata serve` processes share a broker and a
//! lake; every grant written on one answers its log position, and the other, given that
//! position, shows the grant on the very next read. Bad and unreachable positions are refused.

use std::time::{Duration, Instant};

use gata_tests::{Broker, Gata, free_port};
use serde_json::{Value, json};

use crate::bin;

#[tokio::test(flavor = "multi_thread")]
async fn a_write_on_one_instance_is_read_on_another_given_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(bin(), &dir.path().join("broker")).await.unwrap();
    let lake = format!("file://{}", dir.path().join("lake").display());
    let shared = ["--brokers", broker.bootstrap.as_str(), "--lake", lake.as_str()];
    let writer_args = [&shared[..], &["--roles", "sink,query"]].concat();
    let reader_args = [&shared[..], &["--roles", "query"]].concat();
    let writer = Gata::start_with(bin(), &dir.path().join("a"), free_port(), &writer_args, &[]).await.unwrap();
    let reader = Gata::start_with(bin(), &dir.path().join("b"), free_port(), &reader_args, &[]).await.unwrap();
    let (a, b) = (writer.client(), reader.client());

    for i in 0..12 {
        let who = format!("consistent_{i}");
        let grant = a
            .request(reqwest::Method::POST, "/v1/marketplace/grants")
            .json(&json!({"contributor_id": who}))
            .send()
            .await
            .unwrap();
        assert_eq!(grant.status(), 200);
        let position = grant.headers()["x-gata-log-position"].to_str().unwrap().to_string();
        assert!(position.split_once(':').is_some_and(|(p, o)| p.parse::<i32>().is_ok() && o.parse::<i64>().is_ok()));
        let read = b
            .request(reqwest::Method::GET, "/v1/marketplace/grants")
            .header("x-gata-after", &position)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200);
        let grants: Value = read.json().await.unwrap();
        let mine = grants["grants"].as_array().unwrap().iter().find(|g| g["contributor_id"] == who.as_str());
        assert!(mine.is_some_and(|g| g["everyone"] == true), "{who} after {position}: {grants}");
    }

    // A malformed position is a client error; one the log never reaches is a 503 after the wait.
    let bad = b.request(reqwest::Method::GET, "/v1/marketplace/grants").header("x-gata-after", "zero").send();
    assert!(bad.await.unwrap().status().is_client_error());
    let started = Instant::now();
    let never = b.request(reqwest::Method::GET, "/v1/marketplace/grants").header("x-gata-after", "0:999999999").send();
    let never = never.await.unwrap();
    assert_eq!(never.status(), 503);
    assert!(never.headers().contains_key("retry-after"));
    assert!(started.elapsed() >= Duration::from_secs(9), "waited its bound: {:?}", started.elapsed());
}
