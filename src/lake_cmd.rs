//! `gata lake`: table maintenance on demand (the same operations `gata serve` runs in the
//! background), safe to run next to a live sink.

use std::{num::NonZeroU64, time::Duration};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use gata_infra::config::GataConfig;
use gata_lakehouse::TableId;

/// `gata lake` options.
#[derive(Debug, Clone, Args)]
pub struct LakeArgs {
    #[command(subcommand)]
    op: Op,
    /// Only this table (`events`, `chat_turns`, `preferences`, `image_text_pairs`,
    /// `quality_scores`, `dead_letters`); default all.
    #[arg(long, global = true)]
    table: Option<String>,
    #[command(flatten)]
    pub flags: crate::Flags,
}

#[derive(Debug, Clone, Subcommand)]
enum Op {
    /// Write a log checkpoint at the current version.
    Checkpoint,
    /// Compact small files into files of about `--target-bytes` (default from config), and
    /// cluster by `--zorder` columns (default: `maintenance.zorder` of the table).
    Optimize {
        #[arg(long)]
        target_bytes: Option<u64>,
        #[arg(long, value_delimiter = ',')]
        zorder: Option<Vec<String>>,
    },
    /// Delete files no version younger than `--retention` references (at least 1h).
    Vacuum {
        #[arg(long, value_parser = humantime::parse_duration)]
        retention: Option<Duration>,
    },
}

pub async fn run(cfg: GataConfig, args: LakeArgs) -> anyhow::Result<()> {
    let lake = crate::resolve::lake(&cfg)?;
    let tables: Vec<TableId> = match &args.table {
        Some(name) => vec![TableId::ALL.into_iter().find(|t| t.name() == name).with_context(|| {
            let names: Vec<&str> = TableId::ALL.iter().map(|t| t.name()).collect();
            format!("no table {name:?}; tables: {}", names.join(", "))
        })?],
        None => TableId::ALL.to_vec(),
    };
    for id in tables {
        let report = match &args.op {
            Op::Checkpoint => {
                let table = lake.open(id).await?;
                lake.checkpoint(&table, id).await?;
                serde_json::json!({ "table": id.name(), "checkpoint_version": table.version() })
            }
            Op::Optimize { target_bytes, zorder } => {
                let target = NonZeroU64::new(target_bytes.unwrap_or(cfg.maintenance.target_file_bytes))
                    .context("--target-bytes must be positive")?;
                let columns =
                    zorder.clone().or_else(|| cfg.maintenance.zorder.get(id.name()).cloned()).unwrap_or_default();
                serde_json::to_value(lake.optimize(id, target, &columns).await?)?
            }
            Op::Vacuum { retention } => {
                serde_json::to_value(lake.vacuum(id, retention.unwrap_or(cfg.maintenance.vacuum_retention)).await?)?
            }
        };
        println!("{report}");
    }
    Ok(())
}
