//! Consumer-group workers over the log: the lake sink, which turns the intake and scores topics
//! into the bronze and silver Delta tables exactly once and sends what it cannot decode to the
//! dead-letter topic, the scoring processor, which scores every chat turn and preference, the
//! DVA, and the rewards processor with `gata replay`'s projections.

pub mod dead_letters;
pub mod dva;
pub mod error;
mod metrics;
mod poller;
mod publisher;
pub mod rewards;
pub mod scoring;
pub mod sink;

pub use error::{ProcessorError, Result};
pub use rewards::{RewardsSettings, run_rewards};
pub use scoring::{ScoringConfig, run_scoring};
pub use sink::{SinkConfig, run_sink};
