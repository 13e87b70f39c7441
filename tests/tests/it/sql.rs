//! The SQL service on a fixture lake: the sqllogictest file, every answer format, time travel,
//! the auth matrix (HTTP and Flight SQL), `gata sql`, and the OpenAPI description against the
//! routes. Then the limits: caps, timeouts, cancelling a runaway query, client disconnects.

use std::{collections::BTreeSet, path::Path, process::Command, time::Duration};

use gata_lakehouse::deltalake::{
    arrow::{array::RecordBatch, ipc::reader::StreamReader, json::ArrayWriter},
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder,
};
use gata_tests::{Api, Gata, eventually, free_port, principals_env};
use serde_json::{Value, json};

use crate::bin;

const ADMIN: &str = "tok-admin-0123456789";
const ANALYST: &str = "tok-analyst-0123456789";
const BUYER: &str = "tok-buyer-0123456789";
const CONTRIBUTOR: &str = "tok-contributor-0123456789";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql").join(name)).unwrap()
}

fn principals() -> String {
    principals_env(&[
        ("root", "admin", ADMIN, ""),
        ("ana", "analyst", ANALYST, r#",datasets=["chat"]"#),
        ("bob", "buyer", BUYER, r#",tables=["preferences"]"#),
        ("cat", "contributor", CONTRIBUTOR, r#",contributor_id="ctr_a""#),
    ])
}

async fn count(api: &Api, sql: &str) -> u64 {
    api.count(sql).await.unwrap()
}

/// The rows of `sql` in `accept`'s format, decoded to JSON objects.
async fn rows_as(api: &Api, sql: &str, accept: &str) -> (String, Vec<Value>) {
    let resp = api
        .request(reqwest::Method::POST, "/v1/sql")
        .header("accept", accept)
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{accept}");
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    let body = resp.bytes().await.unwrap();
    let batches_to_json = |batches: Vec<RecordBatch>| -> Vec<Value> {
        let mut w = ArrayWriter::new(Vec::new());
        w.write_batches(&batches.iter().collect::<Vec<_>>()).unwrap();
        w.finish().unwrap();
        serde_json::from_slice(&w.into_inner()).unwrap()
    };
    let rows = match accept {
        "application/json" => serde_json::from_slice::<Value>(&body).unwrap()["rows"].as_array().unwrap().clone(),
        "application/x-ndjson" => {
            std::str::from_utf8(&body).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
        }
        "text/csv" => {
            let text = std::str::from_utf8(&body).unwrap();
            let mut lines = text.lines();
            let header: Vec<&str> = lines.next().unwrap().split(',').collect();
            lines
                .map(|l| {
                    let cells = l.split(',').map(|c| c.parse::<i64>().map(Value::from).unwrap_or(json!(c)));
                    Value::Object(header.iter().map(|h| h.to_string()).zip(cells).collect())
                })
                .collect()
        }
        "application/vnd.apache.arrow.stream" => batches_to_json(
            StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None).unwrap().map(|b| b.unwrap()).collect(),
        ),
        "application/vnd.apache.parquet" => batches_to_json(
            ParquetRecordBatchReaderBuilder::try_new(body).unwrap().build().unwrap().map(|b| b.unwrap()).collect(),
        ),
        other => panic!("{other}"),
    };
    (content_type, rows)
}

async fn status_of(api: &Api, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = api.request(method, path);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn flight(url: &str, token: &str, auth: &str, sql: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/flight_sql.py");
    let out = Command::new("python3").arg(script).args([url, token, auth, sql]).output().unwrap();
    assert!(out.status.success(), "flight_sql.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn gata_sql(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(bin())
        .arg("sql")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_service_on_a_fixture_lake() {
    let dir = tempfile::tempdir().unwrap();
    let principals = principals();
    let env = [("GATA__AUTH__PRINCIPALS", principals.as_str()), ("GATA__QUERY__DISCOVER_INTERVAL", "100ms")];
    let gata = Gata::start_on(bin(), dir.path(), free_port(), &env).await.unwrap();
    let open = gata.client();
    let admin = open.with_token(ADMIN);

    // The fixture: six turns, then the preferences, then a seventh turn, each step landed
    // before the next so chat_turns has a version with six rows.
    let turns = fixture("chat_turns.ndjson");
    let (first_six, last) = turns.trim_end().rsplit_once('\n').unwrap();
    assert_eq!(admin.post("/v1/chat-turns", "application/x-ndjson", first_six.to_string()).await.unwrap().0, 202);
    let within = Duration::from_secs(60);
    eventually("six turns", within, || async {
        (count(&admin, "SELECT COUNT(*) AS n FROM chat_turns").await == 6).then_some(())
    })
    .await;
    let (_, tables) = admin.get("/v1/tables").await.unwrap();
    let chat = tables["tables"].as_array().unwrap().iter().find(|t| t["name"] == "chat_turns").unwrap().clone();
    let six_version = chat["version"].as_u64().unwrap();
    assert_eq!(chat["rows"], 6);
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        admin.post("/v1/preferences", "application/x-ndjson", fixture("preferences.ndjson")).await.unwrap().0,
        202
    );
    assert_eq!(admin.post("/v1/chat-turns", "application/json", last.to_string()).await.unwrap().0, 202);
    eventually("the whole fixture", within, || async {
        let turns = count(&admin, "SELECT COUNT(*) AS n FROM chat_turns").await;
        let prefs = count(&admin, "SELECT COUNT(*) AS n FROM preferences").await;
        (turns == 7 && prefs == 4).then_some(())
    })
    .await;

    // The sqllogictest file.
    let slt = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql/lake.slt");
    let (failures, records) = gata_tests::slt::run(&admin, &slt).await.unwrap();
    assert!(failures.is_empty(), "{} of {records} records failed:\n{}", failures.len(), failures.join("\n\n"));
    assert!(records >= 20);

    // Time travel: by version and by time, through parameters too.
    let at = |v: String| format!("SELECT COUNT(*) AS n FROM chat_turns({v})");
    assert_eq!(count(&admin, &at(six_version.to_string())).await, 6);
    assert_eq!(count(&admin, &at(format!("'{}'", between.to_rfc3339()))).await, 6);
    assert_eq!(count(&admin, "SELECT COUNT(*) AS n FROM chat_turns").await, 7);
    let (s, body) = status_of(
        &admin,
        reqwest::Method::POST,
        "/v1/sql",
        Some(json!({"sql": "SELECT turn_id FROM chat_turns WHERE contributor_id = $1 AND turn_id <> $2 ORDER BY 1", "params": ["ctr_a", "turn_2"]})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["rows"], json!([{"turn_id": "turn_1"}, {"turn_id": "turn_3"}]));

    // Every format answers the same rows, with its media type.
    let sql = "SELECT turn_id, contributor_id, cardinality(responses) AS answers FROM chat_turns ORDER BY turn_id";
    let (_, reference) = rows_as(&admin, sql, "application/json").await;
    assert_eq!(reference.len(), 7);
    for accept in
        ["application/x-ndjson", "text/csv", "application/vnd.apache.arrow.stream", "application/vnd.apache.parquet"]
    {
        let (content_type, rows) = rows_as(&admin, sql, accept).await;
        assert!(content_type.starts_with(accept), "{accept}: {content_type}");
        assert_eq!(rows, reference, "{accept}");
    }
    let resp = admin
        .request(reqwest::Method::POST, "/v1/sql")
        .header("accept", "image/png")
        .json(&json!({"sql": sql}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 406);

    // Auth matrix over HTTP.
    let analyst = open.with_token(ANALYST);
    let buyer = open.with_token(BUYER);
    let contributor = open.with_token(CONTRIBUTOR);
    let bad = open.with_token("tok-nobody");
    let names = |v: &Value| -> BTreeSet<String> {
        v["tables"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
    };
    let set = |xs: &[&str]| -> BTreeSet<String> { xs.iter().map(|s| s.to_string()).collect() };
    assert_eq!(
        names(&analyst.get("/v1/tables").await.unwrap().1),
        set(&["chat_turns", "preferences", "quality_scores"])
    );
    assert_eq!(names(&buyer.get("/v1/tables").await.unwrap().1), set(&["preferences"]));
    assert_eq!(names(&admin.get("/v1/tables").await.unwrap().1).len(), gata_lakehouse::TableId::ALL.len());
    let denied_like_missing = |api: Api, table: &'static str| async move {
        let (s, e) = api.sql(&format!("SELECT * FROM {table}")).await.unwrap();
        let (s2, e2) = api.sql("SELECT * FROM no_such_table").await.unwrap();
        assert_eq!((s, s2), (400, 400));
        assert_eq!(e["error"]["code"], e2["error"]["code"]);
        assert_eq!(
            e["error"]["message"].as_str().unwrap().replace(table, "T"),
            e2["error"]["message"].as_str().unwrap().replace("no_such_table", "T")
        );
    };
    denied_like_missing(analyst.clone(), "events").await;
    denied_like_missing(buyer.clone(), "chat_turns").await;
    let (s, e) = analyst.sql("SELECT * FROM events(1)").await.unwrap();
    assert_eq!(s, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("not found"), "{e}");
    assert_eq!(
        count(&analyst, "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public'").await,
        3
    );
    assert_eq!(count(&buyer, "SELECT COUNT(*) AS n FROM preferences").await, 4);

    use reqwest::Method as M;
    let turn = fixture("chat_turns.ndjson").lines().next().unwrap().to_string();
    let turn: Value = serde_json::from_str(&turn).unwrap();
    // A turn of ctr_b already in the lake: the admin's resubmission is deduplicated.
    let other_turn =
        fixture("chat_turns.ndjson").lines().find(|l| l.contains(r#""contributor_id": "ctr_b""#)).unwrap().to_string();
    let other_turn: Value = serde_json::from_str(&other_turn).unwrap();
    let sql_body = Some(json!({"sql": "SELECT 1 AS one"}));
    let matrix_listing =
        json!({"listing_id": "matrix", "version": 1, "title": "t", "kinds": ["chat_turn"], "price": 1, "terms": "t"});
    // (route, method, body, [no token, bad token, admin, analyst, buyer, contributor])
    let matrix: Vec<(&str, M, Option<Value>, [u16; 6])> = vec![
        ("/v1/sql", M::POST, sql_body.clone(), [401, 401, 200, 200, 200, 403]),
        ("/v1/tables", M::GET, None, [401, 401, 200, 200, 200, 200]),
        ("/v1/queries", M::GET, None, [401, 401, 200, 403, 403, 403]),
        ("/v1/queries/nope", M::DELETE, None, [401, 401, 404, 403, 403, 403]),
        ("/v1/chat-turns", M::POST, Some(turn.clone()), [401, 401, 202, 403, 403, 202]),
        // Submitting as another contributor: only operators, admins and trusted apps may.
        ("/v1/chat-turns", M::POST, Some(other_turn), [401, 401, 202, 403, 403, 403]),
        ("/v1/auth/whoami", M::GET, None, [401, 401, 200, 200, 200, 200]),
        ("/v1/auth/nonce", M::GET, None, [200, 200, 200, 200, 200, 200]),
        ("/v1/auth/link", M::GET, None, [401, 401, 403, 403, 403, 200]),
        ("/v1/contributors/ctr_a/scores", M::GET, None, [401, 401, 200, 403, 403, 200]),
        ("/v1/contributors/ctr_b/scores", M::GET, None, [401, 401, 200, 403, 403, 403]),
        ("/review", M::GET, None, [401, 401, 200, 403, 403, 403]),
        ("/metrics", M::GET, None, [401, 401, 200, 403, 403, 403]),
        ("/v1/marketplace/listings", M::GET, None, [401, 401, 200, 200, 200, 200]),
        ("/v1/marketplace/listings", M::POST, Some(matrix_listing), [401, 401, 201, 403, 403, 403]),
        ("/v1/marketplace/grants", M::POST, Some(json!({"listing_id": "matrix"})), [401, 401, 403, 403, 403, 200]),
        ("/v1/marketplace/purchases", M::GET, None, [401, 401, 200, 200, 200, 200]),
        ("/healthz", M::GET, None, [200, 200, 200, 200, 200, 200]),
        ("/openapi.json", M::GET, None, [200, 200, 200, 200, 200, 200]),
    ];
    for (route, method, body, expected) in matrix {
        for (api, want) in [&open, &bad, &admin, &analyst, &buyer, &contributor].into_iter().zip(expected) {
            let (got, answer) = status_of(api, method.clone(), route, body.clone()).await;
            assert_eq!(got, want, "{method} {route} with {:?}: {answer}", api.base);
            if got >= 400 {
                assert!(answer["error"]["code"].is_string(), "{route}: {answer}");
            }
        }
    }

    // Flight SQL with the ADBC driver from PyPI: the same rows, the same grants.
    let url = gata.flight_url().expect("Flight SQL address printed");
    let answer = flight(&url, ADMIN, "header", "SELECT turn_id, contributor_id FROM chat_turns ORDER BY turn_id");
    let http_rows = admin.rows("SELECT turn_id, contributor_id FROM chat_turns ORDER BY turn_id").await.unwrap();
    assert_eq!(answer["rows"], json!(http_rows), "{answer}");
    assert_eq!(answer["tables"].as_array().unwrap().len(), gata_lakehouse::TableId::ALL.len(), "{answer}");
    assert!(answer["chat_turns_columns"].as_array().unwrap().contains(&json!("responses")), "{answer}");
    let answer = flight(&url, ANALYST, "basic", "SELECT * FROM events");
    assert_eq!(answer["tables"], json!(["chat_turns", "preferences", "quality_scores"]), "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("not found"), "{answer}");
    let answer = flight(&url, ANALYST, "header", "DROP TABLE chat_turns");
    assert!(answer["error"].as_str().unwrap().contains("is not a query"), "{answer}");
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/flight_sql.py"))
        .args([url.as_str(), "tok-nobody", "header", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown token must not connect");

    // gata sql: against the server and against the lake directory.
    let (ok, out, err) = gata_sql(
        &[
            "--server",
            &gata.base,
            "--token",
            ADMIN,
            "--format",
            "csv",
            "SELECT contributor_id, COUNT(*) AS n FROM chat_turns GROUP BY 1 ORDER BY 1",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out, "contributor_id,n\nctr_a,3\nctr_b,2\nctr_c,2\n");
    let (ok, out, err) = gata_sql(
        &[
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--format",
            "json",
            "--timing",
            "SELECT COUNT(*) AS n FROM preferences",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!([{"n": 4}]));
    assert!(err.contains("(1 row,") && err.contains("ms)"), "{err}");
    let (ok, out, err) = gata_sql(
        &["--server", &gata.base, "--token", ANALYST],
        Some("SELECT 'a' AS letter,\n  1 AS number;\nSELECT * FROM events;\nSELECT 2 AS two;\n"),
    );
    assert!(!ok, "a failed statement fails a piped session");
    assert!(
        out.contains("| letter | number |") && out.contains("| a      | 1      |") && out.contains("| two |"),
        "{out}"
    );
    assert!(err.contains("not found") && err.contains("(1 row,"), "{err}");
    let (ok, _, err) = gata_sql(&["--server", &gata.base, "--token", "tok-nobody", "SELECT 1"], None);
    assert!(!ok && err.contains("401"), "{err}");

    // The OpenAPI description (generated from the routes: `api_contract`) names only routes
    // that answer, and every route is in it: no crate routes outside the description.
    let (_, described) = open.get("/openapi.json").await.unwrap();
    for (path, ops) in described["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let route = ["id", "share", "schema", "table"]
                .iter()
                .fold(path.clone(), |p, n| p.replace(&format!("{{{n}}}"), "x"));
            let method = M::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (s, body) = status_of(&admin, method.clone(), &route, None).await;
            assert!(
                s != 405 && body["error"]["code"] != "no_route",
                "{method} {route} is documented but not routed: {s} {body}"
            );
        }
    }
    assert_eq!(undescribed_routes(), ["/openapi.json"], "routes added outside the description (use api_route)");
    let (s, body) = status_of(&admin, M::GET, "/v1/undocumented", None).await;
    assert_eq!((s, body["error"]["code"].as_str()), (404, Some("no_route")));
}

/// The paths the API crates route with axum's own `.route(…)`, outside the generated
/// description.
fn undescribed_routes() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let re = regex::Regex::new(r#"\.route\(\s*"([^"]+)""#).unwrap();
    let mut routes = Vec::new();
    let mut files = Vec::new();
    let mut dirs: Vec<_> = ["src", "ingest/src", "query-api/src", "marketplace/src"].map(|d| root.join(d)).into();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { dirs.push(path) } else { files.push(path) }
        }
    }
    for path in files {
        if matches!(path.file_name().and_then(|n| n.to_str()), Some("dva_worker.rs" | "emulator.rs")) {
            continue; // the DVA worker's metrics listener and the loopback chain: not this API
        }
        let text = std::fs::read_to_string(&path).unwrap();
        routes.extend(re.captures_iter(&text).map(|c| c[1].to_string()));
    }
    routes
}

/// A query that runs for hours: ten trillion rows of a cross join. The streamed side is the big
/// one, so the plan yields often (at each of its batches) and a stopped query lets go of its
/// threads at once, also on a loaded machine.
const RUNAWAY: &str = "SELECT SUM(a.value * b.value % 7) AS s \
     FROM generate_series(1, 1000) a CROSS JOIN generate_series(1, 10000000000) b";

#[tokio::test(flavor = "multi_thread")]
async fn limits_cut_off_runaway_queries_and_others_keep_being_served() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("GATA__QUERY__MAX_ROWS", "1000"),
        ("GATA__QUERY__MAX_STREAM_ROWS", "100000"),
        ("GATA__QUERY__MAX_RESULT_BYTES", "5000000"),
        ("GATA__QUERY__MEMORY_LIMIT_BYTES", "20000000"),
        // Long enough for the runaway query to be listed and cancelled while the small queries
        // beside it share the two cores with it (a minute on a loaded 2-core machine).
        ("GATA__QUERY__TIMEOUT", "300s"),
        ("GATA__HTTP__REQUEST_TIMEOUT", "360s"),
    ];
    let gata = Gata::start_on(bin(), dir.path(), free_port(), &env).await.unwrap();
    let api = gata.client();
    // Each streamed request on a client of its own: see the fresh clients below.
    let post = |sql: &str, accept: &str| {
        gata.client()
            .request(reqwest::Method::POST, "/v1/sql")
            .header("accept", accept)
            .json(&json!({ "sql": sql }))
            .send()
    };

    // Functions whose output size the caller picks are refused before they allocate, and the
    // process keeps serving.
    for bomb in [
        "SELECT length(repeat('x', 2000000000)) AS n",
        "SELECT length(repeat(arrow_cast('x', 'LargeUtf8'), 1000000000000)) AS n",
        "SELECT length(lpad('x', 1000000000)) AS n",
        "SELECT cardinality(array_repeat(1, 1000000000)) AS n",
        "SELECT cardinality(range(1, 1000000000000)) AS n",
    ] {
        let (s, body) = api.sql(bomb).await.unwrap();
        assert_eq!(s, 400, "{bomb}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("max_function_bytes"), "{bomb}: {body}");
    }
    assert_eq!(count(&api, "SELECT length(repeat('ab', 1000)) AS n").await, 2000, "small calls still work");

    // Row caps: JSON truncates and says so; a stream past max_stream_rows breaks off.
    let (s, body) = api.sql("SELECT value FROM generate_series(1, 5000)").await.unwrap();
    assert_eq!((s, body["row_count"].as_u64(), body["truncated"].as_bool()), (200, Some(1000), Some(true)));
    let (s, body) = api.sql("SELECT value FROM generate_series(1, 1000)").await.unwrap();
    assert_eq!((s, body["truncated"].as_bool()), (200, Some(false)));
    let resp = post("SELECT value FROM generate_series(1, 100000)", "text/csv").await.unwrap();
    assert_eq!(resp.text().await.unwrap().lines().count(), 100_001, "the cap itself passes");
    let resp = post("SELECT value FROM generate_series(1, 100001)", "text/csv").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "a stream past max_stream_rows must break off, not end cleanly");
    // The server closes a connection whose answer it broke off; a fresh client's pool never
    // hands the next request a connection that may still be closing.
    let api = gata.client();

    // Byte cap: 10 MB of text against a 5 MB cap.
    let big = "SELECT repeat('x', 1000) AS pad FROM generate_series(1, 10000)";
    let (s, body) = api.sql(big).await.unwrap();
    assert_eq!((s, body["error"]["code"].as_str()), (422, Some("result_too_large")), "{body}");
    // Its first batch is already past the cap: nothing was sent yet, so the stream answers 422.
    let resp = post(big, "application/x-ndjson").await.unwrap();
    assert_eq!(resp.status(), 422, "a first batch past max_result_bytes");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"].as_str(), Some("result_too_large"), "{body}");
    // 10 MB again, in batches under the cap: the stream starts and then breaks off.
    let resp =
        post("SELECT repeat('x', 100) AS pad FROM generate_series(1, 100000)", "application/x-ndjson").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "a stream past max_result_bytes must break off");
    let api = gata.client();

    // Memory: a sort of 30 million rows does not fit 20 MB; it spills or fails cleanly.
    let (s, body) =
        api.sql("SELECT value FROM generate_series(1, 30000000) ORDER BY value DESC LIMIT 1").await.unwrap();
    assert!(
        s == 200 && body["rows"][0]["value"] == 30_000_000 || body["error"]["code"] == "resources_exhausted",
        "{s} {body}"
    );
    let (s, body) = api.sql("SELECT array_agg(value) AS a FROM generate_series(1, 30000000)").await.unwrap();
    assert_eq!((s, body["error"]["code"].as_str()), (503, Some("resources_exhausted")), "{body}");

    // A per-query timeout cuts a runaway query.
    let (s, body) =
        status_of(&api, reqwest::Method::POST, "/v1/sql", Some(json!({"sql": RUNAWAY, "timeout_ms": 1500}))).await;
    assert_eq!((s, body["error"]["code"].as_str()), (408, Some("timeout")), "{body}");
    // A statement that is not one query is refused as such before the clock starts, however
    // short the limit.
    for bad in ["", "DROP TABLE events", "SELECT 1; SELECT 2"] {
        let (s, body) =
            status_of(&api, reqwest::Method::POST, "/v1/sql", Some(json!({"sql": bad, "timeout_ms": 1}))).await;
        assert_eq!(s, 400, "{bad:?}: {body}");
    }

    // The timed-out query leaves the running list first: its id is not the next one's.
    eventually("the timed-out query unlisted", Duration::from_secs(60), || async {
        let (_, list) = api.get("/v1/queries").await.unwrap();
        (!list["queries"].as_array()?.iter().any(|q| q["sql"] == RUNAWAY)).then_some(())
    })
    .await;
    // An operator cancels a runaway query; meanwhile other queries are answered. The runaway
    // request goes out on a connection of its own.
    let runaway = tokio::spawn({
        let api = gata.client();
        async move { api.sql(RUNAWAY).await.unwrap() }
    });
    let id = eventually("the runaway query listed", Duration::from_secs(20), || async {
        let (_, list) = api.get("/v1/queries").await.unwrap();
        list["queries"].as_array()?.iter().find(|q| q["sql"] == RUNAWAY).map(|q| q["id"].as_str().unwrap().to_string())
    })
    .await;
    for i in 0..5 {
        assert_eq!(count(&api, &format!("SELECT {i} + 1 AS n")).await, i + 1);
    }
    let (s, _) = status_of(&api, reqwest::Method::DELETE, &format!("/v1/queries/{id}"), None).await;
    if s != 200 {
        // Say how the runaway query ended before it could be cancelled.
        let ended = tokio::time::timeout(Duration::from_secs(20), runaway).await;
        panic!("cancelling answered {s}; the runaway query had already ended: {ended:?}");
    }
    let (s, body) = tokio::time::timeout(Duration::from_secs(20), runaway).await.unwrap().unwrap();
    assert_eq!((s, body["error"]["code"].as_str()), (409, Some("cancelled")), "{body}");

    // A client that goes away mid-stream cancels its query: batches arrive before the end,
    // the query shows in the running list, and leaves it once the reader is gone, counted as
    // abandoned by its caller. Sparse rows: the row cap is half a billion rows of work away,
    // and socket buffers cannot hold the rest.
    let gone = query_ends(&api, "caller_gone").await;
    let sparse = "SELECT value FROM generate_series(1, 10000000000) WHERE value % 5000 = 0";
    let mut resp = post(sparse, "application/x-ndjson").await.unwrap();
    let first = resp.chunk().await.unwrap().unwrap();
    let first = std::str::from_utf8(&first).unwrap();
    let line: Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(line["value"].as_i64().map(|v| v % 5000), Some(0), "{first:?}");
    let (_, list) = api.get("/v1/queries").await.unwrap();
    assert_eq!(list["queries"].as_array().unwrap().len(), 1, "{list}");
    drop(resp);
    eventually("the abandoned query stopped", Duration::from_secs(60), || async {
        let (_, list) = api.get("/v1/queries").await.unwrap();
        list["queries"].as_array()?.is_empty().then_some(())
    })
    .await;
    assert_eq!(query_ends(&api, "caller_gone").await, gone + 1, "it ended because its caller left, not at its cap");
    assert!(query_ends(&api, "cancelled").await >= 1 && query_ends(&api, "timeout").await >= 1);
}

/// How many queries ended `how`, from `gata_query_ends_total` on `/metrics`.
async fn query_ends(api: &Api, how: &str) -> u64 {
    let series = format!("gata_query_ends_total{{how=\"{how}\"}}");
    api.metric(&series).await.unwrap().expect("every way a query ends is exported") as u64
}
