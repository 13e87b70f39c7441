//! Intake metrics.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Counters and timings of the intake routes.
#[derive(Debug, Clone)]
pub(crate) struct IngestMetrics {
    /// Events by kind and outcome (`accepted`, `invalid`, `unavailable`).
    pub events: IntCounterVec,
    /// Time from request to broker acknowledgement, by kind.
    pub ack_seconds: HistogramVec,
}

impl IngestMetrics {
    pub(crate) fn register(registry: &Registry) -> gata_infra::Result<Self> {
        let events = gata_infra::telemetry::register(
            registry,
            IntCounterVec::new(
                Opts::new("gata_ingest_events_total", "Events received, by kind and outcome"),
                &["kind", "outcome"],
            )?,
        )?;
        let ack_seconds = gata_infra::telemetry::register(
            registry,
            HistogramVec::new(
                HistogramOpts::new("gata_ingest_ack_seconds", "Request to broker acknowledgement, by kind")
                    .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]),
                &["kind"],
            )?,
        )?;
        Ok(Self { events, ack_seconds })
    }
}
