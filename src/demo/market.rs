//! The marketplace part of the demo (open local mode, where the local admin acts for whoever a
//! request names): a listing of good chat data, two in three contributors granting it, a
//! purchase paid by a signed transfer on the loopback chain (or confirmed by hand when a real
//! chain is configured), its revenue split, and the listing read back in SQL.

use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use gata_contract::{Event, payment_reference};
use gata_infra::config::PaymentsConfig;
use gata_marketplace::payments::{emulator::ChainEmulator, rpc::ChainRpc};
use gata_wallet::{Account, Address, keccak256};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Api, report::print_table};

/// The listing the demo publishes and buys.
pub const DEMO_LISTING: &str = "demo_chat";
/// Who buys it.
pub const DEMO_BUYER: &str = "demo_buyer";

/// The demo's loopback chain, its buyer's wallet and the treasury it pays.
pub struct DemoChain {
    emulator: ChainEmulator,
    buyer: Account,
    treasury: Address,
}

/// A demo key: the keccak-256 of its name (not a secret: a loopback chain's play money).
fn demo_account(name: &str) -> anyhow::Result<Account> {
    Ok(Account::from_private_key_hex(&hex::encode(keccak256(name.as_bytes())))?)
}

impl DemoChain {
    /// Starts the loopback chain with the buyer funded, and points `payments` at it.
    pub async fn start(payments: &mut PaymentsConfig) -> anyhow::Result<DemoChain> {
        let buyer = demo_account("gata demo buyer")?;
        let treasury = demo_account("gata demo treasury")?.address();
        let emulator = ChainEmulator::start(payments.chain_id, &[(buyer.address(), 10u128.pow(21))])
            .await
            .context("starting the loopback chain")?;
        payments.chain_rpc = Some(emulator.url());
        payments.treasury = Some(treasury.to_string());
        payments.min_confirmations = 2;
        payments.poll_interval = Duration::from_millis(300);
        Ok(DemoChain { emulator, buyer, treasury })
    }

    /// Pays `price` wei for purchase `purchase_id` of `listing`; answers the transfer's hash.
    async fn pay(&self, chain_id: u64, purchase_id: Uuid, listing: &str, price: u64) -> anyhow::Result<String> {
        let rpc = ChainRpc::new(self.emulator.url());
        let data = payment_reference(purchase_id, listing);
        let hash = rpc.transfer(&self.buyer, self.treasury, u128::from(price), data, chain_id).await?;
        // One more block: the verifier waits for two confirmations.
        self.emulator.mine(1);
        Ok(hash)
    }
}

/// Publishes the demo listing, has two in three contributors grant it, buys and pays for it
/// (on `chain`, else by an operator's confirmation) and reads it.
pub async fn marketplace(api: &Api, events: &[Event], chain: Option<(&DemoChain, u64)>) -> anyhow::Result<()> {
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
    let purchase_id = Uuid::now_v7();
    let mut order = json!({"listing_id": DEMO_LISTING, "buyer": DEMO_BUYER, "purchase_id": purchase_id});
    let how = match chain {
        Some((chain, chain_id)) => {
            let tx = chain.pay(chain_id, purchase_id, DEMO_LISTING, price).await?;
            order["payment_ref"] = json!(tx);
            order["payer"] = json!(chain.buyer.address().to_string());
            format!("paid by transfer {tx} from {} on the loopback chain", chain.buyer.address())
        }
        None => {
            order["payment_ref"] = json!("demo-invoice-1");
            "confirmed by hand (a chain is configured, and the demo holds no funds on it)".to_string()
        }
    };
    let bought = call("/v1/marketplace/purchases", order).await?;
    if chain.is_none() {
        let path = format!("/v1/marketplace/purchases/{purchase_id}/confirm");
        let resp = api.post(&path).json(&json!({"note": "demo invoice"})).send().await?;
        if !resp.status().is_success() {
            bail!("{path} answered {}: {}", resp.status(), resp.text().await.unwrap_or_default());
        }
    }
    wait_until_paid(api, purchase_id).await?;
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
         {DEMO_BUYER} bought it for {price} base units ({how}), split over {} contributors (sum {paid}):",
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

/// Waits until the purchase's payment is confirmed.
async fn wait_until_paid(api: &Api, purchase_id: Uuid) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let all: Value = api.request(reqwest::Method::GET, "/v1/marketplace/purchases").send().await?.json().await?;
        let mine = all["purchases"].as_array().and_then(|p| p.iter().find(|p| p["purchase_id"] == json!(purchase_id)));
        if mine.is_some_and(|p| p["status"] == "paid") {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("purchase {purchase_id} still pending after 60 s: {mine:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
