//! Sinks as separate processes in one consumer group: the partitions split between them, and
//! when one is SIGKILLed mid-load (and later restarted) every acknowledged event is still in the
//! lake exactly once.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use gata_tests::{Broker, Gata, eventually, free_port};

use crate::{bin, workload};

#[tokio::test(flavor = "multi_thread")]
async fn sinks_split_partitions_and_survive_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(bin(), &dir.path().join("broker")).await.unwrap();
    let lake = format!("file://{}", dir.path().join("lake").display());
    let shared = ["--brokers", broker.bootstrap.as_str(), "--lake", lake.as_str()];
    let front_args = [&shared[..], &["--roles", "intake,query"]].concat();
    let sink_args = [&shared[..], &["--roles", "sink"]].concat();
    let front = Gata::start_with(bin(), &dir.path().join("front"), free_port(), &front_args, &[]).await.unwrap();
    let sink_port = free_port();
    let mut sink_a = Gata::start_with(bin(), &dir.path().join("sink-a"), sink_port, &sink_args, &[]).await.unwrap();
    let sink_b = Gata::start_with(bin(), &dir.path().join("sink-b"), free_port(), &sink_args, &[]).await.unwrap();
    let owns_partitions =
        |g: &Gata| g.log_text().lines().any(|l| l.contains("partitions assigned") && l.contains("partition: "));
    eventually("both sinks owning partitions", Duration::from_secs(60), || async {
        (owns_partitions(&sink_a) && owns_partitions(&sink_b)).then_some(())
    })
    .await;

    let api = front.client();
    let (turns, _, _) = workload(61, 3000, 0);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let loader = {
        let (api, acked) = (api.clone(), acked.clone());
        tokio::spawn(async move {
            for batch in turns.chunks(50) {
                let (status, body) = api.post_ndjson("/v1/chat-turns", batch).await.unwrap();
                assert_eq!(status, 202, "{body}");
                acked.lock().unwrap().extend(batch.iter().map(|e| e["event_id"].as_str().unwrap().to_string()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    eventually("1000 acknowledged before the kill", Duration::from_secs(120), || async {
        (acked.lock().unwrap().len() >= 1000).then_some(())
    })
    .await;
    sink_a.kill();
    eventually("2000 acknowledged before the restart", Duration::from_secs(120), || async {
        (acked.lock().unwrap().len() >= 2000).then_some(())
    })
    .await;
    let _sink_a = Gata::start_with(bin(), &dir.path().join("sink-a"), sink_port, &sink_args, &[]).await.unwrap();
    loader.await.unwrap();
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();

    eventually("every acknowledged event in the lake", Duration::from_secs(180), || async {
        (api.count("SELECT COUNT(DISTINCT event_id) AS n FROM chat_turns").await.ok()? as usize >= acked.len())
            .then_some(())
    })
    .await;
    let rows = api.rows("SELECT event_id FROM chat_turns").await.unwrap();
    let have: Vec<String> = rows.iter().map(|r| r["event_id"].as_str().unwrap().to_string()).collect();
    let distinct: HashSet<&String> = have.iter().collect();
    let lost = acked.iter().filter(|id| !distinct.contains(id)).count();
    let duplicated = have.len() - distinct.len();
    let bronze = api.count("SELECT COUNT(*) AS n FROM events").await.unwrap() as usize;
    println!(
        "scale-out: acked={} in lake={} lost={lost} duplicated={duplicated} bronze={bronze}",
        acked.len(),
        have.len()
    );
    assert_eq!((lost, duplicated, bronze), (0, 0, acked.len()));
}
