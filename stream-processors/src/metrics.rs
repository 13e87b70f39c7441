//! Metrics of the lake sink and the scoring processor.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// What the lake sink exposes at `/metrics`.
#[derive(Debug, Clone)]
pub(crate) struct SinkMetrics {
    /// Records consumed from the log.
    pub consumed: IntCounter,
    /// Rows committed, by table.
    pub rows: IntCounterVec,
    /// Commits, by table.
    pub commits: IntCounterVec,
    /// Silver rows skipped because their event_id was already in the table.
    pub duplicates: IntCounter,
    /// Records sent to the dead-letter topic.
    pub dead_letters: IntCounter,
    /// Failed flushes (each is retried).
    pub flush_failures: IntCounter,
    /// Time to commit one flush to every table.
    pub flush_seconds: Histogram,
    /// Records buffered and not yet committed.
    pub buffered: IntGauge,
    /// Records in the log not yet in the lake, by topic and partition.
    pub lag: IntGaugeVec,
}

impl SinkMetrics {
    pub(crate) fn register(registry: &Registry) -> gata_infra::Result<Self> {
        use gata_infra::telemetry::register;
        Ok(Self {
            consumed: register(
                registry,
                IntCounter::new("gata_sink_consumed_total", "Records consumed from the intake topics")?,
            )?,
            rows: register(
                registry,
                IntCounterVec::new(Opts::new("gata_sink_rows_total", "Rows committed, by table"), &["table"])?,
            )?,
            commits: register(
                registry,
                IntCounterVec::new(Opts::new("gata_sink_commits_total", "Delta commits, by table"), &["table"])?,
            )?,
            duplicates: register(
                registry,
                IntCounter::new(
                    "gata_sink_duplicates_total",
                    "Events skipped in silver because their event_id was already there",
                )?,
            )?,
            dead_letters: register(
                registry,
                IntCounter::new("gata_sink_dead_letters_total", "Records sent to the dead-letter topic")?,
            )?,
            flush_failures: register(
                registry,
                IntCounter::new("gata_sink_flush_failures_total", "Flushes that failed and were retried")?,
            )?,
            flush_seconds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new("gata_sink_flush_seconds", "Time to commit one flush to every table")
                        .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                )?,
            )?,
            buffered: register(
                registry,
                IntGauge::new("gata_sink_buffered_records", "Records consumed and not yet committed")?,
            )?,
            lag: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "gata_sink_lag_records",
                        "Records in the log not yet committed to the lake, by partition",
                    ),
                    &["topic", "partition"],
                )?,
            )?,
        })
    }
}

/// What the scoring processor exposes at `/metrics`.
#[derive(Debug, Clone)]
pub(crate) struct ScoringMetrics {
    /// Score events published, by submission kind and verdict.
    pub scored: IntCounterVec,
    /// Submissions re-read to rebuild state (their score is in the lake already).
    pub rebuilt: IntCounter,
    /// Submissions another shard judges, folded into this shard's state only.
    pub remembered: IntCounter,
    /// Records not scored, by reason (`undecodable`, `already_scored`, `not_scored_here`).
    pub skipped: IntCounterVec,
    /// Preferences waiting for their turn.
    pub parked: IntGauge,
    /// Records held back: new ones while history is replayed, and every one for the
    /// reordering window.
    pub held: IntGauge,
    /// Time to score one submission.
    pub seconds: Histogram,
    /// Records in the log not yet scored, by topic and partition.
    pub lag: IntGaugeVec,
}

impl ScoringMetrics {
    pub(crate) fn register(registry: &Registry) -> gata_infra::Result<Self> {
        use gata_infra::telemetry::register;
        Ok(Self {
            scored: register(
                registry,
                IntCounterVec::new(
                    Opts::new("gata_scoring_scored_total", "Score events published, by submission kind and verdict"),
                    &["kind", "verdict"],
                )?,
            )?,
            rebuilt: register(
                registry,
                IntCounter::new(
                    "gata_scoring_rebuilt_total",
                    "Submissions re-read to rebuild the scorer's state (already scored in the lake)",
                )?,
            )?,
            remembered: register(
                registry,
                IntCounter::new(
                    "gata_scoring_remembered_total",
                    "Submissions another shard judges, folded into this shard's state only",
                )?,
            )?,
            skipped: register(
                registry,
                IntCounterVec::new(
                    Opts::new("gata_scoring_skipped_total", "Records not scored, by reason"),
                    &["reason"],
                )?,
            )?,
            parked: register(
                registry,
                IntGauge::new("gata_scoring_parked_preferences", "Preferences waiting for the turn they judge")?,
            )?,
            held: register(
                registry,
                IntGauge::new(
                    "gata_scoring_held_records",
                    "Records held back (new ones while history is replayed; each for the reordering window)",
                )?,
            )?,
            seconds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new("gata_scoring_seconds", "Time to score one submission")
                        .buckets(vec![1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1]),
                )?,
            )?,
            lag: register(
                registry,
                IntGaugeVec::new(
                    Opts::new("gata_scoring_lag_records", "Records in the intake log not yet scored, by partition"),
                    &["topic", "partition"],
                )?,
            )?,
        })
    }
}
