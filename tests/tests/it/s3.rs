//! The lake on an S3-compatible object store: the same path, a different URL.

use std::time::Duration;

use gata_tests::{Gata, S3Server, eventually, free_port};

use crate::{bin, workload};

#[tokio::test(flavor = "multi_thread")]
async fn the_lake_lives_on_s3_when_configured() {
    let s3 = S3Server::start("gata-lake").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("GATA__LAKE__URI", "s3://gata-lake/lake"),
        ("GATA__LAKE__STORAGE_OPTIONS__AWS_ENDPOINT_URL", s3.endpoint.as_str()),
        ("GATA__LAKE__STORAGE_OPTIONS__AWS_ALLOW_HTTP", "true"),
        ("GATA__LAKE__STORAGE_OPTIONS__AWS_REGION", "us-east-1"),
        ("GATA__LAKE__STORAGE_OPTIONS__AWS_ACCESS_KEY_ID", "test"),
        ("GATA__LAKE__STORAGE_OPTIONS__AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let gata = Gata::start_on(bin(), dir.path(), free_port(), &env).await.unwrap();
    let api = gata.client();
    let (turns, _, images) = workload(41, 40, 5);
    assert_eq!(api.post_ndjson("/v1/chat-turns", &turns).await.unwrap().0, 202);
    assert_eq!(api.post_ndjson("/v1/image-text-pairs", &images).await.unwrap().0, 202);
    eventually("turns and images in the S3 lake", Duration::from_secs(60), || async {
        let t = api.count("SELECT COUNT(*) AS n FROM chat_turns").await.ok()?;
        let i = api.count("SELECT COUNT(*) AS n FROM image_text_pairs").await.ok()?;
        (t == 40 && i == 5).then_some(())
    })
    .await;
    let log = s3.list("gata-lake", "lake/silver/chat_turns/_delta_log/").await.unwrap();
    assert!(log.iter().any(|k| k.ends_with("00000000000000000001.json")), "no Delta commit on S3: {log:?}");
    let data = s3.list("gata-lake", "lake/silver/chat_turns/day=").await.unwrap();
    assert!(data.iter().any(|k| k.ends_with(".parquet")), "no Parquet file on S3: {data:?}");
    assert!(!dir.path().join("lake").exists(), "the lake was written locally");
}
