//! The marketplace service: curated listings over the lake, creator-granted access, purchases
//! and their revenue splits, served over HTTP, as streams and over Delta Sharing. The state is
//! the pure fold of `gata-market` over the events on `gata.marketplace.v1`
//! ([`gata_contract::MarketEvent`]).
//!
//! - [`follower`] keeps the state current from the log; [`service::Marketplace`] takes new
//!   events (read-your-writes), computes splits from the lake and gives buyers their listing
//!   tables in SQL; [`routes`] serves it over HTTP, [`stream`] as listing streams, and
//!   [`sharing`] over the Delta Sharing protocol.
//! - [`payments`] confirms purchases from transfers found on chain; until then they are
//!   pending and grant nothing.

pub mod consistency;
pub mod error;
pub mod follower;
pub mod payments;
pub mod plain_arrow;
pub mod routes;
pub mod service;
pub mod sharing;
pub mod stream;

pub use error::{MarketError, Result};
pub use gata_market::{Confirmation, Grants, Listing, Market, Purchase, Refusal, listing_sql, split};
pub use routes::router;
pub use service::Marketplace;
