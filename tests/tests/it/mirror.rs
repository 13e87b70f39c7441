//! The mirror role over a lake the platform filled: every commit reaches a local object-store
//! target and a Greenfield bucket on the loopback storage-provider emulator, the local mirror
//! reads back as the same Delta tables, a second pass and a resumed mirror send nothing again,
//! verification re-hashes everything (and names what was tampered with), and the bucket's
//! objects stay private.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use deltalake::DeltaTableBuilder;
use gata_contract::MarketAction;
use gata_greenfield::{Account, ChainClient, ChainConfig, Emulator, SpClient, SpConfig, Visibility};
use gata_infra::config::MirrorConfig;
use gata_lakehouse::{Lake, TableId, deltalake};
use gata_marketplace::{Market, Marketplace};
use gata_mirror::{GrantReport, GrantSync, Mirror, Target, verify};
use gata_tests::Gata;
use serde_json::{Value, json};
use url::Url;

use crate::{
    bin,
    scoring::{PROMPTS, at, preference, turn, uuid, wait_for_scores},
};

fn settings(versions_per_pass: i64) -> MirrorConfig {
    MirrorConfig {
        rate_limit_bytes_per_second: 0,
        versions_per_pass,
        interval: Duration::from_secs(1),
        ..MirrorConfig::default()
    }
}

async fn rows(table_url: &Url) -> usize {
    let mut table = DeltaTableBuilder::from_url(table_url.clone()).unwrap().build().unwrap();
    table.load().await.unwrap();
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    ctx.register_table("t", table.table_provider().await.unwrap()).unwrap();
    let batches = ctx.sql("SELECT count(*) AS n FROM t").await.unwrap().collect().await.unwrap();
    let n = batches[0].column(0).as_any().downcast_ref::<deltalake::arrow::array::Int64Array>().unwrap().value(0);
    n as usize
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mirror_copies_every_commit_resumes_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let mut gata = Gata::start(bin(), dir.path()).await.unwrap();
    let api = gata.client();
    let turns: Vec<Value> = (0..6)
        .map(|i| turn(&uuid(i), &format!("person_{i}"), &format!("turn_{i}"), PROMPTS[i as usize], at(i.into())))
        .collect();
    let prefs: Vec<Value> = (0..4)
        .map(|i| preference(&uuid(100 + i), &format!("person_{i}"), &format!("turn_{i}"), at(i as i64 + 1)))
        .collect();
    for (route, events) in [("/v1/chat-turns", &turns), ("/v1/preferences", &prefs)] {
        let (status, body) = api.post_ndjson(route, events).await.unwrap();
        assert_eq!(status, 202, "{body}");
    }
    wait_for_scores(&api, 10).await;
    gata.kill();

    let lake_dir = dir.path().join("lake");
    let lake = Lake::new(Url::from_directory_path(&lake_dir).unwrap().as_str(), &BTreeMap::new()).unwrap();
    let registry = prometheus::Registry::new();

    // A local object-store target: a first pass copies everything, a second finds nothing new.
    let out = tempfile::tempdir().unwrap();
    let local_url = Url::from_directory_path(out.path()).unwrap();
    let local = Target::store(local_url.clone(), &BTreeMap::new()).unwrap();
    let mut mirror = Mirror::new(lake.clone(), local.clone(), settings(1000), &registry).await.unwrap();
    let first = mirror.pass().await.unwrap();
    assert!(first.uploaded > 10 && first.present == 0 && first.missing == 0, "{first:?}");
    assert_eq!(first.anchor, Some(1), "{first:?}");
    let again = mirror.pass().await.unwrap();
    assert_eq!((again.uploaded, again.present, again.anchor), (0, 0, None), "{again:?}");
    for table in [TableId::ChatTurns, TableId::Preferences, TableId::QualityScores, TableId::Events] {
        let mirrored = rows(&local_url.join(&format!("{}/", table.path())).unwrap()).await;
        assert_eq!(mirrored, rows(&lake.table_url(table)).await, "{}", table.name());
    }
    assert_eq!(rows(&local_url.join("silver/chat_turns/").unwrap()).await, 6);

    // Verification: every object re-hashed, every submission's row hash recomputed.
    let entries = mirror.progress().entries(&local_url).await.unwrap();
    let epochs = mirror.epoch_roots().await.unwrap();
    let report = verify(&local, &entries, &epochs).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.objects, entries.len() as u64);
    assert_eq!((report.submissions, report.anchors), (10, 1), "{report:?}");
    // The anchor commits to every submission record by an RFC 6962 root.
    let anchor_entry = entries.iter().find(|e| e.kind == "anchor").unwrap();
    let anchor: gata_mirror::anchor::Anchor =
        serde_json::from_slice(&std::fs::read(out.path().join(&anchor_entry.path)).unwrap()).unwrap();
    let records = gata_mirror::anchor::records_in(&entries);
    assert_eq!(anchor.records, records);
    assert_eq!(anchor.records.len() as u64, report.records);
    assert_eq!(anchor.records_root, gata_mirror::anchor::records_root(&records));
    // An epoch root the lake does not hold is named.
    let mut forged = anchor.clone();
    forged.epochs.push(gata_mirror::anchor::EpochRoot { epoch: 1, policy_version: "v1".into(), root: "00".repeat(32) });
    let forged_dir = tempfile::tempdir().unwrap();
    copy_tree(out.path(), forged_dir.path());
    let forged_bytes = serde_json::to_vec(&forged).unwrap();
    std::fs::write(forged_dir.path().join(&anchor_entry.path), &forged_bytes).unwrap();
    let forged_entries: Vec<_> = entries
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if e.kind == "anchor" {
                e.sha256 = hex_sha256(&forged_bytes);
                e.size = forged_bytes.len() as i64;
            }
            e
        })
        .collect();
    let forged_target = Target::store(Url::from_directory_path(forged_dir.path()).unwrap(), &BTreeMap::new()).unwrap();
    let caught = verify(&forged_target, &forged_entries, &epochs).await.unwrap();
    assert!(caught.problems.iter().any(|p| p.contains("is not the lake's")), "{:?}", caught.problems);
    let records: Vec<Value> = entries
        .iter()
        .filter(|e| e.kind == "record" && e.table_name == "chat_turns")
        .map(|e| serde_json::from_slice(&std::fs::read(out.path().join(&e.path)).unwrap()).unwrap())
        .collect();
    assert_eq!(records.iter().map(|r| r["submissions"].as_array().unwrap().len()).sum::<usize>(), 6);
    let record = &records[0];
    let submission = &record["submissions"][0];
    assert_eq!(submission["kind"], "chat_turn");
    assert!(submission["contributor_id"].as_str().unwrap().starts_with("person_"));
    assert_eq!(
        submission["scores"][0]["verdict"].as_str().map(|v| v == "accept" || v == "reject"),
        Some(true),
        "{record}"
    );

    // A mirror resumed on the same lake sends nothing; one whose target already holds the
    // objects (a crash after uploading, before recording) finds them all by checksum.
    let mut resumed = Mirror::new(lake.clone(), local.clone(), settings(1000), &registry).await.unwrap();
    assert_eq!(resumed.pass().await.unwrap().uploaded, 0);
    let copy = tempfile::tempdir().unwrap();
    copy_tree(out.path(), copy.path());
    let copy_url = Url::from_directory_path(copy.path()).unwrap();
    let mut crashed =
        Mirror::new(lake.clone(), Target::store(copy_url, &BTreeMap::new()).unwrap(), settings(2), &registry)
            .await
            .unwrap();
    let mut total = gata_mirror::PassReport::default();
    loop {
        let pass = crashed.pass().await.unwrap();
        if pass.versions.is_empty() {
            break;
        }
        total.uploaded += pass.uploaded;
        total.present += pass.present;
    }
    assert_eq!((total.uploaded, total.present), (0, first.uploaded), "{total:?}");

    // Tampering with a mirrored data file is named by verification.
    let data = entries.iter().find(|e| e.kind == "data" && e.table_name == "preferences").unwrap();
    std::fs::write(out.path().join(&data.path), b"not parquet").unwrap();
    let tampered = verify(&local, &entries, &epochs).await.unwrap();
    assert!(tampered.problems.iter().any(|p| p.starts_with(&data.path)), "{:?}", tampered.problems);

    // Greenfield: the same objects in a private bucket through the signed provider client.
    let owner =
        Account::from_private_key_hex("289c2857d4598e37fb9647507e47a309d6133539bf21a8b9cb6df88fd5232032").unwrap();
    let reader =
        Account::from_private_key_hex("25c317c8d0a63c122073ae52984e8477e7fbc322c93a9457c5579ee6e5a813b3").unwrap();
    let emulator = Emulator::new(reader.address());
    emulator.create_bucket("gata-lake", owner.address());
    let addr = emulator.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let config = SpConfig {
        endpoint: format!("http://{addr}").parse().unwrap(),
        retries: 2,
        backoff: Duration::from_millis(50),
        timeout: Duration::from_secs(30),
    };
    let client = SpClient::new(config.clone(), owner).unwrap();
    let gf_url = Url::parse("greenfield://gata-lake/mirror/").unwrap();
    let greenfield = Target::greenfield(gf_url.clone(), client.clone(), Visibility::Private).unwrap();
    let chain = ChainClient::new(
        ChainConfig::new(format!("http://{addr}").parse().unwrap(), emulator.chain_id()),
        Account::from_private_key_hex("289c2857d4598e37fb9647507e47a309d6133539bf21a8b9cb6df88fd5232032").unwrap(),
    )
    .unwrap();
    let mut to_greenfield = Mirror::new(lake.clone(), greenfield.clone(), settings(1000), &registry)
        .await
        .unwrap()
        .with_chain(chain.clone());
    let sent = to_greenfield.pass().await.unwrap();
    assert_eq!((sent.uploaded, sent.present), (first.uploaded, 0), "{sent:?}");
    // Every table object (all but the anchor) is tagged on chain with what it is.
    assert_eq!(sent.tagged, sent.uploaded - 1, "{sent:?}");
    let objects = client.list_all("gata-lake", "mirror/").await.unwrap();
    assert_eq!(objects.len() as u64, first.uploaded);
    let gf_entries = to_greenfield.progress().entries(&gf_url).await.unwrap();
    assert!(gf_entries.iter().all(|e| e.integrity.as_deref().is_some_and(|i| i.split(',').count() == 7)));
    let data = gf_entries.iter().find(|e| e.kind == "data" && e.table_name == "chat_turns").unwrap();
    let tags: BTreeMap<String, String> =
        chain.object_tags("gata-lake", &format!("mirror/{}", data.path)).await.unwrap().unwrap().into_iter().collect();
    assert_eq!(tags["gata-table"], "chat_turns");
    assert_eq!(tags["gata-version"], data.version.to_string());
    assert_eq!(tags["gata-sha256"], data.sha256);
    let record =
        gf_entries.iter().find(|e| e.kind == "record" && e.version == data.version && e.table_name == "chat_turns");
    assert_eq!(tags.get("gata-record"), record.map(|r| &r.path));
    let report = verify(&greenfield, &gf_entries, &epochs).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let stranger = SpClient::new(config, reader).unwrap();
    let denied = stranger.get_object("gata-lake", &objects[0].object_name, None).await.unwrap_err();
    assert!(denied.to_string().contains("AccessDenied"), "{denied}");

    marketplace_access_becomes_object_policies(&lake, &registry, addr, &emulator, &stranger, &gf_entries).await;
}

/// A buyer of a chat-turn listing whose contributors all grant it gets object policies for the
/// chat-turn files and records (through signed transactions the emulated chain verified), and
/// loses those of a contributor's batches when the contributor revokes.
async fn marketplace_access_becomes_object_policies(
    lake: &Lake,
    registry: &prometheus::Registry,
    addr: std::net::SocketAddr,
    emulator: &Emulator,
    buyer: &SpClient,
    entries: &[gata_mirror::progress::Entry],
) {
    let market = Arc::new(RwLock::new(Market::default()));
    let apply = |actor: &str, action: Value| {
        let event = Marketplace::event(actor, serde_json::from_value::<MarketAction>(action).unwrap());
        market.write().unwrap().apply(&event, chrono::Utc::now()).unwrap();
    };
    let listing = json!({"listing_id": "chats", "version": 1, "title": "Chats", "kinds": ["chat_turn"],
        "price": 100, "terms": "research"});
    apply("curator", json!({"action": "publish_listing", "listing": listing}));
    for i in 0..6 {
        let person = format!("person_{i}");
        apply(&person, json!({"action": "grant", "contributor_id": person, "listing_id": "chats"}));
    }
    apply(
        "acme",
        json!({"action": "purchase", "purchase_id": "0190e5a0-0000-7000-8000-000000000001", "listing_id": "chats",
        "version": 1, "buyer": "acme", "price": 100, "payment_ref": "tx-1", "shares": []}),
    );
    apply(
        "ops",
        json!({"action": "confirm_payment", "purchase_id": "0190e5a0-0000-7000-8000-000000000001",
        "listing_id": "chats", "method": "manual", "note": "paid"}),
    );

    let owner =
        Account::from_private_key_hex("289c2857d4598e37fb9647507e47a309d6133539bf21a8b9cb6df88fd5232032").unwrap();
    let chain_config = ChainConfig::new(format!("http://{addr}").parse().unwrap(), emulator.chain_id());
    let buyers = BTreeMap::from([("acme".to_string(), buyer.account().address())]);
    let sync = |market: Arc<RwLock<Market>>| {
        let chain = ChainClient::new(chain_config.clone(), owner.clone()).unwrap();
        GrantSync::new(lake, chain, market, buyers.clone())
    };
    let gf_url = Url::parse("greenfield://gata-lake/mirror/").unwrap();
    let client = SpClient::new(
        SpConfig {
            endpoint: format!("http://{addr}").parse().unwrap(),
            retries: 2,
            backoff: Duration::from_millis(50),
            timeout: Duration::from_secs(30),
        },
        owner.clone(),
    )
    .unwrap();
    let target = Target::greenfield(gf_url, client, Visibility::Private).unwrap();
    let mut mirror = Mirror::new(lake.clone(), target.clone(), settings(1000), registry)
        .await
        .unwrap()
        .with_grants(sync(market.clone()).await.unwrap());

    let chat_objects: Vec<&gata_mirror::progress::Entry> =
        entries.iter().filter(|e| e.table_name == "chat_turns" && e.kind != "log").collect();
    let first = mirror.pass().await.unwrap();
    assert_eq!(first.grants.granted, chat_objects.len() as u64, "{first:?}");
    assert!(first.grants.transactions >= 1);
    let name = |e: &gata_mirror::progress::Entry| format!("mirror/{}", e.path);
    for e in &chat_objects {
        assert!(buyer.get_object("gata-lake", &name(e), None).await.is_ok(), "{}", e.path);
    }
    let preference = entries.iter().find(|e| e.table_name == "preferences" && e.kind == "data").unwrap();
    assert!(buyer.get_object("gata-lake", &name(preference), None).await.is_err());
    let log = entries.iter().find(|e| e.table_name == "chat_turns" && e.kind == "log").unwrap();
    assert!(buyer.get_object("gata-lake", &name(log), None).await.is_err());

    // Nothing changed: nothing sent; a restarted sync reads what it applied from the lake.
    assert_eq!(mirror.pass().await.unwrap().grants, GrantReport::default());
    let mut restarted = sync(market.clone()).await.unwrap();
    assert_eq!(restarted.sync(&target, entries).await.unwrap(), GrantReport::default());

    // person_0 revokes: every batch holding their rows becomes unreadable, the others stay.
    apply("person_0", json!({"action": "revoke", "contributor_id": "person_0", "listing_id": "chats"}));
    let revoked = mirror.pass().await.unwrap().grants;
    assert!(revoked.revoked > 0 && revoked.granted == 0, "{revoked:?}");
    let mut still = 0;
    for e in &chat_objects {
        let readable = buyer.get_object("gata-lake", &name(e), None).await.is_ok();
        still += u64::from(readable);
    }
    assert_eq!(still, chat_objects.len() as u64 - revoked.revoked);
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}
