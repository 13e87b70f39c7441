//! What every processor runs with.

use gata_contract::Limits;
use std::sync::Arc;

use gata_infra::{foreground::Foreground, kafka::KafkaClients};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

/// What the process that starts a processor hands it, beside its own configuration section:
/// its consumer group, the Kafka clients, the event limits, the metrics registry, the stop
/// signal and the process's intake.
#[derive(Clone)]
pub struct Context {
    /// Consumer group, as the caller resolved it (the embedded broker gives each process
    /// incarnation a group of its own).
    pub group: String,
    /// Clients of the cluster, with its security settings.
    pub kafka: KafkaClients,
    /// Event limits, the same as intake's.
    pub limits: Limits,
    /// Where the processor registers its metrics.
    pub registry: Registry,
    /// Cancelled to stop: the processor finishes what it holds, commits and returns.
    pub stop: CancellationToken,
    /// Intake of the same process, which the processor steps aside for under a burst on a
    /// saturated machine; `None` in a process without intake.
    pub foreground: Option<Arc<Foreground>>,
}
