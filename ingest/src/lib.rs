//! HTTP intake: validates submissions and produces them to the intake topics.
//!
//! `POST /v1/chat-turns`, `/v1/preferences`, `/v1/image-text-pairs` take one JSON object
//! (`application/json`) or a batch, one object per line (`application/x-ndjson`). A batch is
//! all-or-nothing at validation: one bad line and nothing is produced, and the answer lists
//! every problem with its line and field. The 202 comes only after the broker has acknowledged
//! every event (idempotent producer, `acks=all`), and names each event's id, partition and
//! offset. The partition key is the contributor id, so one contributor's events stay ordered.

pub mod error;
mod metrics;
mod produce;
mod routes;
mod turns;

pub use error::{IngestError, Result};
pub use produce::{Receipt, Receipts};
pub use routes::{Framing, IngestState, router, split_events};
