//! Intake first, then the lake: with intake and the log's consumers in one process, a flood of
//! intake on a saturated machine makes the consumers step aside (stop fetching and processing),
//! but cannot starve them: after `background.yield_max` they run again while the flood goes on,
//! and every accepted event lands exactly once. A backlog makes the scorer step aside for the
//! sink, and both finish it. Counts, not timings.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use gata_tests::{Gata, eventually, example};
use tokio_util::sync::CancellationToken;

use crate::bin;

/// One contributor sends every event: no rate limit on intake.
const UNLIMITED: [(&str, &str); 4] = [
    ("GATA__RATE__CONTRIBUTOR_EVENTS__PER_SECOND", "1000000"),
    ("GATA__RATE__CONTRIBUTOR_EVENTS__BURST", "1000000"),
    ("GATA__RATE__INTAKE_EVENTS__PER_SECOND", "1000000"),
    ("GATA__RATE__INTAKE_EVENTS__BURST", "1000000"),
];

/// Any CPU use at all counts as a saturated machine, so the consumers step aside on every
/// machine the test runs on; and no rate limit on intake.
const ALWAYS: [(&str, &str); 7] = [
    ("GATA__BACKGROUND__YIELD_BUSY", "0.000001"),
    ("GATA__BACKGROUND__YIELD_MAX", "1s"),
    ("GATA__BACKGROUND__YIELD_MIN_RUN", "300ms"),
    UNLIMITED[0],
    UNLIMITED[1],
    UNLIMITED[2],
    UNLIMITED[3],
];

#[tokio::test(flavor = "multi_thread")]
async fn an_intake_flood_makes_the_consumers_step_aside_but_never_starves_them() {
    let dir = tempfile::tempdir().unwrap();
    let gata = Gata::start_with(bin(), dir.path(), gata_tests::free_port(), &["--roles", "intake,sink,query"], &ALWAYS)
        .await
        .unwrap();
    let api = gata.client();
    assert_eq!(api.metric("gata_background_yields_total").await.unwrap(), Some(0.0));

    // Eight clients send single chat turns back to back until stopped.
    let accepted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop = CancellationToken::new();
    let mut flood = tokio::task::JoinSet::new();
    for client in 0..8u64 {
        let (api, accepted, stop) = (gata.client(), accepted.clone(), stop.clone());
        flood.spawn(async move {
            let mut event = example("chat_turn");
            for i in 0u64.. {
                if stop.is_cancelled() {
                    break;
                }
                let id = format!("01936f0e-7c2a-7b3e-9a41-{:04x}{i:08x}", client);
                event["event_id"] = id.clone().into();
                event["turn_id"] = format!("turn_{client}_{i}").into();
                let (status, body) = api.post("/v1/chat-turns", "application/json", event.to_string()).await.unwrap();
                assert_eq!(status, 202, "{body}");
                accepted.lock().unwrap().insert(id);
            }
        });
    }

    // The consumers step aside, run again after `yield_max` and step aside again, and rows reach
    // bronze while the flood goes on.
    eventually("the consumers stepping aside twice", Duration::from_secs(120), || async {
        (api.metric("gata_background_yields_total").await.ok()?? >= 2.0).then_some(())
    })
    .await;
    eventually("rows landing during the flood", Duration::from_secs(120), || async {
        (api.count("SELECT COUNT(*) AS n FROM events").await.ok()? > 0).then_some(())
    })
    .await;
    assert!(!flood.is_empty() && flood.try_join_next().is_none(), "the flood is still running");
    let yielded = api.metric("gata_background_yielded_seconds_total").await.unwrap().unwrap();
    assert!(yielded > 0.0, "no time spent aside: {yielded}");

    stop.cancel();
    while let Some(client) = flood.join_next().await {
        client.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    let n = accepted.len() as u64;
    eventually("every accepted event in bronze", Duration::from_secs(120), || async {
        (api.count("SELECT COUNT(*) AS n FROM events").await.ok()? >= n).then_some(())
    })
    .await;
    assert_eq!(api.count("SELECT COUNT(*) AS n FROM events").await.unwrap(), n, "duplicates in bronze");
    assert_eq!(api.count("SELECT COUNT(DISTINCT event_id) AS n FROM events").await.unwrap(), n);
    // Silver is committed after bronze: wait for it too.
    eventually("every accepted event in silver", Duration::from_secs(120), || async {
        (api.count("SELECT COUNT(*) AS n FROM chat_turns").await.ok()? >= n).then_some(())
    })
    .await;
    let (rows, lost, duplicated) = api.lost_and_duplicated(&accepted).await.unwrap();
    assert_eq!((rows as u64, lost, duplicated), (n, 0, 0));
    eventually("the consumers running once intake is quiet", Duration::from_secs(30), || async {
        (api.metric("gata_background_yielding").await.ok()?? == 0.0).then_some(())
    })
    .await;
}

/// More than `gata_infra::foreground::LAKE_BACKLOG` records in one partition.
const BACKLOG: u64 = 30_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_makes_the_scorer_step_aside_for_the_sink_and_both_finish_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = gata_tests::free_port();
    let intake = Gata::start_with(bin(), dir.path(), port, &["--roles", "intake"], &UNLIMITED).await.unwrap();
    let api = intake.client();
    let template = example("chat_turn");
    for batch in 0..BACKLOG / 500 {
        let events: Vec<_> = (batch * 500..(batch + 1) * 500)
            .map(|i| {
                let mut event = template.clone();
                event["event_id"] = format!("01936f0e-7c2a-7b3e-9a41-{i:012x}").into();
                event["turn_id"] = format!("turn_{i}").into();
                event
            })
            .collect();
        let (status, body) = api.post_ndjson("/v1/chat-turns", &events).await.unwrap();
        assert_eq!(status, 202, "{body}");
    }
    drop(intake);

    let roles = ["--roles", "sink,query,scoring"];
    let gata = Gata::start_with(bin(), dir.path(), port, &roles, &ALWAYS).await.unwrap();
    let api = gata.client();
    eventually("the scorer stepping aside for the sink", Duration::from_secs(120), || async {
        (api.metric("gata_background_yields_total").await.ok()?? >= 1.0).then_some(())
    })
    .await;
    eventually("the backlog in bronze", Duration::from_secs(300), || async {
        (api.count("SELECT COUNT(*) AS n FROM events").await.ok()? >= BACKLOG).then_some(())
    })
    .await;
    assert_eq!(api.count("SELECT COUNT(DISTINCT event_id) AS n FROM events").await.unwrap(), BACKLOG);
    assert_eq!(api.count("SELECT COUNT(*) AS n FROM events").await.unwrap(), BACKLOG, "duplicates in bronze");
    eventually("every turn of the backlog scored", Duration::from_secs(300), || async {
        let scored = api.count("SELECT COUNT(DISTINCT subject_event_id) AS n FROM quality_scores").await.ok()?;
        (scored >= BACKLOG).then_some(())
    })
    .await;
    assert_eq!(api.count("SELECT COUNT(*) AS n FROM quality_scores").await.unwrap(), BACKLOG, "duplicate scores");
}
