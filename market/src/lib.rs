//! The marketplace as pure functions of its log, with no I/O: what the HTTP service
//! (`gata-marketplace`), the rewards processor and the Greenfield mirror all fold the same way.
//!
//! - [`state::Market`] folds `market_event.v1` events into listings, grants, links and
//!   purchases; it refuses events that do not fit the state, the same way on every replay.
//! - [`split::split`] divides a sale's price among contributors in proportion to their accepted
//!   rows, exactly (largest remainder, ties by contributor id).
//! - [`listing::listing_sql`] is the row-level SQL of one listing table: the listing's filters
//!   and only the rows of contributors who grant access.

pub mod listing;
pub mod split;
pub mod state;

pub use listing::{listing_sql, silver_table};
pub use split::split;
pub use state::{Confirmation, Grants, Listing, Market, Purchase, Refusal};
