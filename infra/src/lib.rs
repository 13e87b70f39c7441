//! The shared kernel of the Gata data layer's services: configuration, authentication, Kafka
//! client setup (including the embedded broker), record MACs, rate limits, telemetry and the
//! seeded workload generator used by `gata demo`, the tests and the benchmarks. The event
//! contract it speaks is `gata-contract`'s.

pub mod auth;
pub mod broker;
pub mod config;
pub mod error;
pub mod foreground;
pub mod host;
pub mod kafka;
pub mod rate;
pub mod record_mac;
pub mod runtime;
pub mod scram;
pub mod telemetry;
pub mod workload;

pub use error::{InfraError, Result};
