//! BNB Greenfield storage: the object integrity hashes every upload must agree on with the chain
//! ([`integrity`]), accounts and GNFD1-ECDSA request signing ([`account`], [`auth`]), a storage
//! provider client ([`client`]), permission policies ([`policy`]) signed into EIP-712
//! transactions ([`eip712`], [`tx`]) and broadcast by a chain client ([`chain`]), and a loopback
//! storage provider and chain gateway enforcing the same rules ([`emulator`]).

pub mod auth;
pub mod chain;
pub mod client;
pub mod emulator;
pub mod error;
pub mod integrity;
pub mod policy;
pub mod tags;
pub mod tx;
pub mod xml;

#[cfg(test)]
mod sp_tests;

pub use chain::{ChainClient, ChainConfig};
pub use client::{SpClient, SpConfig, Upload, Visibility};
pub use emulator::Emulator;
pub use error::{GreenfieldError, Result};
pub use gata_wallet::{Account, Address, account, eip712};
pub use integrity::{DATA_BLOCKS, IntegrityHashes, PARITY_BLOCKS, SEGMENT_SIZE, integrity_hashes};
