//! Identity is proven, not claimed: wallets sign in with Sign-In with Ethereum (real secp256k1
//! signatures over real HTTP), contributors submit only as themselves, a trusted app submits
//! for its users, every event records who submitted it, and a signed event's author can be
//! recovered by anyone holding the lake.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use gata_contract::{Event, EventKind, Limits};
use gata_tests::{Api, Gata, eventually, example, principals_env};
use gata_wallet::{Account, personal_digest};
use serde_json::{Value, json};

use crate::bin;

const ROOT: &str = "tok-root-identity-0123456789";
const APP: &str = "tok-gatagpt-identity-0123456789";
const CAT: &str = "tok-cat-identity-0123456789";
pub(crate) const DOMAIN: &str = "gata.test";

/// A sign-in message for `account` with `nonce`, for `domain`, optionally expiring at `expires`.
pub(crate) fn message(account: &Account, domain: &str, nonce: &str, expires: Option<chrono::DateTime<Utc>>) -> String {
    let time = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut m = format!(
        "{domain} wants you to sign in with your Ethereum account:\n{}\n\nContribute to Gata.\n\nURI: https://{domain}/\nVersion: 1\nChain ID: 56\nNonce: {nonce}\nIssued At: {}",
        account.address(),
        time(Utc::now())
    );
    if let Some(t) = expires {
        m.push_str(&format!("\nExpiration Time: {}", time(t)));
    }
    m
}

pub(crate) fn personal_sign(account: &Account, text: &str) -> String {
    format!("0x{}", hex::encode(account.sign_digest(&personal_digest(text.as_bytes())).unwrap()))
}

pub(crate) async fn nonce(api: &Api) -> String {
    let (status, body) = api.get("/v1/auth/nonce").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["domain"].as_str(), body["chain_id"].as_u64()), (Some(DOMAIN), Some(56)), "{body}");
    body["nonce"].as_str().unwrap().to_string()
}

pub(crate) async fn sign_in(api: &Api, message: &str, signature: &str) -> (u16, Value) {
    let body = json!({ "message": message, "signature": signature }).to_string();
    api.post("/v1/auth/siwe", "application/json", body).await.unwrap()
}

/// A chat turn of `contributor` with a fixed id, signed by `author` when given.
fn turn(id: u32, contributor: &str, author: Option<&Account>) -> Value {
    let mut turn = example("chat_turn");
    turn["event_id"] = json!(format!("0193a1b2-0000-7000-8000-{id:012}"));
    turn["turn_id"] = json!(format!("identity-{id}"));
    turn["contributor_id"] = json!(contributor);
    turn["occurred_at"] = json!("2026-12-01T10:00:00Z");
    if let Some(author) = author {
        let event = Event::parse(EventKind::ChatTurn, turn.to_string().as_bytes(), &Limits::default()).unwrap();
        let signature = author.sign_digest(&event.signing_digest(56)).unwrap();
        turn["signature"] = json!(format!("0x{}", hex::encode(signature)));
    }
    turn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_are_proven_and_every_event_records_who_submitted_it() {
    let dir = tempfile::tempdir().unwrap();
    let principals = principals_env(&[
        ("root", "admin", ROOT, ""),
        ("gatagpt", "app", APP, ""),
        ("cat", "contributor", CAT, r#",contributor_id="ctr_a""#),
    ]);
    let env = [
        ("GATA__AUTH__PRINCIPALS", principals.as_str()),
        ("GATA__AUTH__WALLET__DOMAIN", DOMAIN),
        ("GATA__LAKE__FLUSH_INTERVAL", "200ms"),
    ];
    let roles = ["--roles", "intake,sink,query"];
    let gata = Gata::start_with(bin(), dir.path(), gata_tests::free_port(), &roles, &env).await.unwrap();
    let open = gata.client();
    let (root, app, cat) = (open.with_token(ROOT), open.with_token(APP), open.with_token(CAT));
    let alice = Account::from_private_key_hex(&"a1".repeat(32)).unwrap();
    let mallory = Account::from_private_key_hex(&"b2".repeat(32)).unwrap();
    let address = alice.address().to_string();

    // A configured contributor submits as itself only.
    let (status, body) = cat.post_ndjson("/v1/chat-turns", &[turn(1, "ctr_a", None)]).await.unwrap();
    assert_eq!(status, 202, "{body}");
    let (status, body) =
        cat.post_ndjson("/v1/chat-turns", &[turn(2, "ctr_a", None), turn(3, "ctr_b", None)]).await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("line 2"), "{body}");
    let mut forged = turn(4, "ctr_a", None);
    forged["submitted_by"] = json!("root");
    let (status, body) = cat.post_ndjson("/v1/chat-turns", &[forged]).await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "submitted_by", "{body}");

    // Sign-In with Ethereum: nonce, signed message, session.
    let text = message(&alice, DOMAIN, &nonce(&open).await, None);
    let (status, session) = sign_in(&open, &text, &personal_sign(&alice, &text)).await;
    assert_eq!(status, 200, "{session}");
    let wallet = open.with_token(session["token"].as_str().unwrap());
    let (status, me) = wallet.get("/v1/auth/whoami").await.unwrap();
    assert_eq!(
        (status, me["role"].as_str(), me["contributor_id"].as_str()),
        (200, Some("contributor"), Some(address.as_str()))
    );
    // Refused: the same message again, another domain, an expired message, another key's signature.
    let (status, body) = sign_in(&open, &text, &personal_sign(&alice, &text)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("already used"), "{body}");
    let foreign = message(&alice, "phish.example", &nonce(&open).await, None);
    let (status, body) = sign_in(&open, &foreign, &personal_sign(&alice, &foreign)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("this server signs in for"), "{body}");
    let expired = message(&alice, DOMAIN, &nonce(&open).await, Some(Utc::now() - chrono::Duration::seconds(5)));
    let (status, body) = sign_in(&open, &expired, &personal_sign(&alice, &expired)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
    let stolen = message(&alice, DOMAIN, &nonce(&open).await, None);
    let (status, body) = sign_in(&open, &stolen, &personal_sign(&mallory, &stolen)).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = sign_in(&open, &stolen, "0x1234").await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = open.post("/v1/auth/siwe", "application/json", "{\"message\": 1}").await.unwrap();
    assert!((400..500).contains(&status), "{body}");
    // A sign-in body is bounded (a message is at most 4 KiB): a megabyte is a 413.
    // (On a client of its own: the server closes a connection whose body it stopped reading.)
    let (status, body) = gata.client().post("/v1/auth/siwe", "application/json", "x".repeat(1 << 20)).await.unwrap();
    assert_eq!(status, 413, "{body}");
    let (status, _) = open.with_token("gws_0xnotasession.1.00").get("/v1/auth/whoami").await.unwrap();
    assert_eq!(status, 401);

    // A wallet may sign in as a buyer instead: named by its address, it buys, it does not submit.
    let carol = Account::from_private_key_hex(&"c3".repeat(32)).unwrap();
    let text = format!("{}\nResources:\n- urn:gata:role:buyer", message(&carol, DOMAIN, &nonce(&open).await, None));
    let (status, session) = sign_in(&open, &text, &personal_sign(&carol, &text)).await;
    assert_eq!(status, 200, "{session}");
    let buyer = open.with_token(session["token"].as_str().unwrap());
    let (_, me) = buyer.get("/v1/auth/whoami").await.unwrap();
    assert_eq!((me["role"].as_str(), me["name"].as_str()), (Some("buyer"), Some(carol.address().to_string().as_str())));
    let carol_id = carol.address().to_string();
    assert_eq!(buyer.post_ndjson("/v1/chat-turns", &[turn(20, &carol_id, None)]).await.unwrap().0, 403);

    // A wallet submits as its address only; a signed event must be signed by that address.
    let (status, body) = wallet.post_ndjson("/v1/chat-turns", &[turn(10, &address, Some(&alice))]).await.unwrap();
    assert_eq!(status, 202, "{body}");
    let (status, body) = wallet.post_ndjson("/v1/chat-turns", &[turn(11, "ctr_a", None)]).await.unwrap();
    assert_eq!(status, 403, "{body}");
    let mut tampered = turn(12, &address, Some(&alice));
    tampered["prompt"] = json!("Something the author never wrote");
    let (status, body) = wallet.post_ndjson("/v1/chat-turns", &[tampered]).await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "signature", "{body}");
    let (status, body) = wallet.post_ndjson("/v1/chat-turns", &[turn(13, &address, Some(&mallory))]).await.unwrap();
    assert_eq!(status, 422, "{body}");
    // The app submits for its signed-in user; it runs no SQL.
    let (status, body) = app.post_ndjson("/v1/chat-turns", &[turn(14, &address, None)]).await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(app.sql("SELECT 1").await.unwrap().0, 403);

    // Each event landed once, with who submitted it; the signature is kept and verifiable from
    // the lake alone.
    let rows = eventually("the accepted turns in the lake", Duration::from_secs(60), || {
        let root = root.clone();
        async move {
            let rows = root
                .rows("SELECT turn_id, contributor_id, submitted_by, signature FROM chat_turns ORDER BY turn_id")
                .await
                .ok()?;
            (rows.len() == 3).then_some(rows)
        }
    })
    .await;
    let seen: Vec<(&str, &str)> =
        rows.iter().map(|r| (r["turn_id"].as_str().unwrap(), r["submitted_by"].as_str().unwrap())).collect();
    assert_eq!(seen, [("identity-1", "cat"), ("identity-10", address.as_str()), ("identity-14", "gatagpt")]);
    assert!(rows[0]["signature"].is_null() && rows[2]["signature"].is_null());
    let payloads = root
        .rows(&format!(
            "SELECT payload, submitted_by FROM events WHERE contributor_id = '{address}' ORDER BY kafka_offset"
        ))
        .await
        .unwrap();
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    let signed =
        Event::parse(EventKind::ChatTurn, payloads[0]["payload"].as_str().unwrap().as_bytes(), &Limits::default())
            .unwrap();
    assert_eq!((signed.signature().is_some(), signed.submitted_by()), (true, Some(address.as_str())));
    signed.check_signature(56).expect("the author is recoverable from the bronze payload");
    assert_eq!(payloads[0]["submitted_by"], json!(address));

    // Checking a signature costs about 60 times parsing the event, so a signed event counts 50
    // in the rate limits, which are taken before any signature is checked: 60 signed events take
    // 3 000 of a fresh contributor's 5 000, and 60 more do not fit.
    let dave = Account::from_private_key_hex(&"d4".repeat(32)).unwrap();
    let text = message(&dave, DOMAIN, &nonce(&open).await, None);
    let (_, session) = sign_in(&open, &text, &personal_sign(&dave, &text)).await;
    let dave_api = open.with_token(session["token"].as_str().unwrap());
    let dave_id = dave.address().to_string();
    let batch: Vec<Value> = (100..220).map(|i| turn(i, &dave_id, Some(&dave))).collect();
    assert_eq!(dave_api.post_ndjson("/v1/chat-turns", &batch[..60]).await.unwrap().0, 202);
    let (status, body) = dave_api.post_ndjson("/v1/chat-turns", &batch[60..]).await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")), "{body}");
}
