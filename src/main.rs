//! `gata`: the one binary of the Gata data layer.
//!
//! `gata serve` runs every role in one process (embedded broker unless `--brokers` is given);
//! `gata demo` does the same and loads a generated workload through the public API;
//! `gata rewards` shows payouts and proves them; `gata replay` rebuilds projections from the log
//! and compares them with the record; `gata dva-worker` scores image-text pairs as a volunteer's DVA; `gata sql` queries the lake or a server, one-shot or interactively; `gata token` makes a bearer token; `gata export` writes accepted preference data for
//! training; `gata schema` prints or writes the event JSON Schemas.

mod demo;
mod dlq_cmd;
mod dva_worker;
mod export_cmd;
mod http;
mod lake_cmd;
mod listener;
mod mirror_cmd;
mod platform;
mod rewards_cmd;
mod signin;
mod sql_cmd;
mod validation;

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use gata_infra::config;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// mimalloc instead of the system allocator: a backlog drain with every role running spent a
/// quarter of its CPU in glibc's malloc and free (many threads allocating small, short-lived
/// buffers: decoded records, Arrow batches, Kafka messages). Built without transparent huge
/// pages (feature `no_thp`; the process opts out of THP): with them the kernel zeroed 2 MiB pages
/// on every fresh touch, an eighth of the lake sink's CPU, and its peak RSS doubled. See
/// docs/scaling.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Gata data layer: intake → Kafka → Delta Lake → SQL.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Environment: GATA__SECTION__KEY overrides it.
    #[arg(long, global = true, env = "GATA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run every role in one process: broker (embedded unless --brokers), intake, lake sink, SQL
    /// (`--roles` picks a subset, so sinks and intake scale as separate processes).
    Serve(Flags),
    /// Run only the embedded Kafka-protocol broker, for separate intake/sink/SQL processes.
    Broker(Flags),
    /// Serve, load a realistic generated workload through the API, print what landed.
    Demo(demo::DemoArgs),
    /// SQL against the lake or a running server: one query, or interactive from stdin.
    Sql(sql_cmd::SqlArgs),
    /// Make a new random bearer token and print it with the hash `auth.principals` stores.
    Token,
    /// Score image-text pairs as one of a cluster's independent DVA workers (votes for the consensus).
    DvaWorker(dva_worker::WorkerArgs),
    /// Accepted preference data for training: TRL DPO, Chatbot Arena battles or JSONL.
    Export(export_cmd::ExportArgs),
    /// Dead letters: list them, or replay those that are valid now.
    Dlq(dlq_cmd::DlqArgs),
    /// Table maintenance on demand: checkpoint, optimize (compact), vacuum.
    Lake(lake_cmd::LakeArgs),
    /// Payouts per epoch, epoch roots, inclusion proofs and their verification.
    Rewards(rewards_cmd::RewardsArgs),
    /// Rebuild scores, rewards and contributor stats from the log and compare with the record.
    Replay(rewards_cmd::ReplayArgs),
    /// Copies every committed lake table version to an object store or a Greenfield bucket.
    Mirror(mirror_cmd::MirrorArgs),
    /// Greenfield: verify a mirror by re-hashing it; run a loopback storage-provider emulator.
    Greenfield(mirror_cmd::GreenfieldArgs),
    /// Print the JSON Schema of every contract (submissions, quality scores), or write them to a directory.
    Schema {
        /// Directory to write `<contract>.v1.schema.json` files into.
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

/// Flags that override the configuration file and environment.
#[derive(Debug, Clone, Default, Args, Serialize)]
struct Flags {
    /// Where the embedded broker's log and the default lake live.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// HTTP address for intake and SQL (default 127.0.0.1:8080).
    #[arg(long = "http", global = true)]
    #[serde(skip)]
    http_addr: Option<SocketAddr>,
    /// External Kafka cluster (host:port[,host:port]); without it the embedded broker runs.
    #[arg(long, global = true)]
    #[serde(skip)]
    brokers: Option<String>,
    /// Lake root URL (default: <data-dir>/lake).
    #[arg(long, global = true)]
    #[serde(skip)]
    lake: Option<String>,
    /// Roles to run, comma-separated: intake,sink,query,maintenance,scoring,dva,rewards (the
    /// default) and mirror (needs `mirror.target`).
    #[arg(long, global = true, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<config::Role>>,
    /// Listener of the embedded broker (default 127.0.0.1:0, a free port).
    #[arg(long, global = true)]
    #[serde(skip)]
    kafka_listen: Option<SocketAddr>,
}

impl Flags {
    /// The flags as a partial configuration: only those given.
    fn overrides(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("flags serialize");
        if let Some(addr) = self.http_addr {
            v["http"] = serde_json::json!({ "addr": addr });
        }
        if let Some(brokers) = &self.brokers {
            v["kafka"]["brokers"] = serde_json::json!(brokers);
        }
        if let Some(listen) = self.kafka_listen {
            v["kafka"]["embedded_listen"] = serde_json::json!(listen);
        }
        if let Some(lake) = &self.lake {
            v["lake"] = serde_json::json!({ "uri": lake });
        }
        v
    }
}

fn load(cli_config: Option<&PathBuf>, flags: &Flags) -> anyhow::Result<config::GataConfig> {
    Ok(config::load(cli_config.map(PathBuf::as_path), &flags.overrides())?)
}

/// Cancels the returned token on Ctrl-C or SIGTERM.
fn shutdown_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        tracing::info!("shutting down");
        token.cancel();
    });
    stop
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo's terminal output is its report: it writes its logs to a file unless --verbose.
    if !matches!(&cli.cmd, Cmd::Demo(args) if !args.verbose) {
        gata_infra::telemetry::init_logging(gata_infra::telemetry::DEFAULT_FILTER);
    }
    match cli.cmd {
        Cmd::Serve(flags) => {
            let cfg = load(cli.config.as_ref(), &flags)?;
            platform::serve(cfg, shutdown_signal(), |ready| ready.print()).await
        }
        Cmd::Broker(flags) => {
            let cfg = load(cli.config.as_ref(), &flags)?;
            platform::broker(cfg, shutdown_signal()).await
        }
        Cmd::Demo(args) => {
            let cfg = load(cli.config.as_ref(), &args.flags)?;
            demo::run(cfg, args, shutdown_signal()).await
        }
        Cmd::Sql(args) => {
            let cfg = load(cli.config.as_ref(), &args.flags)?;
            sql_cmd::run(cfg, args).await
        }
        Cmd::Token => {
            let token = gata_infra::auth::new_token();
            println!("token         {token}");
            println!("token_sha256  {}", gata_infra::auth::token_hash(&token));
            println!("\nGive the token to its holder; put only the hash in the configuration:");
            println!(
                "  [[auth.principals]]\n  name = \"...\"\n  role = \"analyst\"\n  token_sha256 = \"{}\"\n  datasets = [\"chat\"]",
                gata_infra::auth::token_hash(&token)
            );
            Ok(())
        }
        Cmd::DvaWorker(args) => {
            let cfg = load(cli.config.as_ref(), args.flags())?;
            dva_worker::run(cfg, args, shutdown_signal()).await
        }
        Cmd::Export(args) => {
            let cfg = load(cli.config.as_ref(), &args.flags)?;
            export_cmd::run(cfg, args).await
        }
        Cmd::Dlq(args) => {
            let cfg = load(cli.config.as_ref(), &args.flags)?;
            dlq_cmd::run(cfg, args).await
        }
        Cmd::Lake(args) => {
            let cfg = load(cli.config.as_ref(), &args.flags)?;
            lake_cmd::run(cfg, args).await
        }
        Cmd::Rewards(args) => {
            let cfg = load(cli.config.as_ref(), &args.flags)?;
            rewards_cmd::run(cfg, args).await
        }
        Cmd::Replay(args) => {
            let cfg = load(cli.config.as_ref(), &args.flags)?;
            rewards_cmd::replay(cfg, args).await
        }
        Cmd::Mirror(args) => {
            let cfg = load(cli.config.as_ref(), &args.flags)?;
            mirror_cmd::mirror(cfg, args, shutdown_signal()).await
        }
        Cmd::Greenfield(args) => {
            let cfg = load(cli.config.as_ref(), &args.flags)?;
            mirror_cmd::greenfield(cfg, args, shutdown_signal()).await
        }
        Cmd::Schema { write } => write_schemas(write),
    }
}

fn write_schemas(dir: Option<PathBuf>) -> anyhow::Result<()> {
    for (name, schema) in gata_contract::schemas() {
        let text = serde_json::to_string_pretty(&schema)? + "\n";
        match &dir {
            Some(dir) => {
                let path = dir.join(format!("{name}.schema.json"));
                std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            None => println!("{text}"),
        }
    }
    Ok(())
}
