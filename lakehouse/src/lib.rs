//! The lake: Delta tables on a local directory or any object store, what they hold, and how
//! rows get into them with exactly-once bookkeeping.
//!
//! - [`tables`]: the table catalogue (bronze `events`, one silver table per event kind), each
//!   with its Arrow schema and partitioning.
//! - [`rows`]: turning decoded Kafka records into Arrow record batches for a table.
//! - [`lake`]: opening/creating the tables and appending batches together with the Kafka
//!   offsets they cover, as Delta `txn` actions in the same commit.
//! - [`queries`]: a DataFusion session over chosen tables, rows read back as Rust values,
//!   receipt times and the marketplace log, for the processors.
//! - [`log`]: the log as bronze mirrors it, read back in receipt order in bounded memory.

mod columns;
pub mod decoded;
pub mod error;
pub mod lake;
pub mod log;
pub mod maintenance;
pub mod queries;
pub mod rows;
pub mod tables;

pub use decoded::{Body, DeadLetter, LakeRecord};
pub use deltalake;
pub use error::{LakeError, Result};
pub use gata_contract::offsets::{Offset, TopicPartition};
pub use lake::Lake;
pub use tables::TableId;
