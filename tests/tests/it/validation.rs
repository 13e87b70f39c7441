//! Validators from outside never touch Kafka: wallets lease pairs over HTTP and send back
//! signed votes. Gold pairs qualify them; an unqualified validator's votes never reach the
//! consensus, qualified ones decide the validators' own score; forged signatures, other
//! accounts' leases and second votes are refused.

use std::time::Duration;

use gata_contract::vote_digest;
use gata_tests::{Api, Gata, eventually};
use gata_wallet::Account;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    bin,
    identity::{DOMAIN, message, nonce, personal_sign, sign_in},
};

/// A signed-in wallet.
async fn validator(open: &Api, key: &str) -> (Account, Api) {
    let account = Account::from_private_key_hex(&key.repeat(32)).unwrap();
    let text = message(&account, DOMAIN, &nonce(open).await, None);
    let (status, session) = sign_in(open, &text, &personal_sign(&account, &text)).await;
    assert_eq!(status, 200, "{session}");
    let api = open.with_token(session["token"].as_str().unwrap());
    (account, api)
}

async fn lease(api: &Api, count: usize) -> Vec<Value> {
    let (status, body) =
        api.post("/v1/validation/leases", "application/json", json!({"count": count}).to_string()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    body["leases"].as_array().unwrap().clone()
}

/// Votes `score` on `lease`, signed by `signer`; answers the status and body.
async fn vote(api: &Api, signer: &Account, lease: &Value, score: &str) -> (u16, Value) {
    let lease_id: Uuid = lease["lease_id"].as_str().unwrap().parse().unwrap();
    let pair: Uuid = lease["pair"]["event_id"].as_str().unwrap().parse().unwrap();
    let signature = signer.sign_digest(&vote_digest(56, lease_id, pair, score)).unwrap();
    let body = json!({"lease_id": lease_id, "score": score, "signature": format!("0x{}", hex::encode(signature))});
    api.post("/v1/validation/votes", "application/json", body.to_string()).await.unwrap()
}

/// What an honest validator answers: the generated images show two coloured squares, which
/// only their truthful captions describe.
fn honest(lease: &Value) -> &'static str {
    if lease["pair"]["caption"].as_str().unwrap().ends_with("background") { "0.8" } else { "-0.8" }
}

async fn me(api: &Api) -> Value {
    api.get("/v1/validation/me").await.unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_qualified_validators_votes_reach_the_consensus() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("GATA__AUTH__WALLET__DOMAIN", DOMAIN),
        ("GATA__DVA__REPLICAS", "2"),
        ("GATA__VALIDATION__QUALIFY_AFTER", "2"),
        ("GATA__VALIDATION__MIN_ACCURACY", "1.0"),
        ("GATA__VALIDATION__GOLD_SHARE", "0.0"),
    ];
    let roles = ["--roles", "intake,sink,query,dva"];
    let port = gata_tests::free_port();
    let gata = Gata::start_with(bin(), dir.path(), port, &roles, &env).await.unwrap();
    let open = gata.client();
    let (_, _, images) = crate::workload(91, 0, 3);
    assert_eq!(open.post_ndjson("/v1/image-text-pairs", &images).await.unwrap().0, 202);
    eventually("the pairs in the lake", Duration::from_secs(60), || async {
        (open.count("SELECT COUNT(*) AS n FROM image_text_pairs").await.ok()? == 3).then_some(())
    })
    .await;

    let (alice, alice_api) = validator(&open, "a7").await;
    let (bob, bob_api) = validator(&open, "b8").await;
    let (mallory, mallory_api) = validator(&open, "d9").await;
    // A configured principal without a wallet does not validate.
    assert_eq!(open.post("/v1/validation/leases", "application/json", "{}").await.unwrap().0, 403);

    // Until they qualify, validators are leased gold pairs only. Mallory answers them wrong.
    for lease in lease(&mallory_api, 3).await {
        let wrong = if honest(&lease) == "0.8" { "-0.9" } else { "0.9" };
        assert_eq!(vote(&mallory_api, &mallory, &lease, wrong).await.0, 202);
    }
    let record = me(&mallory_api).await;
    assert_eq!((record["gold_answered"].as_u64(), record["qualified"].as_bool()), (Some(3), Some(false)), "{record}");
    for (api, who) in [(&alice_api, &alice), (&bob_api, &bob)] {
        for lease in lease(api, 2).await {
            assert_eq!(vote(api, who, &lease, honest(&lease)).await.0, 202);
        }
        assert_eq!(me(api).await["qualified"], true);
    }

    // Refused: a vote signed by another key, on another account's lease, twice on one lease,
    // out of range.
    let alices = lease(&alice_api, 3).await;
    assert_eq!(alices.len(), 3, "three real pairs to vote on: {alices:?}");
    let (status, body) = vote(&alice_api, &bob, &alices[0], "0.5").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("bad_signature")), "{body}");
    assert_eq!(vote(&bob_api, &bob, &alices[0], "0.5").await.0, 403);
    assert_eq!(vote(&alice_api, &alice, &alices[0], "1.5").await.0, 422);
    for lease in &alices {
        assert_eq!(vote(&alice_api, &alice, lease, "0.5").await.0, 202);
    }
    assert_eq!(vote(&alice_api, &alice, &alices[0], "0.5").await.0, 409, "one vote per lease");
    // One replica per account: none of those pairs is leased to alice again.
    let again = lease(&alice_api, 3).await;
    assert!(again.iter().all(|l| alices.iter().all(|a| a["pair"]["event_id"] != l["pair"]["event_id"])), "{again:?}");
    // Mallory, unqualified, still sees gold only; her votes never reach the log.
    for lease in lease(&mallory_api, 3).await {
        assert_eq!(vote(&mallory_api, &mallory, &lease, "-1.0").await.0, 202);
    }
    for lease in lease(&bob_api, 3).await {
        assert_eq!(vote(&bob_api, &bob, &lease, "0.7").await.0, 202);
    }

    // The two qualified validators decide every pair; mallory cast no vote that counts.
    let decided = eventually("the validators' consensus", Duration::from_secs(60), || async {
        let rows = open
            .rows(
                "SELECT verdict, score FROM quality_scores WHERE scorer_version = 'human@1' ORDER BY subject_event_id",
            )
            .await
            .ok()?;
        (rows.len() == 3).then_some(rows)
    })
    .await;
    let median = |r: &Value| r["score"].as_f64().unwrap_or(f64::NAN);
    assert!(decided.iter().all(|r| r["verdict"] == "accept" && (median(r) - 0.6).abs() < 1e-9), "{decided:?}");
    // Votes land in their own table, committed apart from the scores: wait for all six.
    let voters = eventually("the six votes in dva_votes", Duration::from_secs(60), || async {
        let sql = "SELECT validator, COUNT(*) AS n FROM dva_votes GROUP BY validator ORDER BY validator";
        let rows = open.rows(sql).await.ok()?;
        (rows.iter().filter_map(|r| r["n"].as_u64()).sum::<u64>() >= 6).then_some(rows)
    })
    .await;
    let mut expected = vec![
        json!({"validator": alice.address().to_string(), "n": 3}),
        json!({"validator": bob.address().to_string(), "n": 3}),
    ];
    expected.sort_by_key(|v| v["validator"].as_str().unwrap().to_string());
    assert_eq!(voters, expected);

    // Gold records outlive a restart (journaled in the data directory): signed in again, alice
    // is still qualified.
    drop(gata);
    let gata = Gata::start_with(bin(), dir.path(), port, &roles, &env).await.unwrap();
    let (_, alice_again) = validator(&gata.client(), "a7").await;
    let record = me(&alice_again).await;
    assert_eq!((record["qualified"].as_bool(), record["gold_answered"].as_u64()), (Some(true), Some(2)), "{record}");
}
