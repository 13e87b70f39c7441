//! `gata rewards`: a contributor's payouts, the recorded epochs and their roots, inclusion
//! proofs, and proof checking without the lake; `gata replay`: rebuild and compare projections.

use std::{io::Read as _, path::PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use gata_infra::{config::GataConfig, kafka::KafkaClients};
use gata_lakehouse::{Lake, log::DEFAULT_SORT_MEMORY};
use gata_rewards::{Epoch, Proof};
use gata_stream_processors::rewards::replay::{self, ReplayOptions, ReplayReport};
use indicatif::{ProgressBar, ProgressStyle};

/// `gata rewards` options.
#[derive(Debug, Clone, Args)]
pub struct RewardsArgs {
    #[command(subcommand)]
    op: RewardsOp,
    #[command(flatten)]
    pub flags: crate::Flags,
}

#[derive(Debug, Clone, Subcommand)]
enum RewardsOp {
    /// A contributor's (or DVA worker's) payouts per epoch, with the submissions behind them.
    Show {
        /// The contributor id.
        #[arg(long)]
        contributor: String,
        /// Ask a running server (`http://127.0.0.1:8080`) instead of reading the lake.
        #[arg(long)]
        server: Option<String>,
        /// Bearer token for `--server`.
        #[arg(long, env = "GATA_TOKEN")]
        token: Option<String>,
    },
    /// Every recorded epoch: policy, payouts, total and Merkle root (what is anchored on chain).
    Epochs,
    /// Prints the inclusion proof (JSON) of a contributor's payout in an epoch.
    Proof {
        /// Epoch index, or a date or time inside it (`2026-11-25`).
        #[arg(long)]
        epoch: String,
        /// The contributor (or DVA worker) id.
        #[arg(long)]
        contributor: String,
    },
    /// Checks a proof (a file, or `-` for stdin) without the lake; exits 1 if it does not hold.
    Verify {
        /// The proof document.
        proof: PathBuf,
        /// The trusted epoch root (hex), e.g. as anchored on chain; default: the proof's own.
        #[arg(long)]
        root: Option<String>,
    },
}

/// Runs `gata rewards`.
pub async fn run(cfg: GataConfig, args: RewardsArgs) -> anyhow::Result<()> {
    match args.op {
        RewardsOp::Show { contributor, server: Some(server), token } => {
            let url = format!("{}/v1/contributors/{contributor}/rewards", server.trim_end_matches('/'));
            let mut req = reqwest::Client::new().get(&url);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let resp = req.send().await.with_context(|| format!("GET {url}"))?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.with_context(|| format!("reading {url}"))?;
            if !status.is_success() {
                bail!("{url}: {status}: {}", body["error"]["message"].as_str().unwrap_or("no reason given"));
            }
            println!("{}", serde_json::to_string_pretty(&body)?);
        }
        RewardsOp::Show { contributor, server: None, .. } => {
            // The same answer as the endpoint's, from the lake.
            let engine = crate::platform::lake_engine(&cfg).await?;
            let doc = gata_query_api::contributors::rewards(&engine, &contributor).await?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        RewardsOp::Epochs => {
            println!("{:>8}  {:<25}  {:<6}  {:>8}  {:>20}  root", "epoch", "start", "policy", "payouts", "total");
            for e in gata_ledger::recorded_rewards(&crate::resolve::lake(&cfg)?, None).await? {
                println!(
                    "{:>8}  {:<25}  {:<6}  {:>8}  {:>20}  {}",
                    e.epoch.index,
                    e.epoch.start.to_rfc3339(),
                    e.policy_version,
                    e.payouts.len(),
                    e.total,
                    hex::encode(e.root)
                );
            }
        }
        RewardsOp::Proof { epoch, contributor } => {
            let policy = crate::resolve::policy(&cfg.rewards.policy)?;
            let epoch = Epoch::parse(policy.epoch, &epoch).with_context(|| {
                format!("--epoch {epoch:?}: an epoch index, a date (2026-11-25) or an RFC 3339 time")
            })?;
            let recorded = gata_ledger::recorded_rewards(&crate::resolve::lake(&cfg)?, Some(epoch.index)).await?;
            let Some(rewards) = recorded.iter().find(|e| e.policy_version == policy.version).or(recorded.first())
            else {
                bail!("epoch {epoch} is not closed (no payouts recorded)");
            };
            let proof = Proof::of(rewards, &contributor)
                .with_context(|| format!("{contributor} has no payout in epoch {}", epoch.index))?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
        }
        RewardsOp::Verify { proof, root } => {
            let text = if proof.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).context("reading the proof from stdin")?;
                s
            } else {
                std::fs::read_to_string(&proof).with_context(|| format!("reading {}", proof.display()))?
            };
            let proof = Proof::from_json(&text)?;
            match proof.verify(root.as_deref())? {
                Ok(()) => println!(
                    "valid: {} is paid {} base units in epoch {}{} (root {})",
                    proof.account,
                    proof.amount,
                    proof.epoch.index,
                    proof.payee.map(|a| format!(" at {a}")).unwrap_or_default(),
                    proof.root
                ),
                Err(why) => {
                    eprintln!("INVALID: {why}");
                    std::process::exit(1);
                }
            }
        }
    }
    Ok(())
}

/// Which projection `gata replay` rebuilds and compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Projection {
    /// Quality scores.
    Scores,
    /// Payouts per epoch.
    Rewards,
    /// Per-contributor statistics.
    ContributorStats,
    /// All three.
    All,
}

/// Where `gata replay` reads the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// The bronze table (the lake's mirror of the intake topics).
    Bronze,
    /// The Kafka intake topics themselves, to their high watermarks: `--brokers`, or the
    /// embedded broker's log in the data directory (with `gata serve` stopped).
    Kafka,
}

/// `gata replay` options.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// What to rebuild and compare.
    #[arg(long, value_enum, default_value = "all")]
    projection: Projection,
    /// Where to read the log.
    #[arg(long, value_enum, default_value = "bronze")]
    from: Source,
    /// Pay under this policy (built-in name or file) instead of the configured one
    /// (`rewards.policy`, what the record was paid under): a what-if.
    #[arg(long)]
    policy: Option<String>,
    /// Re-score history with this text scorer version (this build's).
    #[arg(long)]
    scorer_version: Option<String>,
    /// Write the replayed projections as Delta tables under this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Memory in MiB that sorting the bronze log into receipt order may hold; past it, sorted
    /// runs spill to the system's temporary directory.
    #[arg(long, default_value_t = DEFAULT_SORT_MEMORY >> 20, value_parser = clap::value_parser!(u64).range(32..))]
    sort_memory_mb: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pub flags: crate::Flags,
}

/// Runs `gata replay`: exits 0 when the replay matches the record, 1 when it found differences.
pub async fn replay(cfg: GataConfig, args: ReplayArgs) -> anyhow::Result<()> {
    let lake = crate::resolve::lake(&cfg)?;
    let out = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let dir = dir.canonicalize()?;
            Some(Lake::new(&format!("file://{}", dir.display()), &Default::default())?)
        }
        None => None,
    };
    let recorded = crate::resolve::policy(&cfg.rewards.policy).context("rewards.policy")?;
    let pay = match args.policy.as_deref() {
        Some(name) => crate::resolve::policy(name)?,
        None => recorded.clone(),
    };
    let (records, log) = match args.from {
        Source::Bronze => {
            eprintln!("reading the log from the bronze table of {}", lake.root());
            lake.receipt_ordered_log(args.sort_memory_mb << 20).await?
        }
        Source::Kafka => replay::in_memory(kafka_log(&cfg).await?),
    };
    let progress = progress_bar(records, "re-scoring");
    let options = ReplayOptions {
        recorded,
        pay,
        scorer_version: args.scorer_version.clone(),
        out,
        turn_wait: cfg.scoring.turn_wait,
    };
    let report = replay::replay(&lake, log, &options, &progress).await?;
    progress.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, args.projection);
    }
    let differs = match args.projection {
        Projection::Scores => !report.scores.is_empty(),
        Projection::Rewards => report.epochs.iter().any(|e| e.recorded_root != e.replayed_root),
        Projection::ContributorStats => !report.stats.is_empty(),
        Projection::All => !report.matches(),
    };
    if differs {
        std::process::exit(1);
    }
    Ok(())
}

/// A progress bar on stderr.
fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let template = format!("{what} {{bar:40}} {{pos}}/{{len}} records  {{per_sec}}  eta {{eta}}");
    ProgressBar::new(len)
        .with_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()))
}

/// Reads the intake topics from `--brokers`, or from the embedded broker started over the data
/// directory's log.
async fn kafka_log(cfg: &GataConfig) -> anyhow::Result<Vec<replay::LogRecord>> {
    let (_embedded, bootstrap) = crate::platform::bootstrap(cfg).await.context(
        "starting the embedded broker over the data directory's log (is `gata serve` running? then give --brokers)",
    )?;
    eprintln!("reading the log from the intake topics at {bootstrap}");
    let progress = progress_bar(0, "reading");
    let log = replay::kafka_log(&KafkaClients::configured(bootstrap, &cfg.kafka), progress.clone()).await?;
    progress.finish_and_clear();
    Ok(log)
}

fn print_report(r: &ReplayReport, projection: Projection) {
    let show = |p: Projection| projection == Projection::All || projection == p;
    println!("replayed {} log records, {} submissions", r.records, r.submissions);
    if show(Projection::Scores) {
        println!("\nscores ({}): {} compared, {} differ", r.scorer_version, r.scores_compared, r.scores.len());
        for d in &r.scores {
            println!(
                "  event {} (contributor {}): recorded {:?} {:?} replayed {:?} {:?}",
                d.subject, d.contributor, d.recorded, d.reasons.0, d.replayed, d.reasons.1
            );
        }
    }
    if show(Projection::Rewards) {
        println!("\nrewards: recorded policy {}, replayed under {}", r.policy.0, r.policy.1);
        for e in &r.epochs {
            let verdict = if e.recorded_root == e.replayed_root { "same root" } else { "DIFFERS" };
            println!(
                "  epoch {} ({}): {verdict}; total {} -> {}; root {} -> {}",
                e.epoch,
                e.start.to_rfc3339(),
                e.recorded_total,
                e.replayed_total,
                e.recorded_root,
                e.replayed_root
            );
            for a in &e.accounts {
                println!("    epoch {} contributor {}: {} -> {}", e.epoch, a.account, a.recorded, a.replayed);
                for l in &a.lines {
                    println!("      event {}: {:?} -> {:?}", l.subject, l.recorded, l.replayed);
                }
            }
        }
    }
    if show(Projection::ContributorStats) {
        println!("\ncontributor stats: {} compared, {} differ", r.contributors, r.stats.len());
        for s in &r.stats {
            println!("  contributor {}: recorded {:?} replayed {:?}", s.contributor, s.recorded, s.replayed);
        }
    }
}
