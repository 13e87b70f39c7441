//! Sinks as separate processes in one consumer group: the partitions split between them, and
//! while they are SIGKILLed one after the other mid-load (and restarted) every acknowledged
//! event is still in the lake exactly once.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use gata_tests::{Broker, Gata, eventually, free_port};

use crate::{bin, workload};

#[tokio::test(flavor = "multi_thread")]
async fn sinks_split_partitions_and_survive_repeated_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(bin(), &dir.path().join("broker")).await.unwrap();
    let lake = format!("file://{}", dir.path().join("lake").display());
    let shared = ["--brokers", broker.bootstrap.as_str(), "--lake", lake.as_str()];
    let front_args = [&shared[..], &["--roles", "intake,query"]].concat();
    let sink_args = [&shared[..], &["--roles", "sink"]].concat();
    let front = Gata::start_with(bin(), &dir.path().join("front"), free_port(), &front_args, &[]).await.unwrap();
    let ports = [free_port(), free_port()];
    let sink_dir = |i: usize| dir.path().join(format!("sink-{i}"));
    let mut sinks = [
        Gata::start_with(bin(), &sink_dir(0), ports[0], &sink_args, &[]).await.unwrap(),
        Gata::start_with(bin(), &sink_dir(1), ports[1], &sink_args, &[]).await.unwrap(),
    ];
    let owns_partitions =
        |g: &Gata| g.log_text().lines().any(|l| l.contains("partitions assigned") && l.contains("partition: "));
    eventually("both sinks owning partitions", Duration::from_secs(60), || async {
        sinks.iter().all(owns_partitions).then_some(())
    })
    .await;

    let api = front.client();
    let (turns, _, _) = workload(61, 4000, 0);
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
    // Kill the sinks in turn, each while the load runs, and bring each back.
    for (round, threshold) in [800usize, 1600, 2400].into_iter().enumerate() {
        eventually(&format!("{threshold} acknowledged before kill {round}"), Duration::from_secs(120), || async {
            (acked.lock().unwrap().len() >= threshold).then_some(())
        })
        .await;
        let victim = round % 2;
        sinks[victim].kill();
        tokio::time::sleep(Duration::from_secs(1)).await;
        sinks[victim] = Gata::start_with(bin(), &sink_dir(victim), ports[victim], &sink_args, &[]).await.unwrap();
    }
    loader.await.unwrap();
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();

    eventually("every acknowledged event in the lake", Duration::from_secs(180), || async {
        (api.count("SELECT COUNT(DISTINCT event_id) AS n FROM chat_turns").await.ok()? as usize >= acked.len())
            .then_some(())
    })
    .await;
    let (in_lake, lost, duplicated) = api.lost_and_duplicated(&acked).await.unwrap();
    let bronze = api.count("SELECT COUNT(*) AS n FROM events").await.unwrap() as usize;
    println!(
        "scale-out: kills=3 acked={} in lake={} lost={lost} duplicated={duplicated} bronze={bronze}",
        acked.len(),
        in_lake
    );
    assert_eq!((lost, duplicated, bronze), (0, 0, acked.len()));
}
