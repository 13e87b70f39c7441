//! Consumer-group workers over the log. Today: the lake sink, which turns the intake topics
//! into the bronze and silver Delta tables exactly once, and sends what it cannot decode to
//! the dead-letter topic.

pub mod dead_letters;
pub mod error;
mod metrics;
pub mod sink;

pub use error::{Result, SinkError};
pub use sink::{SinkConfig, run_sink};
