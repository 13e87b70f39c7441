//! The mirror role: every committed version of every lake table copied to an object store or a
//! Greenfield bucket ([`mirror`]), with a submission record per batch of submissions
//! ([`records`]), resumable from progress kept in the lake ([`progress`]), paced ([`rate`]) and
//! verifiable by re-hashing what the target holds ([`verify`]).

pub mod anchor;
pub mod error;
pub mod grants;
pub mod mirror;
pub mod ops_table;
pub mod progress;
pub mod rate;
pub mod records;
pub mod target;
pub mod verify;

pub use error::{MirrorError, Result};
pub use grants::{GrantReport, GrantSync};
pub use mirror::{Mirror, PassReport};
pub use target::Target;
pub use verify::{VerifyReport, verify};
