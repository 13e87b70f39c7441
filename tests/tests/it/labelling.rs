//! Dual AI-human validation, the human half, on a running platform with principals: a reviewer
//! labels pairs by keyboard on `/review/label` in headless Chromium (a accept, r reject, s
//! skip), each label lands once in `review_labels` (an identical label sent again too), the
//! queue leaves out what the reviewer labelled, a second reviewer's labels give the agreement
//! its kappa, and callers who are not reviewers are refused.

use std::time::Duration;

use base64::Engine as _;
use gata_tests::{Api, Gata, eventually, principals_env};
use serde_json::{Value, json};

use crate::{bin, browser::Browser, dva::model_dir, scoring::uuid};

const ADMIN: &str = "labelling-admin-token-0123456789";
const RITA: &str = "labelling-rita-token-0123456789ab";
const RON: &str = "labelling-ron-token-0123456789abc";
const CARL: &str = "labelling-carl-token-0123456789ab";

/// Five held-out scenes, each with its caption and a mismatched one, from two contributors.
fn pairs() -> Vec<Value> {
    let dir = model_dir();
    let heldout: Vec<Value> = serde_json::from_slice(&std::fs::read(dir.join("heldout.json")).unwrap()).unwrap();
    let jpegs = heldout.iter().filter(|r| r["image"].as_str().unwrap().ends_with(".jpg")).take(5);
    let mut out = Vec::new();
    for (i, row) in jpegs.enumerate() {
        let bytes = std::fs::read(dir.join("heldout").join(row["image"].as_str().unwrap())).unwrap();
        let image = base64::engine::general_purpose::STANDARD.encode(bytes);
        for (n, caption) in [(i, &row["caption"]), (100 + i, &row["mismatched"])] {
            out.push(json!({
                "event_id": uuid(7000 + n as u32),
                "contributor_id": if i % 2 == 0 { "ann" } else { "bea" },
                "occurred_at": "2026-11-24T10:00:00Z",
                "caption": caption,
                "image": {"content_type": "image/jpeg", "base64": image},
            }));
        }
    }
    out
}

async fn queue(api: &Api, limit: usize) -> Vec<Value> {
    let (status, body) = api.get(&format!("/v1/review/queue?limit={limit}")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

async fn label(api: &Api, pair: &str, decision: &str) -> (u16, Value) {
    post_json(api, &json!({"pair_id": pair, "decision": decision, "queue": "audit"})).await
}

async fn post_json(api: &Api, body: &Value) -> (u16, Value) {
    api.post("/v1/review/labels", "application/json", body.to_string()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn reviewers_label_by_keyboard_and_labels_land_once() {
    let dir = tempfile::tempdir().unwrap();
    let principals = principals_env(&[
        ("root", "admin", ADMIN, ""),
        ("rita", "reviewer", RITA, ""),
        ("ron", "reviewer", RON, ""),
        ("carl", "contributor", CARL, r#",contributor_id="carl""#),
    ]);
    let env = [("GATA__AUTH__PRINCIPALS", principals.as_str()), ("GATA__DVA__BATCH_SIZE", "8")];
    let gata = Gata::start_free(bin(), dir.path(), &env).await.unwrap();
    let (admin, rita, ron, carl) = (
        gata.client().with_token(ADMIN),
        gata.client().with_token(RITA),
        gata.client().with_token(RON),
        gata.client().with_token(CARL),
    );
    let pairs = pairs();
    let (status, body) = admin.post_ndjson("/v1/image-text-pairs", &pairs).await.unwrap();
    assert_eq!(status, 202, "{body}");
    eventually("a DVA score per pair", Duration::from_secs(120), || async {
        let n = admin.count("SELECT COUNT(*) AS n FROM quality_scores WHERE subject_kind = 'image_text_pair'").await;
        (n.ok()? >= pairs.len() as u64).then_some(())
    })
    .await;

    // The queue: distinct pairs with their scores, from the three queues.
    let items = queue(&rita, 6).await;
    assert_eq!(items.len(), 6, "{items:?}");
    let mut ids: Vec<&str> = items.iter().map(|i| i["pair_id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "each pair once: {items:?}");
    assert!(items.iter().all(|i| i["scores"].as_array().is_some_and(|s| !s.is_empty())), "{items:?}");
    let queues: Vec<&str> = items.iter().map(|i| i["queue"].as_str().unwrap()).collect();
    assert!(queues.contains(&"near_threshold") && queues.contains(&"audit"), "{queues:?}");

    // Rita labels on the page, by keyboard: accept, reject, skip, accept.
    let profile = tempfile::tempdir().unwrap();
    let mut page = Browser::open(profile.path(), &format!("{}/review/label#token={RITA}", gata.base));
    let mut shown = Vec::new();
    for (key, labelled, skipped) in [('a', 1, 0), ('r', 2, 0), ('s', 2, 1), ('a', 3, 1)] {
        page.wait_for("document.getElementById('pair').dataset.ready === 'true'", Duration::from_secs(30));
        shown.push(page.eval("document.getElementById('caption').textContent"));
        page.press(key);
        page.wait_for(
            &format!("document.getElementById('done').dataset.labelled === '{labelled}' && document.getElementById('done').dataset.skipped === '{skipped}'"),
            Duration::from_secs(30),
        );
    }
    page.wait_for("document.getElementById('image').src.startsWith('blob:')", Duration::from_secs(30));
    drop(page);

    let landed = eventually("rita's three labels in the lake", Duration::from_secs(60), || async {
        let rows = admin
            .rows("SELECT l.event_id, l.subject_event_id, l.reviewer, l.decision, l.queue, p.caption, p.contributor_id = l.contributor_id AS same FROM review_labels l JOIN image_text_pairs p ON p.event_id = l.subject_event_id ORDER BY l.labelled_at")
            .await
            .ok()?;
        (rows.len() >= 3).then_some(rows)
    })
    .await;
    assert_eq!(landed.len(), 3, "{landed:?}");
    let decisions: Vec<&str> = landed.iter().map(|r| r["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["accept", "reject", "accept"]);
    let captions: Vec<Value> = landed.iter().map(|r| r["caption"].clone()).collect();
    assert_eq!(captions, [shown[0].clone(), shown[1].clone(), shown[3].clone()], "the pairs shown were labelled");
    assert!(landed.iter().all(|r| r["reviewer"] == "rita" && r["same"] == true), "{landed:?}");

    // Labelled pairs leave rita's queue, not ron's.
    let labelled: Vec<String> = landed.iter().map(|r| r["subject_event_id"].as_str().unwrap().to_string()).collect();
    let again = queue(&rita, 50).await;
    assert!(again.iter().all(|i| !labelled.contains(&i["pair_id"].as_str().unwrap().to_string())), "{again:?}");
    assert_eq!(again.len(), pairs.len() - 3);
    assert_eq!(queue(&ron, 50).await.len(), pairs.len());

    // The same label again has the same id and lands once; ron agrees on one pair and not on
    // the other, so two pairs are labelled twice.
    let (status, first) = label(&rita, &labelled[0], "accept").await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["label_id"], landed[0]["event_id"], "an identical label has the same id");
    assert_eq!(label(&ron, &labelled[0], "accept").await.0, 202);
    assert_eq!(label(&ron, &labelled[1], "accept").await.0, 202);
    eventually("ron's labels", Duration::from_secs(60), || async {
        let n = admin.count("SELECT COUNT(*) AS n FROM review_labels WHERE reviewer = 'ron'").await.ok()?;
        (n == 2).then_some(())
    })
    .await;
    assert_eq!(admin.count("SELECT COUNT(*) AS n FROM review_labels WHERE reviewer = 'rita'").await.unwrap(), 3);
    let (status, agreement) = rita.get("/v1/review/agreement").await.unwrap();
    assert_eq!(status, 200, "{agreement}");
    // Two pairs labelled twice, one agreeing: observed 1/2; accepts 3 of 4 labels, expected
    // 0.75² + 0.25² = 0.625; kappa (0.5 − 0.625) / 0.375 = −1/3.
    assert_eq!(agreement["labelled_pairs"], 3);
    assert_eq!(agreement["pairs_labelled_twice"], 2);
    assert_eq!(agreement["reviewers"], 2);
    assert!((agreement["kappa"].as_f64().unwrap() + 1.0 / 3.0).abs() < 1e-9, "{agreement}");

    // Refusals: not a reviewer, no such pair, no such decision, a reason past its bound.
    assert_eq!(carl.get("/v1/review/queue").await.unwrap().0, 403);
    assert_eq!(label(&carl, &labelled[0], "accept").await.0, 403);
    assert_eq!(label(&rita, &uuid(1), "accept").await.0, 404);
    assert_eq!(label(&rita, &labelled[0], "maybe").await.0, 422);
    let long = json!({"pair_id": labelled[0], "decision": "reject", "reason": "x".repeat(501)});
    assert!([413, 422].contains(&post_json(&rita, &long).await.0));
    assert_eq!(rita.get("/v1/review/queue?limit=0").await.unwrap().0, 422);
    assert_eq!(rita.get("/v1/review/queue?limit=x").await.unwrap().0, 400);
}
