//! The rewards processor: closes epochs and records their payouts.
//!
//! An epoch is closed once its end plus a grace period (for submissions still on their way to
//! the lake) has passed and every submission received in it has a score — or, when some never
//! get one (no DVA worker running), once `max_wait` after its end has passed. So a backlog
//! after downtime is scored before its epochs are paid, not paid without it. Closing folds every score in the `quality_scores`
//! table of a submission received in the epoch into payouts ([`gata_rewards::fold_epoch`],
//! a pure function of that set), and records them in `gold/rewards` in one Delta commit that
//! carries the transaction marker `rewards:<policy>` = epoch index. Epochs with nothing to pay (no
//! submission, no sale) are skipped, not recorded. Epochs are closed in order,
//! so after a crash the processor resumes at the epoch after the last marker; an epoch is never
//! recorded twice, and a recomputation (a retry, `gata replay`) yields the same payout ids and
//! the same root.
//!
//! Marketplace sales are paid through the same ledger: the shares of every paid purchase the
//! marketplace projection accepts ([`MarketLedger`], from the lake's copy of the marketplace
//! log) are added to the payouts of the epoch its payment was confirmed in. The same log names
//! each payout's payee: an account that is an address, or the address linked (by a message that
//! address signed) to a contributor id before the epoch ended.

pub mod replay;

use std::time::Duration;

use chrono::{DateTime, Utc};
use gata_contract::{Limits, MarketEvent};
use gata_infra::config::RewardsConfig;
use gata_infra::telemetry::register;
use gata_lakehouse::{Lake, TableId};
use gata_market::Market;
use gata_rewards::{Epoch, EpochRewards, Policy, Sale, fold_epoch};
use gata_wallet::Address;
use prometheus::{IntCounter, IntGauge, Registry};
use tokio_util::sync::CancellationToken;

use crate::Result;

struct Metrics {
    epochs: IntCounter,
    payouts: IntCounter,
    paid: IntCounter,
    last: IntGauge,
    unscored: IntCounter,
}

impl Metrics {
    fn register(registry: &Registry) -> gata_infra::Result<Metrics> {
        Ok(Metrics {
            epochs: register(registry, IntCounter::new("gata_rewards_epochs_closed_total", "Epochs closed")?)?,
            payouts: register(registry, IntCounter::new("gata_rewards_payouts_total", "Payouts recorded")?)?,
            paid: register(
                registry,
                IntCounter::new("gata_rewards_paid_base_units_total", "Token base units recorded as paid")?,
            )?,
            last: register(
                registry,
                IntGauge::new("gata_rewards_last_closed_epoch", "Index of the last closed epoch")?,
            )?,
            unscored: register(
                registry,
                IntCounter::new(
                    "gata_rewards_unscored_total",
                    "Submissions left unpaid because their epoch closed before they had a score",
                )?,
            )?,
        })
    }
}

/// Runs the rewards processor, closing epochs under `policy` as `cfg` (`[rewards]`) says, until
/// `stop` is cancelled. A failed pass (the lake unreachable) is logged and tried again at the
/// next interval.
pub async fn run_rewards(
    cfg: RewardsConfig,
    policy: Policy,
    lake: Lake,
    registry: Registry,
    stop: CancellationToken,
) -> Result<()> {
    let metrics = Metrics::register(&registry)?;
    tracing::info!(policy = %policy.version, epoch = ?policy.epoch, grace = ?cfg.grace, "rewards processor started");
    let mut tick = tokio::time::interval(cfg.interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => match close_due(&lake, &cfg, &policy, Utc::now()).await {
                Ok(closed) => for (r, unscored) in closed {
                    metrics.unscored.inc_by(unscored);
                    metrics.epochs.inc();
                    metrics.payouts.inc_by(r.payouts.len() as u64);
                    metrics.paid.inc_by(r.total);
                    metrics.last.set(r.epoch.index);
                },
                Err(e) => tracing::warn!(error = %e, "closing epochs failed; trying again"),
            },
        }
    }
}

/// Closes, in order, every epoch of `policy` that is due at `now` (see the module docs) and not
/// recorded yet; returns what it recorded, each with the number of submissions left unscored.
pub async fn close_due(
    lake: &Lake,
    cfg: &RewardsConfig,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Vec<(EpochRewards, u64)>> {
    let mut table = lake.open(TableId::Rewards).await?;
    let next = match gata_ledger::last_recorded_epoch(lake, &table, &policy.version).await? {
        Some(last) => last + 1,
        None => match lake.first_scored_receipt().await? {
            Some(first) => Epoch::of(policy.epoch, first).index,
            None => return Ok(Vec::new()),
        },
    };
    let after = |epoch: &Epoch, wait: Duration| {
        chrono::Duration::from_std(wait).ok().and_then(|w| epoch.end.checked_add_signed(w)).is_some_and(|t| t <= now)
    };
    let mut closed = Vec::new();
    let mut epoch = Epoch::at(policy.epoch, next);
    let ledger = if after(&epoch, cfg.grace) { MarketLedger::read(lake).await? } else { MarketLedger::default() };
    let sales = &ledger.sales;
    while after(&epoch, cfg.grace) {
        let unscored = lake.unscored(epoch.start, epoch.end).await?;
        if unscored > 0 {
            if !after(&epoch, cfg.max_wait) {
                tracing::debug!(epoch = %epoch, unscored, "epoch waits for its scores");
                break;
            }
            tracing::warn!(epoch = %epoch, unscored, max_wait = ?cfg.max_wait,
                "closing an epoch with unscored submissions; they are not paid (see gata replay)");
        }
        let contributions = gata_ledger::contributions(lake, Some((epoch.start, epoch.end))).await?;
        let sold = |t: &DateTime<Utc>| *t >= epoch.start && *t < epoch.end;
        if unscored == 0 && contributions.is_empty() && !sales.iter().any(|s| sold(&s.received_at)) {
            // Nothing to pay: go straight to the epoch of the next receipt, so a gap of idle
            // epochs (short ones, or a long pause) costs one query instead of a commit each.
            let next_sale = sales.iter().map(|s| s.received_at).filter(|t| *t >= epoch.end).min();
            match lake.first_receipt(epoch.end).await?.into_iter().chain(next_sale).min() {
                Some(t) => {
                    epoch = Epoch::of(policy.epoch, t);
                    continue;
                }
                None => break,
            }
        }
        let rewards = fold_epoch(policy, epoch, contributions, sales.iter().cloned(), ledger.payees(epoch.end))?;
        table = gata_ledger::record_epoch(lake, table, &rewards).await?;
        tracing::info!(epoch = %rewards.epoch, payouts = rewards.payouts.len(), total = rewards.total,
            root = %hex::encode(rewards.root), "epoch closed");
        closed.push((rewards, unscored));
        epoch = Epoch::at(policy.epoch, epoch.index + 1);
    }
    Ok(closed)
}

/// What the marketplace log decides about payouts, folded from the lake's copy of it
/// (`market_events`) in log order.
#[derive(Default)]
pub struct MarketLedger {
    /// Every revenue share of the paid purchases the projection accepts, each dated by its
    /// payment's confirmation (the epoch it is paid in).
    pub sales: Vec<Sale>,
    market: Market,
}

impl MarketLedger {
    /// Folds the lake's marketplace log. A purchase is checked only against its own listing's
    /// events (one partition), and a link only against its contributor's, so the result does
    /// not depend on how partitions interleave.
    pub async fn read(lake: &Lake) -> Result<MarketLedger> {
        let limits = Limits::default().for_replay();
        let mut market = Market::default();
        for record in lake.market_log().await? {
            let (Ok(event), Some(at)) = (
                MarketEvent::parse(record.payload.as_bytes(), &limits),
                DateTime::from_timestamp_micros(record.received_us),
            ) else {
                continue;
            };
            // A refused event leaves the state as it was, on every replay alike.
            let _ = market.apply(&event, at);
        }
        // Only paid purchases pay shares, in the epoch their payment was confirmed.
        let sales = market
            .purchases()
            .filter_map(|p| Some((p, p.payment.as_ref()?.confirmed_at)))
            .flat_map(|(p, paid_at)| {
                p.shares.iter().map(move |s| Sale {
                    purchase: p.purchase_id,
                    listing: p.listing_id.clone(),
                    account: s.contributor_id.clone(),
                    accepted: s.accepted,
                    amount: s.amount,
                    received_at: paid_at,
                })
            })
            .collect();
        Ok(MarketLedger { sales, market })
    }

    /// Each account's payee for an epoch ending at `end`: links received before then count.
    pub fn payees(&self, end: DateTime<Utc>) -> impl Fn(&str) -> Option<Address> + '_ {
        move |account| self.market.payee(account, end)
    }
}
