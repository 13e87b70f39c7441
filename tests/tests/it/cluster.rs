//! The scale test: three processes of every role against one `gata broker` and one lake. Three
//! nodes each run intake, the sink, SQL, scoring (shard i of 3), the DVA and rewards. While
//! clients submit chat turns, preferences and image-text pairs to all three, one node is
//! SIGKILLed and restarted, then another: each time one of every role dies. Afterwards every
//! acknowledged submission is in the lake once, each has one score per scorer, every epoch is
//! paid once, and `gata replay --from kafka` (one process recomputing scores, payouts and epoch
//! roots from the log in receipt order) matches what the cluster recorded.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use gata_tests::{Api, Broker, Gata, eventually, free_port};
use serde_json::Value;

use crate::{
    bin,
    rewards::{gata, two_second_policy},
    workload,
};

const NODES: usize = 3;

/// Submits `batches` round-robin over `nodes`; a node that is down or refuses is skipped and the
/// batch sent to the next. Returns how many events were acknowledged.
async fn submit(nodes: Vec<Api>, batches: Vec<(&'static str, Vec<Value>)>, acked: Arc<AtomicUsize>) {
    let mut next = 0;
    for (route, batch) in batches {
        loop {
            let api = &nodes[next % nodes.len()];
            next += 1;
            match api.post_ndjson(route, &batch).await {
                Ok((202, _)) => break,
                Ok((status, body)) => {
                    assert!(status == 503 || status == 429, "{route}: {status} {body}");
                }
                Err(_) => {} // the node is down: the next one takes the batch
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        acked.fetch_add(batch.len(), Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_of_every_role_survive_sigkills_and_match_a_single_process_replay() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(bin(), &dir.path().join("broker")).await.unwrap();
    let lake = format!("file://{}", dir.path().join("lake").display());
    let policy = two_second_policy(dir.path());
    let env = [
        ("GATA__REWARDS__POLICY", policy.as_str()),
        // Long enough for a killed node's sink to be replaced and land what it held, so that
        // no epoch closes before its submissions are in the lake.
        ("GATA__REWARDS__GRACE", "45s"),
        ("GATA__REWARDS__INTERVAL", "500ms"),
    ];
    let ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let node_dir = |i: usize| dir.path().join(format!("node-{i}"));
    let shards: Vec<String> = (0..NODES).map(|i| format!("{i}/{NODES}")).collect();
    let args = |i: usize| -> Vec<&str> {
        let roles = "intake,sink,query,scoring,dva,rewards";
        vec!["--brokers", &broker.bootstrap, "--lake", &lake, "--roles", roles, "--scoring-shard", &shards[i]]
    };
    let start = |i: usize| {
        let (dir, args, port, env) = (node_dir(i), args(i), ports[i], &env);
        async move { Gata::start_with(bin(), &dir, port, &args, env).await }
    };
    let mut nodes = Vec::new();
    for i in 0..NODES {
        nodes.push(start(i).await.unwrap());
    }
    let clients: Vec<Api> = nodes.iter().map(Gata::client).collect();

    let (turns, prefs, images) = workload(73, 1200, 90);
    let submissions = turns.len() + prefs.len() + images.len();
    // Batches of 20 turns, each followed by 20 preferences and now and then 5 images. Batch i
    // of the preferences judges turns of later batches too, so some preferences arrive seconds
    // before their turn: they wait for it in receipt time, as the replay does.
    let mut batches: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (t, p) in turns.chunks(20).zip(prefs.chunks(20).map(Some).chain(std::iter::repeat(None))) {
        batches.push(("/v1/chat-turns", t.to_vec()));
        batches.extend(p.map(|p| ("/v1/preferences", p.to_vec())));
    }
    let (turn_batches, image_batches) = (batches.len(), images.chunks(5).count());
    for (i, chunk) in images.chunks(5).enumerate() {
        batches.insert((i + 1) * turn_batches / (image_batches + 1) + i, ("/v1/image-text-pairs", chunk.to_vec()));
    }
    assert_eq!(batches.iter().map(|(_, b)| b.len()).sum::<usize>(), submissions);
    let acked = Arc::new(AtomicUsize::new(0));
    let loader = tokio::spawn(submit(clients.clone(), batches, acked.clone()));

    // SIGKILL node 1 a third of the way in and node 2 at two thirds, bringing each back.
    let kills = Arc::new(Mutex::new(Vec::new()));
    for (victim, share) in [(1, submissions / 3), (2, 2 * submissions / 3)] {
        eventually(&format!("{share} acknowledged before killing node {victim}"), Duration::from_secs(240), || async {
            (acked.load(Ordering::SeqCst) >= share).then_some(())
        })
        .await;
        nodes[victim].kill();
        kills.lock().unwrap().push((victim, acked.load(Ordering::SeqCst)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        nodes[victim] = start(victim).await.unwrap();
    }
    loader.await.unwrap();
    assert_eq!(acked.load(Ordering::SeqCst), submissions);

    let api = &clients[0];
    let silver = [("chat_turns", turns.len()), ("preferences", prefs.len()), ("image_text_pairs", images.len())];
    for (table, n) in silver {
        let sql = format!("SELECT COUNT(*) AS n FROM {table}");
        eventually(&format!("{n} rows in {table}"), Duration::from_secs(240), || async {
            (api.count(&sql).await.ok()? >= n as u64).then_some(())
        })
        .await;
        let distinct = api.count(&format!("SELECT COUNT(DISTINCT event_id) AS n FROM {table}")).await.unwrap();
        assert_eq!((api.count(&sql).await.unwrap(), distinct), (n as u64, n as u64), "{table}: lost or duplicated");
    }
    let scored = "SELECT COUNT(DISTINCT subject_event_id || scorer_version) AS n FROM quality_scores";
    eventually("every submission scored", Duration::from_secs(240), || async {
        (api.count(scored).await.ok()? >= submissions as u64).then_some(())
    })
    .await;
    let scores = api.count("SELECT COUNT(*) AS n FROM quality_scores").await.unwrap();
    assert_eq!(scores, submissions as u64, "one score per submission and scorer");
    let paid = "SELECT COALESCE(SUM(cardinality(lines)), 0) AS n FROM rewards";
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while api.count(paid).await.unwrap_or(0) < submissions as u64 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let unpaid: Vec<Option<f64>> = futures::future::join_all(clients.iter().map(|c| async move {
        let metrics = reqwest::get(format!("{}/metrics", c.base)).await.ok()?.text().await.ok()?;
        gata_tests::metric(&metrics, "gata_rewards_unscored_total")
    }))
    .await;
    let lines = api.count(paid).await.unwrap();
    assert_eq!(lines, submissions as u64, "payout lines; left unscored when their epoch closed, per node: {unpaid:?}");
    let payouts = api.count("SELECT COUNT(*) AS n FROM rewards").await.unwrap();
    let distinct = api.count("SELECT COUNT(DISTINCT event_id) AS n FROM rewards").await.unwrap();
    let epochs = api.count("SELECT COUNT(DISTINCT epoch) AS n FROM rewards").await.unwrap();
    let roots = api.count("SELECT COUNT(DISTINCT epoch || epoch_root) AS n FROM rewards").await.unwrap();
    assert_eq!((payouts, lines, roots), (distinct, submissions as u64, epochs), "an epoch paid twice or a line lost");
    let remembered: Vec<f64> = futures::future::join_all(clients.iter().map(|c| async move {
        let metrics = reqwest::get(format!("{}/metrics", c.base)).await.unwrap().text().await.unwrap();
        gata_tests::metric(&metrics, "gata_scoring_remembered_total").unwrap_or(0.0)
    }))
    .await;
    for node in &mut nodes {
        node.terminate(Duration::from_secs(30)).await.unwrap();
    }

    // One process recomputes every text score, payout and root from the log.
    let cli_env = vec![("GATA__REWARDS__POLICY", policy.clone())];
    let cli = ["replay", "--from", "kafka", "--brokers", broker.bootstrap.as_str(), "--lake", lake.as_str()];
    let (code, out, err) = gata(&dir.path().join("replay"), &cli_env, &cli);
    println!(
        "cluster: {NODES} nodes, kills at {:?}, {submissions} submissions, {epochs} epochs, {payouts} payouts, shards remembered {remembered:?}\n{out}",
        kills.lock().unwrap()
    );
    // What differs comes first, in few lines, so that CI's excerpt of a failure shows it.
    let differences: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.contains("DIFFERS") || l.starts_with("  event") || l.starts_with("  contributor") || l.starts_with("    ")
        })
        .collect();
    assert_eq!(code, 0, "the replay differs from the record:\n{}\n{err}", differences.join("\n"));
    let text = turns.len() + prefs.len();
    assert!(out.contains(&format!("{text} compared, 0 differ")), "{out}");
    assert!(!out.contains("DIFFERS"), "{out}");
    assert_eq!(
        out.matches(": same root;").count() as u64,
        epochs,
        "every epoch's payouts and root recomputed equal: {out}"
    );
}
