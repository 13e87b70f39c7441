//! The broker (a standalone `gata broker` process) is SIGKILLed and restarted twice in the middle
//! of a load: once briefly (the producer's retries ride it out) and once for longer than intake's
//! produce timeout (intake answers 503 and the client retries the same batch, some of which the
//! broker may already hold). The sink reconnects on its own. Afterwards every acknowledged event
//! is in the lake exactly once.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use gata_tests::{Broker, Gata, eventually, free_port};

use crate::{bin, workload};

#[tokio::test(flavor = "multi_thread")]
async fn broker_restarts_mid_load_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(bin(), &dir.path().join("broker")).await.unwrap();
    let lake = format!("file://{}", dir.path().join("lake").display());
    let args = ["--brokers", broker.bootstrap.as_str(), "--lake", lake.as_str()];
    let front_args = [&args[..], &["--roles", "intake,query"]].concat();
    let sink_args = [&args[..], &["--roles", "sink"]].concat();
    let front = Gata::start_with(bin(), &dir.path().join("front"), free_port(), &front_args, &[]).await.unwrap();
    let sink = Gata::start_with(bin(), &dir.path().join("sink"), free_port(), &sink_args, &[]).await.unwrap();

    let api = front.client();
    let (turns, _, _) = workload(71, 3000, 0);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let loader = {
        let (api, acked, refused) = (api.clone(), acked.clone(), refused.clone());
        tokio::spawn(async move {
            for batch in turns.chunks(50) {
                // A client that retries the same batch (same event ids) until it is acknowledged.
                let give_up = std::time::Instant::now() + Duration::from_secs(120);
                loop {
                    assert!(std::time::Instant::now() < give_up, "intake refused one batch for 120 s");
                    match api.post_ndjson("/v1/chat-turns", batch).await {
                        Ok((202, _)) => break,
                        Ok((503, _)) | Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Ok((status, body)) => panic!("intake answered {status}: {body}"),
                    }
                }
                acked.lock().unwrap().extend(batch.iter().map(|e| e["event_id"].as_str().unwrap().to_string()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Intake's produce timeout is 10 s: the second outage outlasts it.
    for (threshold, down) in [(800usize, 2), (1800, 14)] {
        eventually(&format!("{threshold} acknowledged before a broker restart"), Duration::from_secs(180), || async {
            (acked.lock().unwrap().len() >= threshold).then_some(())
        })
        .await;
        assert!(!loader.is_finished(), "the load ended before the restart; nothing was tested");
        broker.restart(Duration::from_secs(down)).await.unwrap();
    }
    loader.await.unwrap();
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();

    let landed = || async { api.count("SELECT COUNT(DISTINCT event_id) AS n FROM chat_turns").await.ok() };
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while landed().await.unwrap_or(0) < acked.len() as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "not every acknowledged event landed after 180 s; sink log:\n{}",
            sink.log_text().lines().rev().take(40).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (in_lake, lost, duplicated) = api.lost_and_duplicated(&acked).await.unwrap();
    let bronze = api.count("SELECT COUNT(*) AS n FROM events").await.unwrap();
    println!(
        "broker restart: restarts=2 acked={} refused_requests={} in lake={in_lake} lost={lost} duplicated={duplicated} \
         bronze={bronze}",
        acked.len(),
        refused.load(Ordering::Relaxed)
    );
    assert_eq!((lost, duplicated), (0, 0));
}
