//! The marketplace end to end: a curator publishes a listing, contributors grant (or not), a
//! buyer purchases it — the price split exactly among the granting contributors' accepted rows —
//! and reads it in SQL and with the `delta-sharing` client with only granted rows; a revoke hides a contributor's rows from the next
//! read; forged and wrong requests are refused with a reason; the state is rebuilt from the log
//! after a restart, and every event is in the `market_events` table. Sale shares are paid
//! through the rewards ledger in the epoch their payment was confirmed in, and `gata replay`
//! recomputes them. Payments are real signed transfers on the loopback chain: a purchase grants
//! nothing until its transfer is confirmed, and one transfer pays for one purchase only.

use std::{collections::BTreeMap, time::Duration};

use gata_contract::payment_reference;
use gata_marketplace::payments::{emulator::ChainEmulator, rpc::ChainRpc};
use gata_tests::{Api, Gata, eventually, free_port, principals_env};
use gata_wallet::{Account, Address};
use serde_json::{Value, json};

use crate::{
    bin,
    rewards::{gata as gata_cli, two_second_policy},
    scoring::{PROMPTS, at, turn, uuid, wait_for_scores},
};

const ADMIN: &str = "tok-admin-market-0123456789";
const BOB: &str = "tok-bob-market-0123456789";
const EVE: &str = "tok-eve-market-0123456789";
const ANN: &str = "tok-ann-market-0123456789";
const BEN: &str = "tok-ben-market-0123456789";

fn wallet(byte: &str) -> Account {
    Account::from_private_key_hex(&byte.repeat(32)).unwrap()
}

fn principals() -> String {
    let (bob, eve) =
        (format!(r#",address="{}""#, wallet("b0").address()), format!(r#",address="{}""#, wallet("e0").address()));
    principals_env(&[
        ("root", "admin", ADMIN, ""),
        ("bob", "buyer", BOB, &bob),
        ("eve", "buyer", EVE, &eve),
        ("ann", "contributor", ANN, r#",contributor_id="ann""#),
        ("ben", "contributor", BEN, r#",contributor_id="ben""#),
    ])
}

async fn post(api: &Api, path: &str, body: Value) -> (u16, Value) {
    api.post(path, "application/json", body.to_string()).await.unwrap()
}

/// Rows per contributor a buyer sees in the listing's chat table (None: the query failed).
async fn visible(api: &Api) -> Option<BTreeMap<String, u64>> {
    let rows = api
        .rows("SELECT contributor_id, COUNT(*) AS n FROM garden_chat.chat_turns GROUP BY contributor_id")
        .await
        .ok()?;
    Some(rows.iter().map(|r| (r["contributor_id"].as_str().unwrap().to_string(), r["n"].as_u64().unwrap())).collect())
}

fn purchase_id_of(event: &Value) -> String {
    event["purchase_id"].as_str().unwrap().to_string()
}

/// Signs and sends a transfer of `value` wei from `from` to `to` with `data`; answers its hash.
async fn transfer(chain: &ChainEmulator, from: &Account, to: Address, value: u128, data: Vec<u8>) -> String {
    ChainRpc::new(chain.url()).transfer(from, to, value, data, 56).await.unwrap()
}

/// The purchase `id` as its buyer's `GET /v1/marketplace/purchases` shows it.
async fn purchase_of(api: &Api, id: &str) -> Value {
    let (_, all) = api.get("/v1/marketplace/purchases").await.unwrap();
    all["purchases"].as_array().unwrap().iter().find(|p| p["purchase_id"] == id).cloned().unwrap_or_default()
}

/// Runs the `delta-sharing` client script as `token`; returns what it read.
pub(crate) fn sharing_client(endpoint: &str, token: &str, dir: &std::path::Path) -> Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/delta_sharing_client.py");
    let profile = dir.join(format!("{token}.share"));
    let out =
        std::process::Command::new("python3").arg(script).arg(endpoint).arg(token).arg(&profile).output().unwrap();
    assert!(out.status.success(), "delta_sharing_client.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn listings_grants_purchases_and_revokes_hold_on_sql_and_sharing() {
    let dir = tempfile::tempdir().unwrap();
    let principals = principals();
    let policy = two_second_policy(dir.path());
    let (bob_wallet, eve_wallet, treasury) = (wallet("b0"), wallet("e0"), wallet("70").address());
    let chain =
        ChainEmulator::start(56, &[(bob_wallet.address(), 10u128.pow(20)), (eve_wallet.address(), 10u128.pow(20))])
            .await
            .unwrap();
    let (rpc, treasury_text) = (chain.url().to_string(), treasury.to_string());
    let env = [
        ("GATA__AUTH__PRINCIPALS", principals.as_str()),
        ("GATA__REWARDS__POLICY", policy.as_str()),
        ("GATA__REWARDS__GRACE", "1s"),
        ("GATA__REWARDS__INTERVAL", "300ms"),
        ("GATA__PAYMENTS__CHAIN_RPC", rpc.as_str()),
        ("GATA__PAYMENTS__TREASURY", treasury_text.as_str()),
        ("GATA__PAYMENTS__MIN_CONFIRMATIONS", "2"),
        ("GATA__PAYMENTS__POLL_INTERVAL", "200ms"),
    ];
    let port = free_port();
    let mut gata = Gata::start_on(bin(), dir.path(), port, &env).await.unwrap();
    let open = gata.client();
    let (admin, bob, eve, ann, ben) = (
        open.with_token(ADMIN),
        open.with_token(BOB),
        open.with_token(EVE),
        open.with_token(ANN),
        open.with_token(BEN),
    );

    // Three contributors: ann (3 turns), ben (2), cid (1, never grants).
    let who = ["ann", "ann", "ann", "ben", "ben", "cid"];
    let turns: Vec<Value> = who
        .iter()
        .enumerate()
        .map(|(i, w)| turn(&uuid(i as u32), w, &format!("turn_{i}"), PROMPTS[i], at(i as i64)))
        .collect();
    assert_eq!(admin.post_ndjson("/v1/chat-turns", &turns).await.unwrap().0, 202);
    wait_for_scores(&admin, turns.len() as u64).await;

    // The curator publishes; a buyer may not; a bad definition is located.
    let listing = json!({"listing_id": "garden_chat", "version": 1, "title": "Everyday questions",
        "kinds": ["chat_turn"], "min_score": -1.0, "price": 1_000_000_007u64, "terms": "research use"});
    let (s, body) = post(&bob, "/v1/marketplace/listings", listing.clone()).await;
    assert_eq!(s, 403, "{body}");
    let (s, body) = post(
        &admin,
        "/v1/marketplace/listings",
        json!({"listing_id": "Bad Id", "version": 1,
        "title": "x", "kinds": [], "price": 1, "terms": "x"}),
    )
    .await;
    assert_eq!(s, 422, "{body}");
    let fields: Vec<&str> =
        body["error"]["details"].as_array().unwrap().iter().map(|v| v["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["listing.listing_id", "listing.kinds"], "{body}");
    let (s, body) = post(&admin, "/v1/marketplace/listings", listing.clone()).await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = post(&admin, "/v1/marketplace/listings", listing).await;
    assert_eq!(s, 409, "version 1 again: {body}");

    // ann grants this listing, ben every listing; nobody grants for someone else.
    assert_eq!(post(&ann, "/v1/marketplace/grants", json!({"listing_id": "garden_chat"})).await.0, 200);
    assert_eq!(post(&ben, "/v1/marketplace/grants", json!({})).await.0, 200);
    let (s, body) = post(&ann, "/v1/marketplace/grants", json!({"contributor_id": "cid"})).await;
    assert_eq!(s, 403, "{body}");
    let (s, _) = post(&ann, "/v1/marketplace/grants", json!({"listing_id": "no_such"})).await;
    assert_eq!(s, 404);

    // Before buying, the listing is not there for bob; afterwards it is, with granted rows only.
    let (s, body) = bob.sql("SELECT COUNT(*) FROM garden_chat.chat_turns").await.unwrap();
    assert_eq!(s, 400, "{body}");
    let (s, body) = post(
        &bob,
        "/v1/marketplace/purchases",
        json!({"listing_id": "garden_chat", "version": 9,
        "payment_ref": "inv-0"}),
    )
    .await;
    assert_eq!(s, 404, "{body}");
    // Bob pays with a signed transfer naming his purchase; it counts after two confirmations.
    let bob_purchase = uuid(900);
    let reference = payment_reference(bob_purchase.parse().unwrap(), "garden_chat");
    let paid_tx = transfer(&chain, &bob_wallet, treasury, 1_000_000_007, reference).await;
    let order = json!({"listing_id": "garden_chat", "purchase_id": bob_purchase, "payment_ref": paid_tx});
    let (s, bought) = post(&bob, "/v1/marketplace/purchases", order).await;
    assert_eq!(s, 201, "{bought}");
    assert_eq!(bought["payer"], json!(bob_wallet.address().to_string()), "{bought}");
    let pending = eventually("one confirmation of two", Duration::from_secs(30), || async {
        let p = purchase_of(&bob, &bob_purchase).await;
        p["payment_problem"].as_str().is_some_and(|w| w.contains("1 of 2")).then_some(p)
    })
    .await;
    assert_eq!(pending["status"], "pending", "{pending}");
    assert!(visible(&bob).await.is_none(), "an unconfirmed purchase grants nothing");
    let (s, body) =
        post(&bob, &format!("/v1/marketplace/purchases/{bob_purchase}/confirm"), json!({"note": "trust me"})).await;
    assert_eq!(s, 403, "a buyer does not confirm his own payment: {body}");
    // Eve presents bob's transfer for her own purchase: it pays for bob's only.
    let (s, stolen) =
        post(&eve, "/v1/marketplace/purchases", json!({"listing_id": "garden_chat", "payment_ref": paid_tx})).await;
    assert_eq!(s, 201, "{stolen}");
    chain.mine(1);
    eventually("bob's payment confirmed", Duration::from_secs(30), || async {
        (purchase_of(&bob, &bob_purchase).await["status"] == "paid").then_some(())
    })
    .await;
    let refused = eventually("eve's purchase refused", Duration::from_secs(30), || async {
        let p = purchase_of(&eve, &purchase_id_of(&stolen)).await;
        p["payment_problem"].as_str().is_some_and(|w| w.contains("not from the payer")).then_some(p)
    })
    .await;
    assert_eq!(refused["status"], "pending", "{refused}");
    let shares: BTreeMap<String, (u64, u64)> = bought["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["contributor_id"].as_str().unwrap().to_string(),
                (s["accepted"].as_u64().unwrap(), s["amount"].as_u64().unwrap()),
            )
        })
        .collect();
    assert_eq!(shares.values().map(|(_, a)| a).sum::<u64>(), 1_000_000_007, "the split sums to the price");
    assert_eq!(shares.keys().collect::<Vec<_>>(), ["ann", "ben"], "only granting contributors share: {bought}");
    let seen = visible(&bob).await.expect("bob reads his listing");
    let accepted: BTreeMap<String, u64> = shares.iter().map(|(c, (n, _))| (c.clone(), *n)).collect();
    assert_eq!(seen, accepted, "bob sees exactly the rows the split paid for");
    assert!(seen["ann"] >= 1 && seen["ben"] >= 1, "{seen:?}");
    let (s, _) = bob.sql("SELECT COUNT(*) FROM chat_turns").await.unwrap();
    assert_eq!(s, 400, "the tables under a listing stay out of reach");
    assert!(visible(&eve).await.is_none(), "eve bought nothing");

    // The same rows through the Delta Sharing protocol, read by the delta-sharing client.
    let endpoint = format!("{}/delta-sharing", open.base);
    let shared = sharing_client(&endpoint, BOB, dir.path());
    let ids: Vec<Value> = bob
        .rows("SELECT event_id FROM garden_chat.chat_turns ORDER BY event_id")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r["event_id"].clone())
        .collect();
    assert_eq!(shared["shares"], json!(["garden_chat"]), "{shared}");
    let table = &shared["tables"]["garden_chat.default.chat_turns"];
    assert_eq!(table["event_ids"], json!(ids), "{shared}");
    assert_eq!(table["contributors"], json!(["ann", "ben"]), "{shared}");
    assert_eq!(sharing_client(&endpoint, EVE, dir.path())["shares"], json!([]), "eve bought nothing");

    // A file URL works as signed, and not once altered or without a token's share.
    let query = bob
        .request(reqwest::Method::POST, "/delta-sharing/shares/garden_chat/schemas/default/tables/chat_turns/query")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(query.headers().contains_key("delta-table-version"));
    let lines = query.text().await.unwrap();
    let file: Value = serde_json::from_str(lines.lines().nth(2).unwrap()).unwrap();
    let url = file["file"]["url"].as_str().unwrap();
    let body = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert!(body.starts_with(b"PAR1"), "a Parquet file");
    // The last character altered (a hex digit of the signature, so never '0' twice).
    let last = if url.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &url[..url.len() - 1]);
    assert_eq!(reqwest::get(&forged).await.unwrap().status(), 403);
    let (s, _) = eve.get("/delta-sharing/shares/garden_chat/schemas/default/tables/chat_turns/version").await.unwrap();
    assert_eq!(s, 404, "a share eve does not own does not exist for her");

    // The web page, in headless Chromium: bob sees the listing with its statistics and sample
    // rows, and his purchase; ann sees her grant.
    let total: u64 = seen.values().sum();
    let page = |token: &str| {
        crate::browser::chromium(dir.path(), &["--dump-dom", &format!("{}/market#token={token}", open.base)])
    };
    let dom = page(BOB);
    assert!(dom.contains("Everyday questions") && dom.contains("(garden_chat v1)"), "{dom}");
    assert!(dom.contains(&format!("chat_turns: {total} rows from 2 contributors")), "{dom}");
    assert_eq!(dom.matches("<tr class=\"sample\">").count(), 3.min(total as usize), "{dom}");
    assert!(dom.contains(&purchase_id_of(&bought)), "{dom}");
    let dom = page(ANN);
    assert!(dom.contains("<tr class=\"grant\"><td>ann</td><td>no</td><td>garden_chat</td>"), "{dom}");

    // A revoke takes effect for the next read, on every path.
    assert_eq!(post(&ann, "/v1/marketplace/revokes", json!({"listing_id": "garden_chat"})).await.0, 200);
    let seen = visible(&bob).await.unwrap();
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["ben"], "{seen:?}");
    let shared = sharing_client(&endpoint, BOB, dir.path());
    assert_eq!(shared["tables"]["garden_chat.default.chat_turns"]["contributors"], json!(["ben"]), "{shared}");

    // The stream after the revoke: ben's rows only.
    let mut resp = bob
        .request(reqwest::Method::GET, "/v1/marketplace/listings/garden_chat/stream?from=earliest")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let streamed = read_rows(&mut resp, seen["ben"] as usize + 1, Duration::from_secs(5)).await;
    assert_eq!(streamed.len() as u64, seen["ben"], "{streamed:?}");
    assert!(streamed.iter().all(|r| r["row"]["contributor_id"] == "ben"));
    drop(resp);

    // Access matrix: every way out × (owner, other buyer, contributor, operator).
    let routes: [(&str, &str, [u16; 4]); 5] = [
        ("sql", "SELECT COUNT(*) AS n FROM garden_chat.chat_turns", [200, 400, 403, 200]),
        ("GET", "/v1/marketplace/listings/garden_chat/stream?from=earliest", [200, 403, 403, 403]),
        ("GET", "/delta-sharing/shares/garden_chat/schemas/default/tables/chat_turns/metadata", [200, 404, 404, 200]),
        ("GET", "/delta-sharing/shares", [200, 200, 200, 200]),
        ("GET", "/v1/marketplace/listings/garden_chat/preview", [200, 200, 200, 200]),
    ];
    for (how, what, expected) in routes {
        let callers = [("bob", &bob), ("eve", &eve), ("ann", &ann), ("root", &admin)];
        for ((who, api), want) in callers.into_iter().zip(expected) {
            let status = if how == "sql" {
                api.sql(what).await.unwrap().0
            } else {
                // Only the status line: a stream's body never ends.
                api.request(reqwest::Method::GET, what).send().await.unwrap().status().as_u16()
            };
            assert_eq!(status, want, "{how} {what} as {who}");
        }
    }

    let (_, mine) = bob.get("/v1/marketplace/purchases").await.unwrap();
    assert_eq!(mine["purchases"].as_array().unwrap().len(), 1, "{mine}");
    let (_, theirs) = eve.get("/v1/marketplace/purchases").await.unwrap();
    assert_eq!(theirs["purchases"].as_array().unwrap().len(), 1, "{theirs}");
    assert_eq!(theirs["purchases"][0]["status"], "pending", "{theirs}");
    let (_, grants) = ann.get("/v1/marketplace/grants").await.unwrap();
    assert_eq!(grants["grants"].as_array().unwrap().len(), 1, "a contributor sees only their own: {grants}");

    // Every event landed in the lake, exactly once.
    eventually("marketplace events in the lake", Duration::from_secs(60), || async {
        (admin.count("SELECT COUNT(*) AS n FROM market_events").await.ok()? == 7).then_some(())
    })
    .await;
    let actions =
        admin.rows("SELECT action, COUNT(*) AS n FROM market_events GROUP BY action ORDER BY action").await.unwrap();
    assert_eq!(
        actions,
        json!([{"action": "confirm_payment", "n": 1}, {"action": "grant", "n": 2}, {"action": "publish_listing", "n": 1},
               {"action": "purchase", "n": 2}, {"action": "revoke", "n": 1}])
        .as_array()
        .unwrap()
        .clone()
    );

    // The shares are paid through the rewards ledger, in the epoch the payment was confirmed in;
    // eve's unpaid purchase pays nothing.
    let purchase_id = bought["purchase_id"].as_str().unwrap().to_string();
    let unpaid = purchase_id_of(&stolen);
    for (who, (_, share)) in &shares {
        let paid = eventually(&format!("{who}'s share paid"), Duration::from_secs(60), || async {
            let (_, doc) = admin.get(&format!("/v1/contributors/{who}/rewards")).await.ok()?;
            doc["epochs"]
                .as_array()?
                .iter()
                .find_map(|e| e["sales"].as_array()?.iter().find(|s| s["purchase_id"] == purchase_id.as_str()).cloned())
        })
        .await;
        assert_eq!(paid["amount"].as_u64(), Some(*share), "{paid}");
        let (_, doc) = admin.get(&format!("/v1/contributors/{who}/rewards")).await.unwrap();
        assert!(!doc.to_string().contains(&unpaid), "an unpaid purchase pays no share: {doc}");
    }

    // After a restart the state is rebuilt from the log: the same purchase, the same grants.
    gata.kill();
    let gata = Gata::start_on(bin(), dir.path(), port, &env).await.unwrap();
    let bob = gata.client().with_token(BOB);
    assert_eq!(visible(&bob).await.unwrap().keys().collect::<Vec<_>>(), ["ben"]);
    let (_, listings) = bob.get("/v1/marketplace/listings").await.unwrap();
    assert_eq!(listings["listings"][0]["granting_contributors"], 1, "{listings}");

    // A replay recomputes every recorded epoch, sale shares included, to the same roots.
    drop(gata);
    let (code, out, err) =
        gata_cli(dir.path(), &[("GATA__REWARDS__POLICY", policy.clone())], &["replay", "--projection", "rewards"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("same root") && !out.contains("DIFFERS"), "{out}");
}

/// Reads NDJSON lines from `resp` until `want` rows arrived or `within` passed; idle lines are
/// skipped. Returns the rows (each `{cursor, kind, row}`).
async fn read_rows(resp: &mut reqwest::Response, want: usize, within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    let (mut rows, mut buf) = (Vec::new(), Vec::<u8>::new());
    while rows.len() < want {
        let Ok(chunk) = tokio::time::timeout_at(deadline, resp.chunk()).await else { break };
        let Some(chunk) = chunk.unwrap() else { break };
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let v: Value = serde_json::from_slice(&line).unwrap();
            assert!(v.get("error").is_none(), "{v}");
            if v.get("row").is_some() {
                rows.push(v);
            }
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_stream_resumes_from_its_cursor_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let gata = Gata::start_on(bin(), dir.path(), free_port(), &[]).await.unwrap();
    // Open local mode: the local admin acts for the contributor or buyer a request names.
    let api = gata.client();
    let (turns, prefs, _) = crate::workload(43, 80, 0);
    let (first, rest) = turns.split_at(30);
    let listing = json!({"listing_id": "live_chat", "version": 1, "title": "Live chat",
        "kinds": ["chat_turn", "preference"], "price": 1000, "terms": "t"});
    assert_eq!(post(&api, "/v1/marketplace/listings", listing).await.0, 201);
    let mut people: Vec<&str> = turns.iter().chain(&prefs).map(|e| e["contributor_id"].as_str().unwrap()).collect();
    people.sort();
    people.dedup();
    for who in &people {
        let (s, body) = post(&api, "/v1/marketplace/grants", json!({"contributor_id": who})).await;
        assert_eq!(s, 200, "{body}");
    }
    assert_eq!(api.post_ndjson("/v1/chat-turns", first).await.unwrap().0, 202);
    wait_for_scores(&api, first.len() as u64).await;
    let (s, body) = post(
        &api,
        "/v1/marketplace/purchases",
        json!({"listing_id": "live_chat", "payment_ref": "p",
        "buyer": "bob"}),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    // No chain is configured: an operator (here open mode's local admin) confirms by hand.
    let confirm = format!("/v1/marketplace/purchases/{}/confirm", purchase_id_of(&body));
    let (s, confirmed) = post(&api, &confirm, json!({"note": "invoice 17 paid"})).await;
    assert_eq!(
        (s, confirmed["method"].as_str(), confirmed["actor"].as_str()),
        (201, Some("manual"), Some("local")),
        "{confirmed}"
    );

    // Subscribe from the beginning, take five rows, hang up.
    let url = format!("{}/v1/marketplace/listings/live_chat/stream?buyer=bob&from=earliest", api.base);
    let mut resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/x-ndjson"));
    let before = read_rows(&mut resp, 5, Duration::from_secs(60)).await;
    assert_eq!(before.len(), 5);
    drop(resp);

    // More lands while nobody listens; one contributor revokes.
    let revoker = rest[0]["contributor_id"].as_str().unwrap();
    assert_eq!(post(&api, "/v1/marketplace/revokes", json!({"contributor_id": revoker})).await.0, 200);
    assert_eq!(api.post_ndjson("/v1/chat-turns", rest).await.unwrap().0, 202);
    assert_eq!(api.post_ndjson("/v1/preferences", &prefs).await.unwrap().0, 202);
    wait_for_scores(&api, (turns.len() + prefs.len()) as u64).await;

    // Resume from the last cursor: exactly the rest of what the listing holds now.
    let cursor = before.last().unwrap()["cursor"].as_str().unwrap();
    let mut resp = reqwest::get(format!("{url}&cursor={cursor}")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let key = |v: &Value| (v["kind"].as_str().unwrap().to_string(), v["row"]["event_id"].as_str().unwrap().to_string());
    let expected: std::collections::BTreeSet<(String, String)> = {
        let mut all = std::collections::BTreeSet::new();
        for (kind, table) in [("chat_turn", "chat_turns"), ("preference", "preferences")] {
            for r in api.rows(&format!("SELECT event_id FROM live_chat.{table}")).await.unwrap() {
                all.insert((kind.to_string(), r["event_id"].as_str().unwrap().to_string()));
            }
        }
        all
    };
    let first_five: Vec<(String, String)> = before.iter().map(key).collect();
    let want = expected.iter().filter(|k| !first_five.contains(k)).count();
    let mut after = read_rows(&mut resp, want, Duration::from_secs(60)).await;
    // Nothing more comes (a duplicate would).
    after.extend(read_rows(&mut resp, 1, Duration::from_secs(3)).await);
    let mut seen: Vec<(String, String)> = first_five.clone();
    seen.extend(after.iter().map(key));
    let unique: std::collections::BTreeSet<(String, String)> = seen.iter().cloned().collect();
    assert_eq!(seen.len() - unique.len(), 0, "duplicates");
    let gaps: Vec<_> = expected.iter().filter(|k| !unique.contains(k)).collect();
    assert!(gaps.is_empty(), "gaps: {gaps:?}");
    assert_eq!(after.len(), want, "a row too many or too few after resuming");
    assert!(
        after.iter().all(|r| r["row"]["contributor_id"] != revoker),
        "a revoked contributor's rows are not delivered"
    );
    drop(resp);

    // The same stream as Server-Sent Events: the cursor is the event id.
    let resp = reqwest::Client::new().get(&url).header("accept", "text/event-stream").send().await.unwrap();
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut resp = resp;
    let chunk = tokio::time::timeout(Duration::from_secs(30), resp.chunk()).await.unwrap().unwrap().unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.starts_with("id: ") && text.contains("\nevent: chat_turn\ndata: {"), "{text}");

    // A buyer who bought nothing, and a cursor that is not one, are refused with a reason.
    let (s, body) = api.get("/v1/marketplace/listings/live_chat/stream?buyer=eve").await.unwrap();
    assert_eq!(s, 403, "{body}");
    let (s, body) = api.get("/v1/marketplace/listings/live_chat/stream?buyer=bob&cursor=junk").await.unwrap();
    assert_eq!(s, 422, "{body}");
}
