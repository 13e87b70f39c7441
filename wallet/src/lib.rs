//! Ethereum-style wallets, with no I/O: secp256k1 accounts and EIP-55 addresses
//! ([`account`]), EIP-191 `personal_sign` and EIP-712 typed-data digests ([`account`],
//! [`eip712`]), Sign-In with Ethereum messages ([`siwe`]) and signed transfers ([`tx`]). Contributors, validators and
//! buyers are wallet addresses; Greenfield signs its transactions with the same keys.

pub mod account;
pub mod eip712;
pub mod error;
pub mod siwe;
pub mod tx;

pub use account::{Account, Address, keccak256, parse_signature, personal_digest, recover};
pub use error::{Result, WalletError};
pub use siwe::SignInMessage;
pub use tx::{LegacyTx, SignedTx};
