//! `gata export`: accepted preference data for training (TRL DPO, Chatbot Arena, JSONL),
//! streamed from the lake to a file or stdout with a progress bar on stderr.
//!
//! A file is written under a temporary name and renamed when complete, so a failed or
//! interrupted export never leaves a truncated dataset behind.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use clap::Args;
use gata_infra::config::GataConfig;
use gata_query_api::export::{self, ExportFormat, ExportSpec};
use indicatif::{ProgressBar, ProgressStyle};

/// `gata export` options.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// `dpo` (TRL prompt/chosen/rejected), `arena` (Chatbot Arena battles) or `jsonl`.
    #[arg(long)]
    format: ExportFormat,
    /// Lowest score, of the preference and of its turn, to export (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    min_quality: f64,
    /// Scores of this scorer version decide (default: the version this binary scores with).
    #[arg(long)]
    scorer_version: Option<String>,
    /// Output file (default: stdout).
    #[arg(long, short)]
    out: Option<PathBuf>,
    #[command(flatten)]
    pub flags: crate::Flags,
}

pub async fn run(cfg: GataConfig, args: ExportArgs) -> anyhow::Result<()> {
    let spec = ExportSpec {
        format: args.format,
        min_quality: args.min_quality,
        scorer_version: args.scorer_version.unwrap_or_else(|| gata_scoring::SCORER_VERSION.to_string()),
    };
    let engine = crate::platform::lake_engine(&cfg).await?;
    let total = export::count(&engine, &spec).await?;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} preferences ({per_sec}, eta {eta})")
            .context("progress bar template")?,
    );
    let stats = match &args.out {
        None => {
            let mut out = BufWriter::new(std::io::stdout().lock());
            export::export(&engine, &spec, &mut out, |n| bar.set_position(n)).await?
        }
        Some(path) => {
            let partial = partial_path(path);
            let mut out =
                BufWriter::new(File::create(&partial).with_context(|| format!("creating {}", partial.display()))?);
            let written = export::export(&engine, &spec, &mut out, |n| bar.set_position(n)).await;
            let finished = written.map_err(anyhow::Error::from).and_then(|stats| {
                out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                std::fs::rename(&partial, path).with_context(|| format!("renaming to {}", path.display()))?;
                Ok(stats)
            });
            if finished.is_err() {
                let _ = std::fs::remove_file(&partial);
            }
            finished?
        }
    };
    bar.finish_and_clear();
    let to = args.out.as_deref().map_or("stdout".to_string(), |p| p.display().to_string());
    eprintln!(
        "exported {} records from {} accepted preferences (min quality {}, scorer {}) to {to}",
        stats.records, stats.preferences, spec.min_quality, spec.scorer_version
    );
    std::io::stderr().flush()?;
    Ok(())
}

/// `<file>.partial` next to `path`.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}
