//! The operator's part of the demo: the reward epochs that closed over the load, their payouts,
//! one contributor's Merkle proof checked as `gata rewards verify` checks it, and a replay of
//! the whole log against the record.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use gata_infra::config::GataConfig;
use gata_lakehouse::{Lake, log::DEFAULT_SORT_MEMORY};
use gata_rewards::{Epoch, EpochRewards, Policy, Proof};
use gata_stream_processors::rewards::replay::{self, ReplayOptions};
use indicatif::ProgressBar;

use super::report::{print_rows, spinner};

/// The built-in policy the demo pays under: v1 with 20-second epochs.
pub const DEMO_POLICY: &str = "demo";

/// Makes `cfg`'s rewards processor pay under [`DEMO_POLICY`] and close each epoch a few seconds
/// after it ends, so the demo shows closed epochs while it runs.
pub fn short_epochs(cfg: &mut GataConfig) {
    cfg.rewards.policy = DEMO_POLICY.into();
    cfg.rewards.grace = Duration::from_secs(5);
    cfg.rewards.interval = Duration::from_secs(1);
    cfg.rewards.max_wait = Duration::from_secs(120);
}

/// Waits for the epochs from `since` to the one of `paid_from` (the start of the last paid
/// action) to close, then prints them, the payouts of the busiest, a proof (saved under the
/// data directory) and its check, and a replay's verdict. An epoch with nothing to pay is never
/// recorded, so the wait is for an epoch that has something: waiting for the epoch of "now"
/// failed whenever an epoch boundary fell between the last receipt and the audit's start.
pub async fn audit(
    cfg: &GataConfig,
    lake: &Lake,
    since: DateTime<Utc>,
    paid_from: DateTime<Utc>,
) -> anyhow::Result<()> {
    let policy = crate::resolve::policy(&cfg.rewards.policy).context("rewards.policy")?;
    let last = Epoch::of(policy.epoch, paid_from);
    let epochs = closed_epochs(cfg, lake, &policy, since, last).await?;
    println!(
        "\n== Rewards (policy {}: {}-second epochs; every amount in base units, 10^{} per GATA)",
        policy.version,
        policy.epoch.as_secs(),
        policy.decimals
    );
    let rows: Vec<Vec<String>> = epochs
        .iter()
        .map(|e| {
            vec![
                e.epoch.index.to_string(),
                e.epoch.start.format("%H:%M:%S").to_string(),
                e.payouts.len().to_string(),
                e.total.to_string(),
                hex::encode(e.root)[..16].to_string() + "…",
            ]
        })
        .collect();
    print_rows(&["epoch", "start (UTC)", "payouts", "total", "Merkle root"], &rows);
    let Some(busiest) = epochs.iter().max_by_key(|e| (e.payouts.len(), e.epoch.index)) else {
        bail!("no reward epoch closed over the load");
    };
    let mut payouts: Vec<_> = busiest.payouts.iter().collect();
    payouts.sort_by(|a, b| b.amount.cmp(&a.amount).then(a.account.cmp(&b.account)));
    println!("\nTop payouts of epoch {} (of {}):", busiest.epoch.index, payouts.len());
    let rows: Vec<Vec<String>> = payouts
        .iter()
        .take(5)
        .map(|p| {
            let sales: u64 = p.sales.iter().map(|s| s.amount).sum();
            vec![
                p.account.clone(),
                p.lines.len().to_string(),
                (p.cap_cut + p.penalty).to_string(),
                sales.to_string(),
                p.amount.to_string(),
            ]
        })
        .collect();
    print_rows(&["account", "lines", "cut (cap, penalty)", "sales", "paid"], &rows);
    let flagged = busiest.payouts.iter().filter(|p| p.flagged).count();
    println!("{flagged} accounts flagged as bots or Sybil clusters forfeit their contribution rewards in this epoch.");
    let top = payouts.first().context("the busiest epoch has payouts")?;
    prove(cfg, busiest, &top.account)?;
    replay_all(lake, &policy, cfg.scoring.turn_wait).await
}

/// Waits until epoch `last` (or a later one) is recorded, and returns the recorded epochs of
/// `policy` that end after `since`.
async fn closed_epochs(
    cfg: &GataConfig,
    lake: &Lake,
    policy: &Policy,
    since: DateTime<Utc>,
    last: Epoch,
) -> anyhow::Result<Vec<EpochRewards>> {
    let due = (last.end - Utc::now()).to_std().unwrap_or_default() + cfg.rewards.grace;
    let bar = spinner(format!(
        "waiting for reward epoch {} to end ({}) and close ({:?} grace) ",
        last.index,
        last.end.format("%H:%M:%S UTC"),
        cfg.rewards.grace
    ));
    let patience = due + cfg.rewards.max_wait + Duration::from_secs(30);
    let deadline = Instant::now() + patience;
    loop {
        let recorded: Vec<EpochRewards> = gata_ledger::recorded_rewards(lake, None)
            .await?
            .into_iter()
            .filter(|e| e.policy_version == policy.version && e.epoch.end > since)
            .collect();
        if recorded.iter().any(|e| e.epoch.index >= last.index) {
            bar.finish_and_clear();
            return Ok(recorded);
        }
        if Instant::now() > deadline {
            bar.finish_and_clear();
            bail!("reward epoch {} did not close within {patience:?} (see the log)", last.index);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Prints `account`'s proof in `epoch`, saves it under the data directory and checks it against
/// the recorded root, as `gata rewards verify --root` does.
fn prove(cfg: &GataConfig, epoch: &EpochRewards, account: &str) -> anyhow::Result<()> {
    let proof = Proof::of(epoch, account).context("the account has a payout in the epoch")?;
    let json = serde_json::to_string_pretty(&proof)?;
    let path = cfg.data_dir.join(format!("proof-{}-{account}.json", epoch.epoch.index));
    std::fs::write(&path, &json).with_context(|| format!("writing {}", path.display()))?;
    println!("\nMerkle proof of {account}'s payout in epoch {} ({}):", epoch.epoch.index, shown(&path));
    println!("{json}");
    let root = hex::encode(epoch.root);
    match proof.verify(Some(&root))? {
        Ok(()) => println!(
            "verify: valid: {} is paid {} base units in epoch {} (root {root})",
            proof.account, proof.amount, proof.epoch.index
        ),
        Err(why) => bail!("the proof does not verify: {why}"),
    }
    Ok(())
}

/// Rebuilds every projection from the bronze log under the recorded policy and compares.
async fn replay_all(lake: &Lake, policy: &Policy, turn_wait: Duration) -> anyhow::Result<()> {
    let bar = spinner("replaying the log from the bronze table".into());
    let (_, log) = lake.receipt_ordered_log(DEFAULT_SORT_MEMORY).await?;
    let options =
        ReplayOptions { recorded: policy.clone(), pay: policy.clone(), scorer_version: None, out: None, turn_wait };
    let report = replay::replay(lake, log, &options, &ProgressBar::hidden()).await?;
    bar.finish_and_clear();
    let same = report.epochs.iter().filter(|e| e.recorded_root == e.replayed_root).count();
    println!(
        "\n== Replay (gata replay): {} log records, {} submissions re-scored and re-paid\n\
         scores: {} compared, {} differ; epochs: {} compared, {} same root; contributor stats: {} compared, {} differ",
        report.records,
        report.submissions,
        report.scores_compared,
        report.scores.len(),
        report.epochs.len(),
        same,
        report.contributors,
        report.stats.len()
    );
    if !report.matches() {
        bail!("the replay differs from the record; run `gata replay` for the details");
    }
    println!("The record is exactly what the log and the policy produce: no difference.");
    Ok(())
}

/// `path` as a person can paste it: absolute when it can be made so.
pub fn shown(path: &Path) -> String {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}
