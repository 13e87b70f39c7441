//! BNB Greenfield storage, starting with what every upload must agree on with the chain: the
//! object's integrity hashes ([`integrity`]).

pub mod error;
pub mod integrity;

pub use error::{GreenfieldError, Result};
pub use integrity::{DATA_BLOCKS, IntegrityHashes, PARITY_BLOCKS, SEGMENT_SIZE, integrity_hashes};
