//! `gata dva-worker`: a volunteer's DVA. It joins a running cluster's Kafka, scores the
//! image-text pairs of its replica slot with its own copy of the model and publishes each
//! score as its vote; the cluster's consensus combines the votes of `dva.replicas` workers.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use axum::{Router, routing::get};
use clap::Args;
use gata_contract::Limits;
use gata_infra::{config::GataConfig, kafka::KafkaClients};
use gata_stream_processors::dva::{Output, run_dva};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::{Flags, http, resolve};

/// `gata dva-worker` arguments.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// This worker's id: its votes carry it, and the consensus flags it when they deviate.
    #[arg(long, env = "GATA_DVA_WORKER_ID")]
    worker_id: String,
    /// Replica slot, 0 to dva.replicas − 1: each slot's workers share its pairs (default: from
    /// the worker id).
    #[arg(long)]
    slot: Option<u32>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    #[command(flatten)]
    flags: Flags,
}

impl WorkerArgs {
    /// The configuration flags.
    pub fn flags(&self) -> &Flags {
        &self.flags
    }
}

/// The slot a worker id falls in when none is given: FNV-1a of the id, modulo the replicas.
fn default_slot(worker_id: &str, replicas: u32) -> u32 {
    let hash =
        worker_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (hash % u64::from(replicas)) as u32
}

/// Runs the worker until `stop` is cancelled.
pub async fn run(cfg: GataConfig, args: WorkerArgs, stop: CancellationToken) -> anyhow::Result<()> {
    Limits::default()
        .check_id("--worker-id", &args.worker_id)
        .map_err(|v| anyhow::anyhow!("{}: {}", v.field, v.reason))?;
    let Some(brokers) = cfg.kafka.brokers.clone() else {
        bail!("a DVA worker joins a running cluster: give its Kafka address with --brokers (or GATA__KAFKA__BROKERS)");
    };
    let replicas = cfg.dva.replicas;
    if replicas < 2 {
        bail!("dva.replicas is {replicas}: the cluster scores pairs itself; set it to the cluster's value (2 or more)");
    }
    let slot = args.slot.unwrap_or_else(|| default_slot(&args.worker_id, replicas));
    if slot >= replicas {
        bail!("--slot {slot} is out of range: dva.replicas is {replicas}, so slots are 0 to {}", replicas - 1);
    }
    let kafka = KafkaClients::for_config(&brokers, &cfg.kafka).await?;
    let clip = resolve::dva_model(&cfg.dva).await?;
    let output = Output::Votes { validator: args.worker_id.clone() };
    let registry = Registry::new();
    let ctx = resolve::context(&cfg, cfg.dva.replica_group(slot), &kafka, &registry, &stop, None);
    if let Some(addr) = args.metrics {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let connections = crate::listener::ConnectionMetrics::register(&registry)?;
        let (page_registry, stop, http) = (registry.clone(), stop.clone(), cfg.http.clone());
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let page = http::metrics_page(&page_registry);
                async move { page }
            }),
        );
        tokio::spawn(async move { crate::listener::serve(listener, app, &http, connections, stop).await });
    }
    println!("gata dva-worker {} is voting in slot {slot} of {replicas} (Kafka {brokers})", args.worker_id);
    let models = gata_stream_processors::dva::Models { clip, head: None };
    run_dva(ctx, cfg.dva.clone(), output, models, None).await.context("DVA worker")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_slots_are_stable_and_in_range() {
        for id in ["alice-gpu", "bob", "carol@laptop"] {
            let slot = default_slot(id, 3);
            assert!(slot < 3);
            assert_eq!(slot, default_slot(id, 3));
        }
    }
}
