//! BNB Greenfield storage: the object integrity hashes every upload must agree on with the chain
//! ([`integrity`]), accounts and GNFD1-ECDSA request signing ([`account`], [`auth`]), a storage
//! provider client ([`client`]) and a loopback storage-provider emulator enforcing the same rules
//! ([`emulator`]).

pub mod account;
pub mod auth;
pub mod client;
pub mod emulator;
pub mod error;
pub mod integrity;
pub mod xml;

#[cfg(test)]
mod sp_tests;

pub use account::{Account, Address};
pub use client::{SpClient, SpConfig, Upload, Visibility};
pub use emulator::Emulator;
pub use error::{GreenfieldError, Result};
pub use integrity::{DATA_BLOCKS, IntegrityHashes, PARITY_BLOCKS, SEGMENT_SIZE, integrity_hashes};
