//! Consumer-group workers over the log: the lake sink, which turns the intake and scores topics
//! into the bronze and silver Delta tables exactly once and sends what it cannot decode to the
//! dead-letter topic, the scoring processor, which scores every chat turn and preference, the
//! DVA, and the rewards processor with `gata replay`'s projections.

mod context;
pub mod dead_letters;
pub mod dva;
pub mod error;
mod metrics;
mod poller;
mod publisher;
pub mod rewards;
pub mod scoring;
pub mod sink;
mod skeleton;

pub use context::Context;
pub use error::{ProcessorError, Result};
pub use rewards::run_rewards;
pub use scoring::run_scoring;
pub use sink::run_sink;
