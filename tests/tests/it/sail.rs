//! Distributed SQL on an existing engine: Sail (Spark Connect on DataFusion), in local cluster
//! mode with two workers, reads the Delta tables a running platform filled and answers the
//! analysts' queries exactly as gata does (`tests/sail/compare.py`); and again after the lake
//! evolved under maintenance (a checkpoint, compaction).

use std::{path::Path, process::Command, time::Duration};

use gata_tests::{Gata, eventually};

use crate::{bin, workload};

/// Runs the comparison against `base`; returns its table.
fn compare(base: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sail/compare.py");
    let out = Command::new("python3").arg(script).arg(base).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr.lines().filter(|l| !l.contains(" INFO ")).collect::<Vec<_>>().join("\n");
    assert!(out.status.success(), "{stdout}\n{tail}");
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn sail_answers_the_analysts_queries_as_gata_does() {
    let dir = tempfile::tempdir().unwrap();
    let gata = Gata::start(bin(), dir.path()).await.unwrap();
    let api = gata.client();
    let (turns, preferences, _) = workload(27, 600, 0);
    for (route, events) in [("/v1/chat-turns", &turns), ("/v1/preferences", &preferences)] {
        for chunk in events.chunks(500) {
            let (status, body) = api.post_ndjson(route, chunk).await.unwrap();
            assert_eq!(status, 202, "{body}");
        }
    }
    eventually("every turn scored", Duration::from_secs(120), || async {
        let n = api.count("SELECT COUNT(*) AS n FROM quality_scores WHERE subject_kind = 'chat_turn'").await.ok()?;
        (n == turns.len() as u64).then_some(())
    })
    .await;

    let table = compare(&gata.base);
    assert!(table.contains("12 of 12 answers match"), "{table}");
    assert!(table.contains("local-cluster, 2 workers"), "{table}");

    // The lake evolves: a checkpoint and compaction, while the platform runs.
    for cmd in ["checkpoint", "optimize"] {
        let out = Command::new(bin()).args(["lake", cmd, "--data-dir"]).arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "gata lake {cmd}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let checkpoints = std::fs::read_dir(dir.path().join("lake/silver/chat_turns/_delta_log"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".checkpoint.parquet"))
        .count();
    assert!(checkpoints >= 1, "a checkpoint was written");
    let table = compare(&gata.base);
    assert!(table.contains("12 of 12 answers match"), "after maintenance: {table}");
}
