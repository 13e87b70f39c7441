//! SQL over the lake: a DataFusion session in which every lake table is registered by name
//! (`events`, `chat_turns`, `preferences`, `image_text_pairs`, `quality_scores`, `dva_votes`, `dead_letters`), served over HTTP.
//!
//! - `POST /v1/sql` with `{"sql": "..."}` answers `{"rows": [...], "columns": [...],
//!   "row_count", "truncated", "elapsed_ms"}`. Only read-only queries run: DDL, DML, `COPY`,
//!   `SET` and anything touching files outside the lake are refused with a 400 and a reason.
//! - `GET /v1/tables` lists the tables with their schemas, versions and descriptions.
//! - `GET /v1/contributors/{id}/scores` shows a contributor their scores and the reasons.
//! - `GET /review` is the DVA review page: image-text pairs with their scores, for people.
//!
//! Every query sees each table at its latest committed version. Each query runs with a memory
//! limit, a row limit and a timeout.

pub mod contributors;
pub mod export;
pub mod flight;
pub mod formats;
pub mod review;
mod routes;

pub use gata_sql::{Catalog, QueryError, Result, View, Views, catalog, engine as sql, error, executor, json, views};
pub use routes::{QueryState, router};
