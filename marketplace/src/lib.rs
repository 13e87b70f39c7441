//! The marketplace: curated listings over the lake, creator-granted access, purchases and their
//! revenue splits — as a projection of the events on `gata.marketplace.v1`
//! ([`gata_infra::contract::MarketEvent`]).
//!
//! - [`state::Market`] folds events into listings, grants and purchases; it refuses events that
//!   do not fit the state, the same way on every replay.
//! - [`split::split`] divides a sale's price among contributors in proportion to their accepted
//!   rows, exactly (largest remainder, ties by contributor id).
//! - [`listing::listing_sql`] is the row-level SQL of one listing table: the listing's filters
//!   and only the rows of contributors who grant access.
//! - [`follower`] keeps the state current from the log; [`service::Marketplace`] takes new
//!   events (read-your-writes), computes splits from the lake and gives buyers their listing
//!   tables in SQL; [`routes`] serves it over HTTP, [`stream`] as listing streams, and
//!   [`sharing`] over the Delta Sharing protocol.
//! - [`payments`] confirms purchases from transfers found on chain; until then they are
//!   pending and grant nothing.

pub mod error;
pub mod follower;
pub mod listing;
pub mod payments;
pub mod plain_arrow;
pub mod routes;
pub mod service;
pub mod sharing;
pub mod split;
pub mod state;
pub mod stream;

pub use error::{MarketError, Result};
pub use listing::listing_sql;
pub use routes::router;
pub use service::Marketplace;
pub use split::split;
pub use state::{Confirmation, Grants, Listing, Market, Purchase, Refusal};
