//! The marketplace part of the demo (open local mode, where the local admin acts for whoever a
//! request names): a listing of good chat data, two in three contributors granting it, a
//! purchase and its revenue split, and the listing read back in SQL.

use anyhow::bail;
use futures::StreamExt as _;
use gata_infra::contract::Event;
use serde_json::{Value, json};

use super::{Api, report::print_table};

/// The listing the demo publishes and buys.
pub const DEMO_LISTING: &str = "demo_chat";
/// Who buys it.
pub const DEMO_BUYER: &str = "demo_buyer";

/// Publishes the demo listing, has two in three contributors grant it, buys it and reads it.
pub async fn marketplace(api: &Api, events: &[Event]) -> anyhow::Result<()> {
    let call = |path: &'static str, body: Value| async move {
        let resp = api.post(path).json(&body).send().await?;
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{path} answered {status}: {answer}");
        }
        anyhow::Ok(answer)
    };
    let listings: Value = api.request(reqwest::Method::GET, "/v1/marketplace/listings").send().await?.json().await?;
    let version = listings["listings"]
        .as_array()
        .and_then(|all| all.iter().find(|l| l["listing"]["listing_id"] == DEMO_LISTING))
        .and_then(|l| l["listing"]["version"].as_u64())
        .unwrap_or(0)
        + 1;
    let price = 10_000_000_000u64;
    call(
        "/v1/marketplace/listings",
        json!({"listing_id": DEMO_LISTING, "version": version, "title": "Accepted multi-model chats",
            "kinds": ["chat_turn", "preference"], "min_score": 0.5, "price": price,
            "terms": "research and evaluation use; no redistribution"}),
    )
    .await?;
    let mut people: Vec<&str> = events.iter().map(Event::contributor_id).collect();
    people.sort_unstable();
    people.dedup();
    let granting: Vec<&str> = people.iter().enumerate().filter(|(i, _)| i % 3 != 2).map(|(_, p)| *p).collect();
    let grants = futures::stream::iter(
        granting
            .iter()
            .map(|who| call("/v1/marketplace/grants", json!({"contributor_id": who, "listing_id": DEMO_LISTING}))),
    )
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    grants.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let bought = call(
        "/v1/marketplace/purchases",
        json!({"listing_id": DEMO_LISTING, "buyer": DEMO_BUYER, "payment_ref": "demo-invoice-1"}),
    )
    .await?;
    let mut shares: Vec<(&str, u64, u64)> = bought["shares"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|s| Some((s["contributor_id"].as_str()?, s["accepted"].as_u64()?, s["amount"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    shares.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
    let paid: u64 = shares.iter().map(|s| s.2).sum();
    println!(
        "\n== Marketplace\nListing {DEMO_LISTING} v{version} published; {} of {} contributors granted it; \
         {DEMO_BUYER} bought it for {price} base units, split over {} contributors (sum {paid}):",
        granting.len(),
        people.len(),
        shares.len()
    );
    for (who, rows, amount) in shares.iter().take(3) {
        println!("  {who}: {rows} accepted rows -> {amount}");
    }
    let sql = format!(
        "SELECT COUNT(*) AS turns, COUNT(DISTINCT contributor_id) AS contributors FROM {DEMO_LISTING}.chat_turns"
    );
    println!("\n{sql}\n");
    print_table(&api.sql(&sql).await?);
    Ok(())
}
