//! SIGKILL of the process holding broker, intake and sink in the middle of a load: after a
//! restart, every event whose batch was acknowledged (202) is in the lake exactly once.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use gata_tests::{Gata, eventually, free_port};

use crate::{bin, workload};

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut gata = Gata::start_on(bin(), dir.path(), port, &[]).await.unwrap();
    let api = gata.client();
    let (turns, _, _) = workload(31, 6000, 0);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();

    let loader = {
        let (api, acked) = (api.clone(), acked.clone());
        tokio::spawn(async move {
            for batch in turns.chunks(50) {
                match api.post_ndjson("/v1/chat-turns", batch).await {
                    Ok((202, _)) => {
                        acked.lock().unwrap().extend(batch.iter().map(|e| e["event_id"].as_str().unwrap().to_string()))
                    }
                    _ => break,
                }
            }
        })
    };
    eventually("1500 acknowledged events before the kill", Duration::from_secs(120), || async {
        (acked.lock().unwrap().len() >= 1500).then_some(())
    })
    .await;
    gata.kill();
    loader.await.unwrap();
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(acked.len() < 6000, "the kill landed after the whole load; nothing was tested");

    let gata = Gata::start_on(bin(), dir.path(), port, &[]).await.unwrap();
    let api = gata.client();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let landed = api.count("SELECT COUNT(DISTINCT event_id) AS n FROM chat_turns").await.unwrap_or(0) as usize;
        if landed >= acked.len() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let log = gata.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "{landed} of {} acknowledged events landed after 180 s; log (newest first):\n{}",
                acked.len(),
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (in_lake, lost, duplicated) = api.lost_and_duplicated(&acked).await.unwrap();
    println!("crash: acked={} in lake={} lost={lost} duplicated={duplicated}", acked.len(), in_lake);
    assert_eq!((lost, duplicated), (0, 0));
}
