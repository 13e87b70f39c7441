//! Verified payments. A purchase stays pending until its payment is confirmed; the verifier
//! looks up each pending purchase's transfer on chain ([`rpc`]) and confirms it when:
//!
//! - it goes to the treasury, from the purchase's payer address;
//! - its data is the purchase's reference ([`payment_reference`]: the purchase id and the
//!   listing id), so one transfer pays for one purchase only, whatever else is sent;
//! - it carries at least the price (× `payments.wei_per_unit`), succeeded, and has
//!   `payments.min_confirmations` blocks.
//!
//! The confirmation is an event on the marketplace log (actor [`VERIFIER`]), so replays see
//! exactly what was confirmed and when. A transfer that can never fit (another recipient,
//! payer or reference, too little) is reported on the purchase and not looked up again; one not
//! found or not confirmed yet is looked up on every pass.

pub mod emulator;
pub mod rpc;

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
};

use gata_contract::{MarketAction, PaymentMethod, is_tx_hash, payment_reference};
use gata_infra::config::PaymentsConfig;
use gata_wallet::Address;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{Marketplace, Purchase, Result};
use rpc::ChainRpc;

/// The actor of the confirmations the verifier records.
pub const VERIFIER: &str = "payment_verifier";

/// Pending purchases looked up per pass, oldest first.
const MAX_PER_PASS: usize = 64;

/// What the chain says about a pending purchase's payment.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Paid: the confirmation to record.
    Paid(MarketAction),
    /// Not (yet) found or confirmed; look again later.
    Waiting(String),
    /// The transfer can never pay for this purchase.
    Refused(String),
}

/// Confirms purchases from the chain.
#[derive(Debug)]
pub struct Payments {
    rpc: ChainRpc,
    treasury: Address,
    min_confirmations: u64,
    wei_per_unit: u128,
    poll_interval: std::time::Duration,
    /// The latest verdict on each purchase still pending, for its buyer to read.
    problems: Mutex<BTreeMap<Uuid, Verdict>>,
}

impl Payments {
    /// A verifier for `cfg`, when it names a chain and a treasury.
    pub fn new(cfg: &PaymentsConfig) -> Option<Payments> {
        let treasury = cfg.treasury.as_deref()?.parse().ok()?;
        Some(Payments {
            rpc: ChainRpc::new(cfg.chain_rpc.clone()?),
            treasury,
            min_confirmations: cfg.min_confirmations,
            wei_per_unit: u128::from(cfg.wei_per_unit),
            poll_interval: cfg.poll_interval,
            problems: Mutex::new(BTreeMap::new()),
        })
    }

    /// Why purchase `id` is still pending, as of the last look.
    pub fn problem(&self, id: Uuid) -> Option<String> {
        match self.problems.lock().ok()?.get(&id)? {
            Verdict::Waiting(why) | Verdict::Refused(why) => Some(why.clone()),
            Verdict::Paid(_) => None,
        }
    }

    /// The chain's verdict on `p`'s payment.
    pub async fn verdict(&self, p: &Purchase) -> Result<Verdict> {
        let refuse = |why: String| Ok(Verdict::Refused(why));
        if !is_tx_hash(&p.payment_ref) {
            return refuse("payment_ref is no transaction hash: an operator confirms it by hand".into());
        }
        let Some(payer) = p.payer.as_deref().and_then(|a| a.parse::<Address>().ok()) else {
            return refuse("the purchase names no payer address: an operator confirms it by hand".into());
        };
        let Some(tx) = self.rpc.transaction(&p.payment_ref).await? else {
            return Ok(Verdict::Waiting(format!("transfer {} not found on chain yet", p.payment_ref)));
        };
        if tx.to != Some(self.treasury) {
            return refuse(format!("the transfer goes to {:?}, not to the treasury {}", tx.to, self.treasury));
        }
        if tx.from != payer {
            return refuse(format!("the transfer comes from {}, not from the payer {payer}", tx.from));
        }
        if tx.input != payment_reference(p.purchase_id, &p.listing_id) {
            return refuse(
                "the transfer's data is not this purchase's reference (purchase id, then listing id)".into(),
            );
        }
        let due = u128::from(p.price) * self.wei_per_unit;
        if tx.value < due {
            return refuse(format!("the transfer carries {} wei; the price is {due} wei", tx.value));
        }
        let Some(block) = tx.block else { return Ok(Verdict::Waiting("the transfer is not in a block yet".into())) };
        match self.rpc.succeeded(&p.payment_ref).await? {
            None => return Ok(Verdict::Waiting("no receipt yet".into())),
            Some(false) => return refuse("the transfer failed on chain".into()),
            Some(true) => {}
        }
        let confirmations = self.rpc.block_number().await?.saturating_sub(block) + 1;
        if confirmations < self.min_confirmations {
            return Ok(Verdict::Waiting(format!("{confirmations} of {} confirmations", self.min_confirmations)));
        }
        Ok(Verdict::Paid(MarketAction::ConfirmPayment {
            purchase_id: p.purchase_id,
            listing_id: p.listing_id.clone(),
            method: PaymentMethod::Chain,
            tx_hash: Some(p.payment_ref.to_ascii_lowercase()),
            amount_wei: Some(tx.value.to_string()),
            block: Some(block),
            note: None,
        }))
    }

    /// Looks up pending purchases every `payments.poll_interval` and records the confirmations,
    /// until `stop`.
    pub async fn run(self: Arc<Self>, market: Marketplace, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.pass(&market).await {
                tracing::warn!(error = %e, "payment verification pass failed; retrying");
            }
        }
    }

    async fn pass(&self, market: &Marketplace) -> Result<()> {
        let settled: HashSet<Uuid> = self
            .problems
            .lock()
            .map(|p| p.iter().filter(|(_, v)| matches!(v, Verdict::Refused(_))).map(|(id, _)| *id).collect())
            .unwrap_or_default();
        let mut pending: Vec<Purchase> = market
            .read(|m| m.purchases().filter(|p| !p.is_paid() && !settled.contains(&p.purchase_id)).cloned().collect())
            .await?;
        pending.sort_by_key(|p| p.received_at);
        for purchase in pending.into_iter().take(MAX_PER_PASS) {
            let verdict = self.verdict(&purchase).await?;
            if let Verdict::Paid(action) = &verdict {
                match market.submit(Marketplace::event(VERIFIER, action.clone())).await {
                    Ok(_) | Err(crate::MarketError::Refused(crate::Refusal::AlreadyConfirmed(_))) => {
                        tracing::info!(purchase = %purchase.purchase_id, tx = %purchase.payment_ref, "payment confirmed");
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Ok(mut problems) = self.problems.lock() {
                match verdict {
                    Verdict::Paid(_) => problems.remove(&purchase.purchase_id),
                    other => problems.insert(purchase.purchase_id, other),
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use gata_wallet::Account;

    use super::*;

    fn account(byte: &str) -> Account {
        Account::from_private_key_hex(&byte.repeat(32)).expect("key")
    }

    fn purchase(id: u128, payer: &Account, payment_ref: &str, price: u64) -> Purchase {
        Purchase {
            purchase_id: Uuid::from_u128(id),
            listing_id: "chats".into(),
            version: 1,
            buyer: "bob".into(),
            price,
            payment_ref: payment_ref.into(),
            payer: Some(payer.address().to_string()),
            shares: Vec::new(),
            received_at: Utc::now(),
            payment: None,
        }
    }

    #[tokio::test]
    async fn only_a_confirmed_transfer_of_the_price_naming_the_purchase_pays() {
        let (bob, eve, treasury) = (account("b1"), account("e1"), account("71").address());
        let chain = emulator::ChainEmulator::start(56, &[(bob.address(), 10u128.pow(18))]).await.expect("chain");
        let cfg = PaymentsConfig {
            chain_rpc: Some(chain.url()),
            treasury: Some(treasury.to_string()),
            min_confirmations: 2,
            ..PaymentsConfig::default()
        };
        let payments = Payments::new(&cfg).expect("configured");
        let rpc = ChainRpc::new(chain.url());
        let send = |to: Address, value: u128, id: u128| {
            let (rpc, bob) = (&rpc, &bob);
            async move {
                let data = payment_reference(Uuid::from_u128(id), "chats");
                rpc.transfer(bob, to, value, data, 56).await.expect("sent")
            }
        };
        let waiting = |v: Verdict, what: &str| assert!(matches!(&v, Verdict::Waiting(w) if w.contains(what)), "{v:?}");
        let refused = |v: Verdict, what: &str| assert!(matches!(&v, Verdict::Refused(w) if w.contains(what)), "{v:?}");

        let unknown = format!("0x{}", "ab".repeat(32));
        waiting(payments.verdict(&purchase(1, &bob, &unknown, 100)).await.expect("rpc"), "not found");
        refused(payments.verdict(&purchase(1, &bob, "invoice-9", 100)).await.expect("rpc"), "by hand");

        let paid = send(treasury, 100, 1).await;
        waiting(payments.verdict(&purchase(1, &bob, &paid, 100)).await.expect("rpc"), "1 of 2 confirmations");
        chain.mine(1);
        let verdict = payments.verdict(&purchase(1, &bob, &paid, 100)).await.expect("rpc");
        assert!(
            matches!(&verdict, Verdict::Paid(MarketAction::ConfirmPayment { amount_wei: Some(a), .. }) if a == "100"),
            "{verdict:?}"
        );
        // The same transfer for another purchase, from another payer, below the price.
        refused(payments.verdict(&purchase(2, &bob, &paid, 100)).await.expect("rpc"), "reference");
        refused(payments.verdict(&purchase(1, &eve, &paid, 100)).await.expect("rpc"), "not from the payer");
        refused(payments.verdict(&purchase(1, &bob, &paid, 101)).await.expect("rpc"), "the price is 101");
        let elsewhere = send(eve.address(), 100, 3).await;
        refused(payments.verdict(&purchase(3, &bob, &elsewhere, 100)).await.expect("rpc"), "not to the treasury");
        // The chain itself refuses what the payer cannot afford.
        let err = rpc.transfer(&bob, treasury, 10u128.pow(19), Vec::new(), 56).await.expect_err("insufficient funds");
        assert!(err.to_string().contains("insufficient funds"), "{err}");
    }
}
