//! HTTP → broker → Delta → SQL, with counts and contents checked.

use std::time::Duration;

use gata_contract::EventKind;
use gata_contract::topics;
use gata_lakehouse::{Lake, TableId, TopicPartition};
use gata_tests::{Gata, eventually, example};
use serde_json::Value;

use crate::{bin, workload};

#[tokio::test(flavor = "multi_thread")]
async fn submissions_land_once_in_the_lake_and_answer_sql() {
    let dir = tempfile::tempdir().unwrap();
    let gata = Gata::start(bin(), dir.path()).await.unwrap();
    let api = gata.client();
    let (turns, prefs, images) = workload(11, 120, 30);

    let (status, body) = api.post_ndjson("/v1/chat-turns", &turns).await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], turns.len());
    assert!(body["events"][0]["offset"].is_i64(), "{body}");
    // A client retry of the same batch: accepted again, counted once downstream.
    let (status, _) = api.post_ndjson("/v1/chat-turns", &turns).await.unwrap();
    assert_eq!(status, 202);
    let (status, body) = api.post_ndjson("/v1/preferences", &prefs).await.unwrap();
    assert_eq!(status, 202, "{body}");
    let (status, body) = api.post_ndjson("/v1/image-text-pairs", &images).await.unwrap();
    assert_eq!(status, 202, "{body}");
    for (name, route) in [
        ("chat_turn", "/v1/chat-turns"),
        ("preference", "/v1/preferences"),
        ("image_text_pair", "/v1/image-text-pairs"),
    ] {
        let (status, body) = api.post(route, "application/json", example(name).to_string()).await.unwrap();
        assert_eq!(status, 202, "{name}: {body}");
    }

    let expect =
        [("chat_turns", turns.len() + 1), ("preferences", prefs.len() + 1), ("image_text_pairs", images.len() + 1)];
    for (table, n) in expect {
        eventually(&format!("{n} rows in {table}"), Duration::from_secs(60), || async {
            let got = api.count(&format!("SELECT COUNT(*) AS n FROM {table}")).await.ok()?;
            (got as usize >= n).then_some(())
        })
        .await;
        let rows = api.count(&format!("SELECT COUNT(*) AS n FROM {table}")).await.unwrap();
        let distinct = api.count(&format!("SELECT COUNT(DISTINCT event_id) AS n FROM {table}")).await.unwrap();
        assert_eq!((rows as usize, distinct as usize), (n, n), "{table}");
    }
    // Bronze keeps the log as it is: the retried batch appears twice there.
    let bronze = api.count("SELECT COUNT(*) AS n FROM events WHERE event_type = 'chat_turn'").await.unwrap();
    assert_eq!(bronze as usize, 2 * turns.len() + 1);

    // Contents: a turn's prompt and answers, a preference's pick, an image's bytes.
    let t = &turns[7];
    let rows = api
        .rows(&format!(
            "SELECT prompt, turn_id, contributor_id, responses FROM chat_turns WHERE event_id = '{}'",
            t["event_id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["prompt"], t["prompt"]);
    assert_eq!(rows[0]["contributor_id"], t["contributor_id"]);
    assert_eq!(rows[0]["responses"].as_array().unwrap().len(), t["responses"].as_array().unwrap().len());
    assert_eq!(rows[0]["responses"][1]["text"], t["responses"][1]["text"]);

    let ex = example("preference");
    let rows = api
        .rows("SELECT chosen_response_id, rating, rejected_response_ids FROM preferences WHERE turn_id = 'turn_000123'")
        .await
        .unwrap();
    assert_eq!(rows[0]["chosen_response_id"], ex["chosen_response_id"]);
    assert_eq!(rows[0]["rating"], ex["rating"]);
    assert_eq!(rows[0]["rejected_response_ids"], ex["rejected_response_ids"]);

    let rows = api.rows("SELECT image_width, image_height, image_content_type, image_size_bytes, caption FROM image_text_pairs WHERE caption = 'Café con leche is love!'").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0]["image_width"].as_i64(), rows[0]["image_height"].as_i64()), (Some(8), Some(8)));
    assert_eq!(rows[0]["image_content_type"], "image/png");

    // The catalogue and the metrics say the same.
    let (status, tables) = api.get("/v1/tables").await.unwrap();
    assert_eq!(status, 200);
    let names: Vec<&str> = tables["tables"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    // Listed by name.
    assert_eq!(
        names,
        [
            "chat_turns",
            "dead_letters",
            "dva_votes",
            "events",
            "image_text_pairs",
            "market_events",
            "preferences",
            "quality_scores",
            "review_labels",
            "rewards"
        ]
    );
    assert!(tables["tables"][0]["columns"].as_array().unwrap().iter().any(|c| c["name"] == "responses"));
    let metrics = reqwest::get(format!("{}/metrics", gata.base)).await.unwrap().text().await.unwrap();
    let accepted = gata_tests::metric(&metrics, "gata_ingest_events_total{kind=\"chat_turn\",outcome=\"accepted\"}")
        .expect("accepted chat turns metric");
    assert_eq!(accepted as usize, 2 * turns.len() + 1);
    // Everything is in the lake, so the lag the sink reports per partition drops to zero.
    eventually("zero lag on every partition", Duration::from_secs(30), || async {
        let metrics = reqwest::get(format!("{}/metrics", gata.base)).await.ok()?.text().await.ok()?;
        let lags = gata_tests::labelled_metrics(&metrics, "gata_sink_lag_records");
        // Four partitions per topic the sink reads: the intake topics and the scores topic.
        (lags.len() == 4 * gata_contract::topics::Feed::ALL.len() && lags.iter().all(|l| *l == 0.0)).then_some(())
    })
    .await;
    // The Grafana dashboard only charts metrics the service really exports.
    let dashboard =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/gata-dashboard.json")).unwrap();
    let metrics = reqwest::get(format!("{}/metrics", gata.base)).await.unwrap().text().await.unwrap();
    for name in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("gata_")) {
        let family = name.trim_end_matches("_bucket").trim_end_matches("_count").trim_end_matches("_sum");
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "dashboard charts {family}, which /metrics does not export"
        );
    }
    let (status, ready) = api.get("/readyz").await.unwrap();
    assert_eq!(status, 200, "{ready}");
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_resumes_from_the_lake_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (turns, _, _) = workload(12, 60, 0);
    let (first, second) = turns.split_at(30);
    {
        let gata = Gata::start(bin(), dir.path()).await.unwrap();
        let api = gata.client();
        assert_eq!(api.post_ndjson("/v1/chat-turns", first).await.unwrap().0, 202);
        eventually("first half landed", Duration::from_secs(60), || async {
            (api.count("SELECT COUNT(*) AS n FROM chat_turns").await.ok()? == 30).then_some(())
        })
        .await;
    } // killed
    let gata = Gata::start(bin(), dir.path()).await.unwrap();
    let api = gata.client();
    assert_eq!(api.post_ndjson("/v1/chat-turns", second).await.unwrap().0, 202);
    eventually("second half landed", Duration::from_secs(60), || async {
        (api.count("SELECT COUNT(*) AS n FROM chat_turns").await.ok()? >= 60).then_some(())
    })
    .await;
    let ids: Vec<Value> = api.rows("SELECT event_id FROM chat_turns").await.unwrap();
    assert_eq!(ids.len(), 60, "duplicated or lost after restart");
    assert_eq!(api.count("SELECT COUNT(*) AS n FROM events").await.unwrap(), 60, "bronze re-ingested after restart");
}

/// A flush that brings a table no rows skips its commit (the dead-letter table, while every
/// record decodes); shutdown then records its positions, so a restart re-reads nothing.
#[tokio::test(flavor = "multi_thread")]
async fn tables_without_new_rows_record_their_positions_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut gata = Gata::start_with(bin(), dir.path(), gata_tests::free_port(), &["--roles", "intake,sink,query"], &[])
        .await
        .unwrap();
    let api = gata.client();
    let (turns, _, _) = workload(13, 30, 0);
    for (i, part) in turns.chunks(10).enumerate() {
        assert_eq!(api.post_ndjson("/v1/chat-turns", part).await.unwrap().0, 202);
        let landed = 10 * (i as u64 + 1);
        eventually("the part landed", Duration::from_secs(60), || async {
            (api.count("SELECT COUNT(*) AS n FROM events").await.ok()? == landed).then_some(())
        })
        .await;
    }
    let lake = Lake::new(&format!("file://{}", dir.path().join("lake").display()), &Default::default()).unwrap();
    let version = |id| {
        let lake = lake.clone();
        async move { lake.open(id).await.unwrap().version() }
    };
    assert!(version(TableId::Events).await >= Some(3), "one commit per part at least");
    assert_eq!(version(TableId::DeadLetters).await, Some(0), "no commit of positions alone while flushing");

    gata.terminate(Duration::from_secs(60)).await.unwrap();
    let topic = topics::intake_topic(EventKind::ChatTurn);
    let partitions: Vec<TopicPartition> = (0..4).map(|p| TopicPartition::new(topic, p)).collect();
    let positions = |id| {
        let (lake, partitions) = (lake.clone(), partitions.clone());
        async move { lake.positions(&lake.open(id).await.unwrap(), id, partitions).await.unwrap() }
    };
    let bronze = positions(TableId::Events).await;
    assert!(!bronze.is_empty());
    assert_eq!(positions(TableId::DeadLetters).await, bronze, "shutdown records every table's positions");
    assert_eq!(positions(TableId::ChatTurns).await, bronze);
}
