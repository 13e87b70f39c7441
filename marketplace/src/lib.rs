//! Listings, grants, subscriptions, the rewards ledger and the sharing protocol. This crate is
//! the home of issues 8 and 9; the foundation (issue 3) only reserves its place in the
//! layering (`infra`, `lakehouse` < `marketplace` < the `gata` binary).
