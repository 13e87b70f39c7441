//! Rewards end to end: the processor closes short epochs over real scores and records payouts
//! once (also across a restart); the contributor endpoint and CLI show them; a proof printed from
//! the lake verifies without it and fails once altered; `gata replay` matches the record, names
//! the epoch, contributor and event after one bronze row is altered, and shows a what-if policy.

use std::{path::Path, process::Command, time::Duration};

use gata_contract::{
    EventKind,
    topics::{SCHEMA_HEADER, intake_topic},
};
use gata_infra::kafka::KafkaClients;
use gata_lakehouse::{
    Lake, TableId,
    deltalake::datafusion::prelude::{col, lit},
};
use gata_tests::{Gata, eventually, free_port};
use gata_wallet::Account;
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};

use crate::{
    bin, identity,
    scoring::{PROMPTS, at, preference, turn, uuid, wait_for_scores},
};

/// Runs `gata <args> --data-dir dir`; returns (exit code, stdout, stderr).
pub(crate) fn gata(dir: &Path, env: &[(&str, String)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// Policy v1 with two-second epochs, so epochs close during a test; returns its path.
pub(crate) fn two_second_policy(dir: &Path) -> String {
    let policy = dir.join("policy-2s.toml");
    let text = include_str!("../../../policy/v1.toml")
        .replace("version = \"v1\"", "version = \"t2s\"")
        .replace("epoch = \"1d\"", "epoch = \"2s\"");
    std::fs::write(&policy, text).unwrap();
    policy.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn payouts_are_recorded_once_proven_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let policy = two_second_policy(dir.path());
    let env = [
        ("GATA__REWARDS__POLICY", policy.as_str()),
        ("GATA__REWARDS__GRACE", "1s"),
        ("GATA__REWARDS__INTERVAL", "300ms"),
        ("GATA__AUTH__WALLET__DOMAIN", identity::DOMAIN),
    ];
    let cli_env: Vec<(&str, String)> = vec![("GATA__REWARDS__POLICY", policy.clone())];
    let port = free_port();
    let mut platform = Gata::start_on(bin(), dir.path(), port, &env).await.unwrap();
    let api = platform.client();

    // person_1 links its id to a wallet, by a message the wallet signed; a message linking
    // another id, or replayed, links nothing.
    let wallet = Account::from_private_key_hex(&"2a".repeat(32)).unwrap();
    let link = |message: &str| {
        let signature = identity::personal_sign(&wallet, message);
        json!({"contributor_id": "person_1", "message": message, "signature": signature}).to_string()
    };
    let signed_for = |nonce: &str, id: &str| {
        format!("{}\nResources:\n- urn:gata:link:{id}", identity::message(&wallet, identity::DOMAIN, nonce, None))
    };
    let wrong = signed_for(&identity::nonce(&api).await, "person_2");
    let (status, body) = api.post("/v1/auth/link", "application/json", link(&wrong)).await.unwrap();
    assert_eq!(status, 401, "{body}");
    let message = signed_for(&identity::nonce(&api).await, "person_1");
    let (status, body) = api.post("/v1/auth/link", "application/json", link(&message)).await.unwrap();
    assert_eq!((status, body["address"].as_str()), (200, Some(wallet.address().to_string().as_str())), "{body}");
    let (status, body) = api.post("/v1/auth/link", "application/json", link(&message)).await.unwrap();
    assert_eq!(status, 401, "a link message is used once: {body}");

    // Six people ask; four also judge their turn; one account submits an empty-answer turn.
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
    let n = (turns.len() + prefs.len()) as u64;
    wait_for_scores(&api, n).await;
    let paid_lines = "SELECT COALESCE(SUM(cardinality(lines)), 0) AS n FROM rewards";
    eventually("every score in a closed epoch", Duration::from_secs(60), || async {
        (api.count(paid_lines).await.ok()? == n).then_some(())
    })
    .await;

    // The endpoint shows person_0's payouts with the submissions behind them; the amounts follow
    // the policy (an accepted turn and preference earn, a rejected one earns nothing).
    let (status, mine) = api.get("/v1/contributors/person_0/rewards").await.unwrap();
    assert_eq!(status, 200, "{mine}");
    let lines: Vec<&Value> =
        mine["epochs"].as_array().unwrap().iter().flat_map(|e| e["lines"].as_array().unwrap()).collect();
    assert_eq!(lines.len(), 2, "{mine}");
    let expected: i64 = lines.iter().map(|l| l["amount"].as_i64().unwrap()).sum();
    assert_eq!(mine["total"].as_i64().unwrap(), expected);
    for l in &lines {
        let (tier, amount) = (l["tier"].as_str().unwrap(), l["amount"].as_i64().unwrap());
        match l["verdict"].as_str().unwrap() {
            "reject" => assert_eq!((tier, amount), ("rejected", 0), "{l}"),
            _ => assert!(amount > 0 && tier != "rejected", "{l}"),
        }
    }

    // Idempotence: a restart re-runs the processor over the same lake and pays nothing twice.
    let last = api.count("SELECT MAX(epoch) AS n FROM rewards").await.unwrap();
    let rows_before = api.count("SELECT COUNT(*) AS n FROM rewards").await.unwrap();
    platform.kill();
    let platform = Gata::start_on(bin(), dir.path(), port, &env).await.unwrap();
    let api = platform.client();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let twice = "SELECT COUNT(*) AS n FROM (SELECT epoch, account FROM rewards GROUP BY 1, 2 HAVING COUNT(*) > 1)";
    assert_eq!(api.count(twice).await.unwrap(), 0);
    let old = format!("SELECT COUNT(*) AS n FROM rewards WHERE epoch <= {last}");
    assert_eq!(api.count(&old).await.unwrap(), rows_before, "closed epochs are not recorded again");
    assert_eq!(api.count(paid_lines).await.unwrap(), n, "no score paid twice after the restart");

    // A proof printed from the lake verifies with the trusted root and without the lake; an
    // altered amount does not.
    // person_1 is paid at its wallet, person_0 (never linked) at no address.
    let payees = "SELECT DISTINCT account, payee FROM rewards WHERE account IN ('person_0', 'person_1') ORDER BY 1";
    let payees = api.rows(payees).await.unwrap();
    assert_eq!(
        payees,
        [
            json!({"account": "person_0", "payee": null}),
            json!({"account": "person_1", "payee": wallet.address().to_string()})
        ]
    );
    let row = &api.rows("SELECT epoch, epoch_root FROM rewards WHERE account = 'person_1'").await.unwrap()[0];
    let epoch = row["epoch"].as_i64().unwrap().to_string();
    let (code, proof, err) =
        gata(dir.path(), &cli_env, &["rewards", "proof", "--epoch", &epoch, "--contributor", "person_1"]);
    assert_eq!(code, 0, "{err}");
    let proof_file = dir.path().join("proof.json");
    std::fs::write(&proof_file, &proof).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let root = row["epoch_root"].as_str().unwrap();
    let (code, out, err) =
        gata(elsewhere.path(), &[], &["rewards", "verify", proof_file.to_str().unwrap(), "--root", root]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("valid: person_1 is paid"), "{out}");
    assert!(out.contains(&format!(" at {} ", wallet.address())), "the proof's leaf names the payee: {out}");
    let mut forged: Value = serde_json::from_str(&proof).unwrap();
    forged["amount"] = (forged["amount"].as_u64().unwrap() * 2).into();
    std::fs::write(&proof_file, forged.to_string()).unwrap();
    let (code, _, err) = gata(elsewhere.path(), &[], &["rewards", "verify", proof_file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("INVALID"), "{err}");
    drop(platform);

    // Replay over the untouched log matches the record: scores, every epoch root, the stats.
    let (code, out, err) =
        gata(dir.path(), &cli_env, &["replay", "--out", dir.path().join("scratch").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("scores (text-1.0.0): {n} compared, 0 differ")), "{out}");
    assert!(out.contains("same root") && !out.contains("DIFFERS"), "{out}");
    let scratch = Lake::new(&format!("file://{}", dir.path().join("scratch").display()), &Default::default()).unwrap();
    let lake = Lake::new(&format!("file://{}", dir.path().join("lake").display()), &Default::default()).unwrap();
    assert_eq!(
        gata_ledger::recorded_rewards(&scratch, None).await.unwrap(),
        gata_ledger::recorded_rewards(&lake, None).await.unwrap()
    );

    // A what-if under policy v2 reports what would change and exits 1.
    let (code, out, _) = gata(dir.path(), &cli_env, &["replay", "--policy", "v2", "--projection", "rewards"]);
    assert!(out.contains("replayed under v2"), "{out}");
    assert!(code == 0 || code == 1, "{out}");

    // Tamper with one bronze row: person_2's turn now claims to be mallory's. The replay names
    // the epoch, both contributors and the event.
    let bronze = lake.open(TableId::Events).await.unwrap();
    let victim = uuid(2);
    let rows = api_rows_payload(&lake, &victim).await;
    let tampered = rows.replace("\"person_2\"", "\"mallory\"");
    assert_ne!(rows, tampered);
    bronze
        .update()
        .with_predicate(col("event_id").eq(lit(victim.clone())))
        .with_update("payload", lit(tampered))
        .await
        .unwrap();
    let (code, out, err) = gata(dir.path(), &cli_env, &["replay"]);
    assert_eq!(code, 1, "{out}{err}");
    let paid_epoch = gata_ledger::recorded_rewards(&lake, None)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.payout("person_2").is_some_and(|p| p.lines.iter().any(|l| l.subject.to_string() == victim)))
        .unwrap()
        .epoch
        .index;
    assert!(out.contains(&format!("epoch {paid_epoch} contributor person_2:")), "{out}");
    assert!(out.contains(&format!("epoch {paid_epoch} contributor mallory: 0 ->")), "{out}");
    assert!(out.contains(&format!("event {victim}")), "{out}");
    assert!(out.contains("contributor mallory: recorded"), "{out}");
}

/// The payload bronze holds for event `id`.
async fn api_rows_payload(lake: &Lake, id: &str) -> String {
    let ctx = lake.session(&[TableId::Events]).await.unwrap();
    let batches = ctx
        .sql(&format!("SELECT arrow_cast(payload, 'Utf8') AS payload FROM events WHERE event_id = '{id}' LIMIT 1"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    use gata_lakehouse::deltalake::arrow::array::AsArray;
    batches[0].column(0).as_string::<i32>().value(0).to_string()
}

/// Produces `events` of `kind` to `bootstrap` with the given receipt timestamps, `copies` times
/// each (a re-delivered record is a second copy in the log).
async fn produce(bootstrap: &str, kind: EventKind, events: &[(Value, i64)], copies: usize) {
    let producer: FutureProducer = KafkaClients::new(bootstrap).producer(Duration::from_secs(10)).create().unwrap();
    let schema = kind.schema_name();
    for (event, ts) in events {
        let payload = event.to_string();
        for _ in 0..copies {
            let record = FutureRecord::to(intake_topic(kind))
                .key(event["contributor_id"].as_str().unwrap())
                .payload(payload.as_bytes())
                .timestamp(*ts)
                .headers(OwnedHeaders::new().insert(Header { key: SCHEMA_HEADER, value: Some(schema.as_str()) }));
            producer.send(record, Duration::from_secs(10)).await.unwrap();
        }
    }
}

/// Every payout recorded: (epoch, account, amount, root, payout id).
async fn payouts(api: &gata_tests::Api) -> Vec<Value> {
    api.rows("SELECT epoch, account, amount, epoch_root, event_id FROM rewards ORDER BY epoch, account").await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn payouts_do_not_depend_on_partitioning_or_redelivery_and_replay_from_kafka_matches() {
    let dir = tempfile::tempdir().unwrap();
    let policy = two_second_policy(dir.path());
    let start = |name: &'static str, partitions: &'static str| {
        let (dir, policy) = (dir.path().join(name), policy.clone());
        async move {
            let env = [
                ("GATA__REWARDS__POLICY", policy.as_str()),
                ("GATA__REWARDS__GRACE", "2s"),
                ("GATA__REWARDS__INTERVAL", "300ms"),
                ("GATA__KAFKA__PARTITIONS", partitions),
            ];
            Gata::start_on(bin(), &dir, free_port(), &env).await.unwrap()
        }
    };
    let one = start("one-partition", "1").await;
    let mut four = start("four-partitions", "4").await;

    // The same log for both (same records, same receipt timestamps across three epochs); the
    // four-partition one gets every record of the first wave twice. A copy of person_0's
    // prompt by mallory comes a second later, so both scorers see the original first.
    let now = chrono::Utc::now().timestamp_millis();
    let turns: Vec<(Value, i64)> = (0..8)
        .map(|i| {
            let t = turn(&uuid(i), &format!("person_{i}"), &format!("turn_{i}"), PROMPTS[i as usize], at(i.into()));
            (t, now + i64::from(i) * 500)
        })
        .collect();
    let prefs: Vec<(Value, i64)> = (0..5)
        .map(|i| {
            let p = preference(&uuid(100 + i), &format!("person_{i}"), &format!("turn_{i}"), at(i as i64 + 1));
            (p, now + 4_100 + i64::from(i) * 200)
        })
        .collect();
    let copy = vec![(turn(&uuid(50), "mallory", "turn_m", PROMPTS[0], at(20)), now + 5_500)];
    for (platform, copies) in [(&one, 1), (&four, 2)] {
        let kafka = platform.kafka_bootstrap().expect("printed Kafka address");
        produce(&kafka, EventKind::ChatTurn, &turns, copies).await;
        produce(&kafka, EventKind::Preference, &prefs, copies).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for platform in [&one, &four] {
        produce(&platform.kafka_bootstrap().unwrap(), EventKind::ChatTurn, &copy, 1).await;
    }

    let n = (turns.len() + prefs.len() + copy.len()) as u64;
    let paid_lines = "SELECT COALESCE(SUM(cardinality(lines)), 0) AS n FROM rewards";
    for platform in [&one, &four] {
        let api = platform.client();
        wait_for_scores(&api, n).await;
        eventually("every score in a closed epoch", Duration::from_secs(60), || async {
            (api.count(paid_lines).await.ok()? == n).then_some(())
        })
        .await;
    }
    let (a, b) = (payouts(&one.client()).await, payouts(&four.client()).await);
    assert_eq!(a, b, "the same payouts, ids and roots whatever the partitioning and re-delivery");
    let epochs: std::collections::BTreeSet<i64> = a.iter().map(|r| r["epoch"].as_i64().unwrap()).collect();
    assert!(epochs.len() >= 3, "{a:?}");
    let mallory = a.iter().find(|r| r["account"] == "mallory").expect("mallory's line is recorded");
    assert_eq!(mallory["amount"].as_i64(), Some(0), "a copy across accounts earns nothing: {mallory}");
    assert!(a.iter().any(|r| r["amount"].as_i64().unwrap() > 0));

    // Replaying the four-partition platform's Kafka log (re-deliveries included) matches.
    four.kill();
    let cli_env = vec![("GATA__REWARDS__POLICY", policy.clone()), ("GATA__KAFKA__PARTITIONS", "4".to_string())];
    let (code, out, err) = gata(&dir.path().join("four-partitions"), &cli_env, &["replay", "--from", "kafka"]);
    assert_eq!(code, 0, "{out}{err}");
    let records = 2 * (turns.len() + prefs.len()) + copy.len();
    assert!(out.contains(&format!("replayed {records} log records, {n} submissions")), "{out}");
    assert!(out.contains(&format!("{n} compared, 0 differ")) && !out.contains("DIFFERS"), "{out}");
}
