//! Background maintenance compacts the sink's small files while the sink keeps writing, and
//! nothing is lost or repeated.

use std::time::Duration;

use gata_tests::{Api, Gata, eventually, free_port};
use serde_json::Value;

use crate::{bin, workload};

async fn chat_turn_files(api: &Api) -> Option<u64> {
    let (_, tables) = api.get("/v1/tables").await.ok()?;
    tables["tables"].as_array()?.iter().find(|t| t["name"] == "chat_turns").and_then(|t| t["files"].as_u64())
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_runs_beside_the_sink_without_losing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("GATA__MAINTENANCE__OPTIMIZE_INTERVAL", "2s"), ("GATA__LAKE__FLUSH_INTERVAL", "20ms")];
    let gata = Gata::start_on(bin(), dir.path(), free_port(), &env).await.unwrap();
    let api = gata.client();
    let (turns, _, _) = workload(51, 400, 0);
    let mut sent = 0;
    for batch in turns.chunks(20) {
        assert_eq!(api.post_ndjson("/v1/chat-turns", batch).await.unwrap().0, 202);
        sent += batch.len();
        eventually("the batch to land", Duration::from_secs(30), || async {
            (api.count("SELECT COUNT(*) AS n FROM chat_turns").await.ok()? as usize == sent).then_some(())
        })
        .await;
    }
    eventually("compaction to fold the small files", Duration::from_secs(60), || async {
        (chat_turn_files(&api).await? <= 4).then_some(())
    })
    .await;
    let rows: Vec<Value> = api.rows("SELECT event_id FROM chat_turns").await.unwrap();
    let distinct = api.count("SELECT COUNT(DISTINCT event_id) AS n FROM chat_turns").await.unwrap();
    assert_eq!((rows.len(), distinct as usize), (turns.len(), turns.len()));
    assert!(gata.log_text().contains("compacted"), "no compaction was logged");
}
