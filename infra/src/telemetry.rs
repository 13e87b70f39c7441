//! Logs through `tracing`, metrics through one Prometheus registry per process.
//!
//! The registry is created by the binary and handed to each role, which registers its own
//! metrics on it; `/metrics` renders it. No global registry, so tests can run several
//! independent instances in one process.

use prometheus::{Encoder, Registry, TextEncoder};
use tracing_subscriber::EnvFilter;

/// Gata's own crates at `info`, every dependency (broker, Delta, DataFusion, librdkafka) at `warn`.
pub const DEFAULT_FILTER: &str = "warn,gata=info,gata_infra=info,gata_ingest=info,gata_lakehouse=info,gata_stream_processors=info,gata_query_api=info";

/// Installs the log subscriber, writing to stderr: `RUST_LOG` when set, otherwise
/// `default_filter`. Safe to call more than once (later calls are no-ops).
pub fn init_logging(default_filter: &str) {
    // Logs go to stderr: stdout carries what commands print for people and scripts (JSON, tables).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(default_filter))
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Installs the log subscriber appending to the file at `path` (created with its directory), for
/// commands whose terminal output is a report.
pub fn init_logging_to_file(default_filter: &str, path: &std::path::Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(default_filter))
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

fn filter(default_filter: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter))
}

/// Renders every metric of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out).expect("the text encoder writes to a Vec without failing");
    String::from_utf8(out).expect("the text format is UTF-8")
}

/// Registers `metric` on `registry` and returns it.
pub fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> crate::Result<M> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}
