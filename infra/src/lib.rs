//! The shared kernel of the Gata data layer: the versioned event contract, configuration,
//! Kafka client setup (including the embedded broker), topic names, telemetry and the seeded
//! workload generator used by `gata demo`, the tests and the benchmarks.
//!
//! Everything above this crate (`ingest`, `lakehouse`, `stream-processors`, `query-api`) speaks
//! in these types; nothing here depends on them.

pub mod auth;
pub mod broker;
pub mod config;
pub mod contract;
pub mod error;
pub mod kafka;
pub mod rate;
pub mod record_mac;
pub mod scram;
pub mod telemetry;
pub mod topics;
pub mod workload;

pub use error::{InfraError, Result};
