//! The command line: subcommands, and the flags that override the configuration.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};
use gata_infra::config;
use serde::Serialize;

use crate::{demo, dlq_cmd, dva_cmd, dva_worker, export_cmd, lake_cmd, mirror_cmd, rewards_cmd, sql_cmd};

/// The Gata data layer: intake → Kafka → Delta Lake → SQL.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file (TOML). Environment: GATA__SECTION__KEY overrides it.
    #[arg(long, global = true, env = "GATA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
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
    /// The DVA's filter trained from reviewers' labels: `gata dva train`.
    Dva(dva_cmd::DvaArgs),
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
pub struct Flags {
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
    /// This scoring process's share, `I/N`: shard I (from 0) of N scoring processes (default
    /// 0/1). Each reads the whole log and judges the partitions whose number modulo N is I.
    #[arg(long, global = true, value_parser = parse_shard)]
    #[serde(skip)]
    scoring_shard: Option<(u32, u32)>,
}

/// `I/N` with I < N.
fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{text:?} is not I/N with 0 <= I < N, e.g. 0/3");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n) = (i.trim().parse::<u32>().map_err(|_| bad())?, n.trim().parse::<u32>().map_err(|_| bad())?);
    if i < n { Ok((i, n)) } else { Err(bad()) }
}

impl Flags {
    /// The flags as a partial configuration: only those given.
    pub fn overrides(&self) -> serde_json::Value {
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
        if let Some((shard, shards)) = self.scoring_shard {
            v["scoring"] = serde_json::json!({ "shard": shard, "shards": shards });
        }
        v
    }
}

/// The configuration: defaults < the file (`--config`) < `GATA__…` variables < `flags`.
pub fn load(file: Option<&std::path::Path>, flags: &Flags) -> anyhow::Result<config::GataConfig> {
    Ok(config::load(file, &flags.overrides())?)
}
