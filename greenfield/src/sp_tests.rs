//! The client against the emulator over loopback HTTP: the provider's rules hold for real
//! signed requests, and what the client uploads comes back byte for byte with the hashes
//! Greenfield would record.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};

use crate::{
    Account, ChainClient, ChainConfig, Emulator, GreenfieldError, SpClient, SpConfig, Upload, Visibility,
    auth::{self, Validity},
    emulator::PendingObject,
    integrity_hashes,
    policy::{Action, MsgDeletePolicy, MsgPutPolicy, Principal, Statement, bucket_grn, object_grn},
    tags::MsgSetTag,
};

const OWNER: &str = "289c2857d4598e37fb9647507e47a309d6133539bf21a8b9cb6df88fd5232032";
const OTHER: &str = "25c317c8d0a63c122073ae52984e8477e7fbc322c93a9457c5579ee6e5a813b3";
const SP: &str = "0101010101010101010101010101010101010101010101010101010101010101";

fn config(addr: SocketAddr, retries: u32) -> SpConfig {
    SpConfig {
        endpoint: format!("http://{addr}").parse().unwrap(),
        retries,
        backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(10),
    }
}

async fn provider() -> (Emulator, SocketAddr, SpClient, SpClient) {
    let owner = Account::from_private_key_hex(OWNER).unwrap();
    let other = Account::from_private_key_hex(OTHER).unwrap();
    let emulator = Emulator::new(Account::from_private_key_hex(SP).unwrap().address());
    emulator.create_bucket("gata", owner.address());
    let addr = emulator.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let owner = SpClient::new(config(addr, 0), owner).unwrap();
    let other = SpClient::new(config(addr, 0), other).unwrap();
    (emulator, addr, owner, other)
}

fn delegated() -> Upload {
    Upload::Delegated { visibility: Visibility::Private, is_update: false }
}

fn refusal(e: GreenfieldError) -> (u16, String) {
    match e {
        GreenfieldError::Refused { status, code, .. } => (status, code),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test]
async fn uploads_come_back_with_greenfields_hashes_and_reads_follow_grants() {
    let (emulator, addr, owner, other) = provider().await;
    let payload = Bytes::from((0..100_000u32).flat_map(|i| i.to_le_bytes()).collect::<Vec<_>>());
    owner
        .put_object(
            "gata",
            "lake/silver chat/part-0.parquet",
            payload.clone(),
            "application/vnd.apache.parquet",
            &delegated(),
        )
        .await
        .unwrap();
    let info = owner.head_object("gata", "lake/silver chat/part-0.parquet").await.unwrap().unwrap();
    assert_eq!(info.checksum_bytes().unwrap(), integrity_hashes(&payload).unwrap().hashes);
    assert_eq!(info.payload_size, payload.len() as u64);
    assert_eq!(info.owner, owner.account().address().to_string());
    assert_eq!(owner.get_object("gata", "lake/silver chat/part-0.parquet", None).await.unwrap(), payload);
    assert_eq!(
        owner.get_object("gata", "lake/silver chat/part-0.parquet", Some(10..20)).await.unwrap(),
        payload.slice(10..20)
    );
    assert!(owner.head_object("gata", "lake/none").await.unwrap().is_none());

    // Private: another account is refused until the bucket's policy lets it read, and after.
    let denied = other.get_object("gata", "lake/silver chat/part-0.parquet", None).await.unwrap_err();
    assert_eq!(refusal(denied), (403, "AccessDenied".to_string()));
    let chain = ChainClient::new(
        ChainConfig::new(format!("http://{addr}").parse().unwrap(), emulator.chain_id()),
        Account::from_private_key_hex(OWNER).unwrap(),
    )
    .unwrap();
    let reader = Principal::account(other.account().address());
    let grant = |resource: String, resources: Vec<String>| MsgPutPolicy {
        operator: owner.account().address().to_string(),
        principal: Some(reader.clone()),
        resource,
        statements: vec![Statement::allow(&[Action::GetObject], resources)],
        expiration_time: None,
    };
    // A bucket policy whose pattern covers `lake/`, signed and broadcast as a transaction.
    let bucket_policy = grant(bucket_grn("gata"), vec!["grn:o::gata/lake/.*".into()]);
    let txhash = chain.submit(&[&bucket_policy], "grant").await.unwrap();
    assert_eq!(txhash.len(), 64);
    assert_eq!(other.get_object("gata", "lake/silver chat/part-0.parquet", None).await.unwrap(), payload);
    let revoke = MsgDeletePolicy {
        operator: owner.account().address().to_string(),
        principal: Some(reader.clone()),
        resource: bucket_grn("gata"),
    };
    chain.submit(&[&revoke], "").await.unwrap();
    assert!(other.get_object("gata", "lake/silver chat/part-0.parquet", None).await.is_err());
    // An object policy, then its removal, in one transaction each.
    let object = object_grn("gata", "lake/silver chat/part-0.parquet");
    chain.submit(&[&grant(object.clone(), vec![])], "").await.unwrap();
    assert_eq!(other.get_object("gata", "lake/silver chat/part-0.parquet", None).await.unwrap(), payload);
    let revoke_object = MsgDeletePolicy { resource: object.clone(), ..revoke.clone() };
    chain.submit(&[&revoke_object], "").await.unwrap();
    assert!(other.get_object("gata", "lake/silver chat/part-0.parquet", None).await.is_err());

    // The chain refuses: a policy put by who does not own the bucket, and one whose object
    // statement names resources; neither changes anything.
    let stranger = ChainClient::new(
        ChainConfig::new(format!("http://{addr}").parse().unwrap(), emulator.chain_id()),
        Account::from_private_key_hex(OTHER).unwrap(),
    )
    .unwrap();
    let self_grant = MsgPutPolicy { operator: other.account().address().to_string(), ..bucket_policy.clone() };
    let refused = stranger.submit(&[&self_grant], "").await.unwrap_err();
    assert!(
        matches!(&refused, GreenfieldError::TxRefused { code: 4, log, .. } if log.contains("does not own")),
        "{refused}"
    );
    let malformed = grant(object.clone(), vec!["grn:o::gata/.*".into()]);
    assert!(matches!(chain.submit(&[&malformed], "").await, Err(GreenfieldError::TxRefused { .. })));
    assert!(other.get_object("gata", "lake/silver chat/part-0.parquet", None).await.is_err());
    // Tags: set on chain by the owner, read back; a fifth tag is refused.
    let tag = |pairs: &[(&str, String)]| MsgSetTag::new(owner.account().address().to_string(), object.clone(), pairs);
    chain.submit(&[&tag(&[("gata-table", "chat_turns".into()), ("gata-version", "3".into())])], "").await.unwrap();
    assert_eq!(
        chain.object_tags("gata", "lake/silver chat/part-0.parquet").await.unwrap().unwrap(),
        [("gata-table".to_string(), "chat_turns".to_string()), ("gata-version".into(), "3".into())]
    );
    let five: Vec<(&str, String)> = ["a", "b", "c", "d", "e"].iter().map(|k| (*k, "v".to_string())).collect();
    assert!(matches!(chain.submit(&[&tag(&five)], "").await, Err(GreenfieldError::TxRefused { .. })));
    assert!(chain.object_tags("gata", "lake/none").await.unwrap().is_none());

    // Signed for another chain: the signature does not verify.
    let elsewhere = ChainClient::new(
        ChainConfig::new(format!("http://{addr}").parse().unwrap(), "greenfield_5600-1"),
        Account::from_private_key_hex(OWNER).unwrap(),
    )
    .unwrap();
    let wrong_chain = elsewhere.submit(&[&bucket_policy], "").await.unwrap_err();
    assert!(
        matches!(&wrong_chain, GreenfieldError::TxRefused { code: 4, log, .. } if log.contains("signature")),
        "{wrong_chain}"
    );
    assert!(other.get_object("gata", "lake/silver chat/part-0.parquet", None).await.is_err());

    // Listing pages through names in order.
    for i in 0..5 {
        owner
            .put_object(
                "gata",
                &format!("log/{i:03}.json"),
                Bytes::from(vec![i as u8; 3]),
                "application/json",
                &delegated(),
            )
            .await
            .unwrap();
    }
    let first = owner.list_objects("gata", "log/", 2, None).await.unwrap();
    assert_eq!(
        first.objects.iter().map(|o| o.object_name.as_str()).collect::<Vec<_>>(),
        ["log/000.json", "log/001.json"]
    );
    let all = owner.list_all("gata", "log/").await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[4].object_name, "log/004.json");
}

#[tokio::test]
async fn the_provider_refuses_what_a_real_one_refuses() {
    let (emulator, addr, owner, other) = provider().await;
    let body = Bytes::from_static(b"delta commit");
    owner.put_object("gata", "a.json", body.clone(), "application/json", &delegated()).await.unwrap();

    let again = owner.put_object("gata", "a.json", body.clone(), "application/json", &delegated()).await.unwrap_err();
    assert_eq!(refusal(again), (409, "ObjectAlreadyExists".into()));
    let update = Upload::Delegated { visibility: Visibility::Private, is_update: true };
    owner.put_object("gata", "a.json", Bytes::from_static(b"v2"), "application/json", &update).await.unwrap();
    assert_eq!(owner.get_object("gata", "a.json", None).await.unwrap(), Bytes::from_static(b"v2"));

    let stranger =
        other.put_object("gata", "b.json", body.clone(), "application/json", &delegated()).await.unwrap_err();
    assert_eq!(refusal(stranger), (403, "AccessDenied".into()));
    let no_bucket =
        owner.put_object("nobucket", "b.json", body.clone(), "application/json", &delegated()).await.unwrap_err();
    assert_eq!(refusal(no_bucket), (404, "NoSuchBucket".into()));
    let bad_name = owner.put_object("gata", "x/../y", body.clone(), "application/json", &delegated()).await;
    assert!(matches!(bad_name, Err(GreenfieldError::ObjectName { .. })), "{bad_name:?}");

    // Uploads naming a creating transaction: unknown, then wrong payload, then the right one.
    let created = Upload::Created { txn_hash: "AB12".into() };
    let unknown =
        owner.put_object("gata", "c.bin", body.clone(), "application/octet-stream", &created).await.unwrap_err();
    assert_eq!(refusal(unknown), (400, "NoSuchTransaction".into()));
    emulator.record_created(
        "ab12",
        PendingObject {
            bucket: "gata".into(),
            object: "c.bin".into(),
            owner: owner.account().address(),
            size: body.len() as u64,
            checksums: integrity_hashes(&body).unwrap().hashes,
            public: false,
            content_type: "application/octet-stream".into(),
        },
    );
    let tampered = Bytes::from_static(b"delta commiT");
    let mismatch = owner.put_object("gata", "c.bin", tampered, "application/octet-stream", &created).await.unwrap_err();
    assert_eq!(refusal(mismatch), (400, "ChecksumMismatch".into()));
    owner.put_object("gata", "c.bin", body.clone(), "application/octet-stream", &created).await.unwrap();

    // Hand-made requests: a body that differs from its signed hash, a forged signer, an
    // expired signature, and none at all.
    let http = reqwest::Client::new();
    let host = addr.to_string();
    let signed = |path: &str, query: Option<&str>, sha: &str, now: chrono::DateTime<chrono::Utc>| {
        let mut h = HeaderMap::new();
        h.insert(auth::CONTENT_SHA256, HeaderValue::from_str(sha).unwrap());
        let validity = Validity { now, valid_for: chrono::Duration::minutes(1) };
        auth::sign(owner.account(), &Method::PUT, path, query, &host, &mut h, validity).unwrap();
        h
    };
    let url = |path: &str, query: &str| format!("http://{addr}{path}?{query}");
    let q = "delegate=&is_update=false&payload_size=4&visibility=2";
    let sha_of_other = auth::EMPTY_SHA256.replace('e', "f");
    let sent = http
        .put(url("/gata/d.bin", q))
        .headers(signed("/gata/d.bin", Some(q), &sha_of_other, chrono::Utc::now()))
        .body("abcd");
    assert_eq!(sent.send().await.unwrap().status(), 400);
    let mut forged = signed("/gata/d.bin", Some(q), auth::EMPTY_SHA256, chrono::Utc::now());
    forged.insert(auth::USER_ADDRESS, HeaderValue::from_str(&other.account().address().to_string()).unwrap());
    let sent = http.put(url("/gata/d.bin", q)).headers(forged).body("abcd");
    assert_eq!(sent.send().await.unwrap().status(), 403);
    let old = chrono::Utc::now() - chrono::Duration::minutes(10);
    let sent =
        http.put(url("/gata/d.bin", q)).headers(signed("/gata/d.bin", Some(q), auth::EMPTY_SHA256, old)).body("abcd");
    let answer = sent.send().await.unwrap();
    assert_eq!(answer.status(), 403);
    assert!(answer.text().await.unwrap().contains("expired"));
    assert_eq!(http.put(url("/gata/d.bin", q)).body("abcd").send().await.unwrap().status(), 403);
    assert_eq!(http.get(format!("http://{addr}/gata/a.json")).send().await.unwrap().status(), 403);
    let sent = http
        .put(url("/gata/x//y", q))
        .headers(signed("/gata/x//y", Some(q), auth::EMPTY_SHA256, chrono::Utc::now()))
        .body("abcd");
    let answer = sent.send().await.unwrap();
    assert_eq!(answer.status(), 400);
    assert!(answer.text().await.unwrap().contains("InvalidObjectName"));
    // The same request, properly signed, is taken.
    let sent = http
        .put(url("/gata/d.bin", q))
        .headers(signed("/gata/d.bin", Some(q), auth::EMPTY_SHA256, chrono::Utc::now()))
        .body("abcd");
    assert_eq!(sent.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn unavailable_providers_are_retried_with_backoff() {
    let calls = Arc::new(AtomicU32::new(0));
    let emulator = Emulator::new(Account::from_private_key_hex(SP).unwrap().address());
    let owner = Account::from_private_key_hex(OWNER).unwrap();
    emulator.create_bucket("gata", owner.address());
    let counted = calls.clone();
    let flaky =
        emulator.router().layer(axum::middleware::from_fn(move |request, next: axum::middleware::Next| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 { http::StatusCode::SERVICE_UNAVAILABLE.into_response() } else { next.run(request).await }
            }
        }));
    use axum::response::IntoResponse as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, flaky).await });
    let patient = SpClient::new(config(addr, 3), owner.clone()).unwrap();
    assert!(patient.list_all("gata", "").await.unwrap().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    calls.store(0, Ordering::SeqCst);
    let hasty = SpClient::new(config(addr, 1), owner).unwrap();
    assert_eq!(refusal(hasty.list_all("gata", "").await.unwrap_err()), (503, "Unknown".into()));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
