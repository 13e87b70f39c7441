//! `gata`: the one binary of the Gata data layer.
//!
//! `gata serve` runs every role in one process (embedded broker unless `--brokers` is given);
//! `gata demo` does the same and loads a generated workload through the public API;
//! `gata rewards` shows payouts and proves them; `gata replay` rebuilds projections from the log
//! and compares them with the record; `gata dva-worker` scores image-text pairs as a volunteer's
//! DVA; `gata sql` queries the lake or a server, one-shot or interactively; `gata token` makes a
//! bearer token; `gata export` writes accepted preference data for training; `gata schema`
//! prints or writes the event JSON Schemas. The subcommands are in [`cli`].

mod background;
mod cli;
mod demo;
mod dlq_cmd;
mod dva_cmd;
mod dva_worker;
mod export_cmd;
mod http;
mod labelling;
mod lake_cmd;
mod listener;
mod mirror_cmd;
mod platform;
mod resolve;
mod rewards_cmd;
mod signin;
mod sql_cmd;
mod validation;

use anyhow::Context as _;
use clap::Parser as _;
use tokio_util::sync::CancellationToken;

pub use crate::cli::Flags;
use crate::cli::{Cli, Cmd};

/// mimalloc instead of the system allocator: a backlog drain with every role running spent a
/// quarter of its CPU in glibc's malloc and free (many threads allocating small, short-lived
/// buffers: decoded records, Arrow batches, Kafka messages). Built without transparent huge
/// pages (feature `no_thp`; the process opts out of THP): with them the kernel zeroed 2 MiB pages
/// on every fresh touch, an eighth of the lake sink's CPU, and its peak RSS doubled. See
/// docs/scaling.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let Cli { config, cmd } = cli;
    let load = |flags: &Flags| cli::load(config.as_deref(), flags);
    match cmd {
        Cmd::Serve(flags) => platform::serve(load(&flags)?, shutdown_signal(), |ready| ready.print()).await,
        Cmd::Broker(flags) => platform::broker(load(&flags)?, shutdown_signal()).await,
        Cmd::Demo(args) => demo::run(load(&args.flags)?, args, shutdown_signal()).await,
        Cmd::Sql(args) => sql_cmd::run(load(&args.flags)?, args).await,
        Cmd::Token => {
            print_token();
            Ok(())
        }
        Cmd::DvaWorker(args) => dva_worker::run(load(args.flags())?, args, shutdown_signal()).await,
        Cmd::Dva(args) => dva_cmd::run(load(&args.flags)?, args).await,
        Cmd::Export(args) => export_cmd::run(load(&args.flags)?, args).await,
        Cmd::Dlq(args) => dlq_cmd::run(load(&args.flags)?, args).await,
        Cmd::Lake(args) => lake_cmd::run(load(&args.flags)?, args).await,
        Cmd::Rewards(args) => rewards_cmd::run(load(&args.flags)?, args).await,
        Cmd::Replay(args) => rewards_cmd::replay(load(&args.flags)?, args).await,
        Cmd::Mirror(args) => mirror_cmd::mirror(load(&args.flags)?, args, shutdown_signal()).await,
        Cmd::Greenfield(args) => mirror_cmd::greenfield(load(&args.flags)?, args, shutdown_signal()).await,
        Cmd::Schema { write } => write_schemas(write.as_deref()),
    }
}

/// Prints a new bearer token and the hash `auth.principals` stores.
fn print_token() {
    let token = gata_infra::auth::new_token();
    let hash = gata_infra::auth::token_hash(&token);
    println!("token         {token}\ntoken_sha256  {hash}");
    println!("\nGive the token to its holder; put only the hash in the configuration:");
    println!(
        "  [[auth.principals]]\n  name = \"...\"\n  role = \"analyst\"\n  token_sha256 = \"{hash}\"\n  datasets = [\"chat\"]"
    );
}

fn write_schemas(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
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
