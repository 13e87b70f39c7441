//! Bad input gets a 4xx with a JSON reason that says what and where, and nothing of a refused
//! request reaches the lake.

use std::time::Duration;

use gata_tests::{Api, Gata, eventually, example, free_port};
use serde_json::{Value, json};

use crate::{bin, workload};

/// Posts `body` and returns (status, error object), asserting the error shape.
async fn refused(api: &Api, route: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let (status, answer) = api.post(route, content_type, body).await.unwrap();
    assert!((400..500).contains(&status), "{route}: expected 4xx, got {status}: {answer}");
    let error = answer["error"].clone();
    assert!(error["code"].is_string() && error["message"].is_string(), "{route}: error shape {answer}");
    assert!(error["request_id"].is_string(), "{route}: every answer names its request: {answer}");
    (status, error)
}

fn field_of(error: &Value, i: usize) -> &str {
    error["details"][i]["field"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_bad_input_with_a_located_reason() {
    let dir = tempfile::tempdir().unwrap();
    // Small limits so oversized bodies stay small enough for loopback socket buffers.
    let limits = [("GATA__INGEST__MAX_BODY_BYTES", "1000000"), ("GATA__INGEST__LIMITS__MAX_IMAGE_BYTES", "100000")];
    let gata = Gata::start_on(bin(), dir.path(), free_port(), &limits).await.unwrap();
    let api = gata.client();
    const JSON: &str = "application/json";

    for route in ["/v1/chat-turns", "/v1/preferences", "/v1/image-text-pairs"] {
        let (s, e) = refused(&api, route, JSON, "{").await;
        assert_eq!((s, e["code"].as_str()), (400, Some("malformed_json")));
        let (s, e) = refused(&api, route, JSON, "[]").await;
        assert_eq!(s, 422, "{e}");
        let (s, e) = refused(&api, route, JSON, r#"{"contributor_id":"x"}"#).await;
        assert_eq!(s, 422);
        assert!(e["details"][0]["reason"].as_str().unwrap().contains("missing field"), "{e}");
        let (s, _) = refused(&api, route, "text/plain", "hello").await;
        assert_eq!(s, 415);
        let (s, e) = refused(&api, route, JSON, "").await;
        assert_eq!((s, e["code"].as_str()), (400, Some("empty_body")));
        let (s, e) = refused(&api, route, JSON, vec![b' '; 1_200_000]).await;
        assert_eq!((s, e["code"].as_str()), (413, Some("body_too_large")));
    }

    // Chat turns: fewer than two answers, oversized prompt, bad timestamp, unknown field.
    let mut turn = example("chat_turn");
    turn["responses"] = json!([turn["responses"][0]]);
    let (s, e) = refused(&api, "/v1/chat-turns", JSON, turn.to_string()).await;
    assert_eq!((s, field_of(&e, 0)), (422, "responses"));
    let mut turn = example("chat_turn");
    turn["prompt"] = json!("x".repeat(40_000));
    let (s, e) = refused(&api, "/v1/chat-turns", JSON, turn.to_string()).await;
    assert_eq!((s, field_of(&e, 0)), (413, "prompt"));
    let mut turn = example("chat_turn");
    turn["occurred_at"] = json!("yesterday");
    let (s, e) = refused(&api, "/v1/chat-turns", JSON, turn.to_string()).await;
    assert_eq!((s, field_of(&e, 0)), (422, "occurred_at"));
    let mut turn = example("chat_turn");
    turn["occurred_at"] = json!("2099-01-01T00:00:00Z");
    let (s, e) = refused(&api, "/v1/chat-turns", JSON, turn.to_string()).await;
    assert_eq!((s, field_of(&e, 0)), (422, "occurred_at"));
    let mut turn = example("chat_turn");
    turn["responses"][1]["latency_ms"] = json!("slow");
    let (s, e) = refused(&api, "/v1/chat-turns", JSON, turn.to_string()).await;
    assert_eq!((s, field_of(&e, 0)), (422, "responses[1].latency_ms"));
    let mut turn = example("chat_turn");
    turn["event_id"] = json!("not-a-uuid");
    let (s, e) = refused(&api, "/v1/chat-turns", JSON, turn.to_string()).await;
    assert_eq!((s, field_of(&e, 0)), (422, "event_id"));

    // Preferences: naming an answer the turn never had.
    let (s, _) = api.post("/v1/chat-turns", JSON, example("chat_turn").to_string()).await.unwrap();
    assert_eq!(s, 202);
    let mut pref = example("preference");
    pref["rejected_response_ids"] = json!(["rsp_zzz"]);
    let (s, e) = refused(&api, "/v1/preferences", JSON, pref.to_string()).await;
    assert_eq!((s, field_of(&e, 0)), (422, "rejected_response_ids[0]"));
    // DNS rebinding: open mode answers only requests addressed to a loopback name.
    let resp = api.request(reqwest::Method::GET, "/v1/tables").header("host", "rebind.attacker.example").send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "host_not_allowed", "{body}");
    let resp = api.request(reqwest::Method::GET, "/v1/tables").header("host", "localhost").send().await.unwrap();
    assert_eq!(resp.status(), 200, "a loopback name is served");

    // Rejecting more answers than a turn can have is refused whole, naming the list.
    let mut pref = example("preference");
    pref["rejected_response_ids"] = json!((0..10_000).map(|i| format!("rsp_{i}")).collect::<Vec<_>>());
    let (s, e) = refused(&api, "/v1/preferences", JSON, pref.to_string()).await;
    assert_eq!((s, field_of(&e, 0)), (422, "rejected_response_ids"), "{e}");
    assert_eq!(e["details"].as_array().map(Vec::len), Some(1), "one reason, not one per id");
    let mut pref = example("preference");
    pref["rating"] = json!(11);
    let (s, e) = refused(&api, "/v1/preferences", JSON, pref.to_string()).await;
    assert_eq!((s, field_of(&e, 0)), (422, "rating"));

    // Images: not an image, type mismatch, too large.
    let mut pair = example("image_text_pair");
    pair["image"]["base64"] = json!("aGVsbG8gd29ybGQ=");
    let (s, e) = refused(&api, "/v1/image-text-pairs", JSON, pair.to_string()).await;
    assert_eq!((s, field_of(&e, 0)), (422, "image.base64"));
    let mut pair = example("image_text_pair");
    pair["image"]["content_type"] = json!("image/jpeg");
    let (s, e) = refused(&api, "/v1/image-text-pairs", JSON, pair.to_string()).await;
    assert_eq!((s, field_of(&e, 0)), (422, "image.content_type"));
    let mut pair = example("image_text_pair");
    pair["image"]["base64"] = json!("A".repeat(200_000));
    let (s, e) = refused(&api, "/v1/image-text-pairs", JSON, pair.to_string()).await;
    assert_eq!((s, field_of(&e, 0)), (413, "image.base64"));

    // SQL: writes, files outside the lake, unknown tables, bad bodies.
    for sql in [
        "DROP TABLE chat_turns",
        "COPY (SELECT 1) TO '/tmp/out.csv'",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
    ] {
        let (s, e) = refused(&api, "/v1/sql", JSON, json!({ "sql": sql }).to_string()).await;
        assert_eq!((s, e["code"].as_str()), (400, Some("not_allowed")), "{sql}");
    }
    let (s, e) = refused(&api, "/v1/sql", JSON, json!({ "sql": "SELECT * FROM nope" }).to_string()).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("plan_error")));
    // Bodies go through the one JSON extractor every route shares.
    let (s, e) = refused(&api, "/v1/sql", JSON, r#"{"query": 1}"#).await;
    assert_eq!((s, e["code"].as_str()), (422, Some("invalid_body")), "{e}");
    let (s, e) = refused(&api, "/v1/sql", JSON, r#"{"sql": "#).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("malformed_json")), "{e}");
    let (s, e) = refused(&api, "/v1/marketplace/listings", JSON, "not json").await;
    assert_eq!((s, e["code"].as_str()), (400, Some("malformed_json")), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_bad_line_refuses_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let gata = Gata::start(bin(), dir.path()).await.unwrap();
    let api = gata.client();
    let (mut turns, _, _) = workload(21, 10, 0);
    turns[6]["responses"] = json!([]);
    turns[8] = json!("not an object");
    let (s, body) = api.post_ndjson("/v1/chat-turns", &turns).await.unwrap();
    assert_eq!(s, 422, "{body}");
    let lines: Vec<u64> =
        body["error"]["details"].as_array().unwrap().iter().filter_map(|d| d["line"].as_u64()).collect();
    assert_eq!(lines, [7, 9]);

    // A later good event lands; none of the refused batch ever does.
    let (s, _) = api.post("/v1/chat-turns", "application/json", example("chat_turn").to_string()).await.unwrap();
    assert_eq!(s, 202);
    eventually("the good event", Duration::from_secs(60), || async {
        (api.count("SELECT COUNT(*) AS n FROM chat_turns").await.ok()? >= 1).then_some(())
    })
    .await;
    assert_eq!(api.count("SELECT COUNT(*) AS n FROM events").await.unwrap(), 1);
}

/// Posts `body` to the chat-turn route with `Content-Encoding: encoding`; (status, answer).
async fn post_encoded(api: &Api, encoding: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = api
        .request(reqwest::Method::POST, "/v1/chat-turns")
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", encoding)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_bodies_are_read_and_bombs_refused() {
    use std::io::Write as _;
    let gzip = |bytes: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let gata =
        Gata::start_on(bin(), dir.path(), free_port(), &[("GATA__INGEST__MAX_BODY_BYTES", "1000000")]).await.unwrap();
    let api = gata.client();
    let turns = |ids: std::ops::Range<u32>| {
        let mut lines = String::new();
        for i in ids {
            let mut turn = example("chat_turn");
            turn["event_id"] = json!(format!("01936f0e-7c2a-7b3e-9a41-5d2c8e1f{i:04x}"));
            turn["turn_id"] = json!(format!("turn_enc_{i}"));
            lines.push_str(&format!("{turn}\n"));
        }
        lines.into_bytes()
    };

    let (s, answer) = post_encoded(&api, "gzip", gzip(&turns(0..20))).await;
    assert_eq!((s, answer["accepted"].as_u64()), (202, Some(20)), "{answer}");
    let (s, answer) = post_encoded(&api, "zstd", zstd::encode_all(&turns(20..40)[..], 3).unwrap()).await;
    assert_eq!((s, answer["accepted"].as_u64()), (202, Some(20)), "{answer}");

    // Bombs: 200 KB (gzip) or 7 KB (zstd) on the wire, 200 MB decompressed; refused after 1 MB
    // of output.
    let bomb = gzip(&vec![b' '; 200 << 20]);
    assert!(bomb.len() < 1_000_000, "{} bytes", bomb.len());
    let (s, answer) = post_encoded(&api, "gzip", bomb).await;
    assert_eq!((s, answer["error"]["code"].as_str()), (413, Some("body_too_large")), "{answer}");
    let bomb = zstd::encode_all(&vec![b' '; 200 << 20][..], 19).unwrap();
    let (s, answer) = post_encoded(&api, "zstd", bomb).await;
    assert_eq!((s, answer["error"]["code"].as_str()), (413, Some("body_too_large")), "{answer}");

    let mut broken = gzip(&turns(40..41));
    broken.truncate(broken.len() / 2);
    let (s, answer) = post_encoded(&api, "gzip", broken).await;
    assert_eq!((s, answer["error"]["code"].as_str()), (400, Some("bad_encoding")), "{answer}");
    let (s, answer) = post_encoded(&api, "zstd", b"not zstd at all".to_vec()).await;
    assert_eq!((s, answer["error"]["code"].as_str()), (400, Some("bad_encoding")), "{answer}");
    let (s, answer) = post_encoded(&api, "br", turns(41..42)).await;
    assert_eq!((s, answer["error"]["code"].as_str()), (415, Some("unsupported_encoding")), "{answer}");

    // The 40 accepted turns land; nothing of the refused requests does.
    eventually("the decompressed turns in the lake", Duration::from_secs(60), || async {
        let (_, n) = api.sql("SELECT COUNT(*) AS n FROM chat_turns WHERE turn_id LIKE 'turn_enc_%'").await.ok()?;
        (n["rows"][0]["n"].as_u64() == Some(40)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, n) = api.sql("SELECT COUNT(*) AS n FROM chat_turns WHERE turn_id LIKE 'turn_enc_%'").await.unwrap();
    assert_eq!(n["rows"][0]["n"].as_u64(), Some(40), "{n}");
}
