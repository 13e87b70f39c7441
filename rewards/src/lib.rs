//! Rewards derived from the log: the reward [`Policy`] (versioned data, integers only), the
//! deterministic [`fold_epoch`] of scored contributions into payouts, RFC 6962 Merkle roots over
//! each epoch's payouts and the [`Proof`]s that check a payout without the lake.
//!
//! Pure logic, no I/O: the rewards processor, `gata replay` and `gata rewards verify` all call
//! the same functions, which is what makes a replay's answer comparable with what was paid.

mod epoch;
mod error;
pub mod fold;
pub mod merkle;
pub mod policy;
pub mod proof;

pub use epoch::Epoch;
pub use error::{Result, RewardsError};
pub use fold::{Contribution, EpochRewards, LineRole, Payout, RewardLine, Sale, Vote, fold_epoch};
pub use policy::Policy;
pub use proof::{Proof, Rejection};
