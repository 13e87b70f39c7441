//! Errors of the mirror role.

/// Result with [`MirrorError`].
pub type Result<T, E = MirrorError> = std::result::Result<T, E>;

/// What stopped a mirror pass or a verification.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The configuration is unusable.
    #[error("mirror config: {0}")]
    Config(String),
    /// Reading the lake failed.
    #[error(transparent)]
    Lake(Box<gata_lakehouse::LakeError>),
    /// Reading the rewards ledger failed.
    #[error(transparent)]
    Ledger(#[from] gata_ledger::LedgerError),
    /// A Delta operation on `what` failed.
    #[error("{what}: {source}")]
    Delta {
        /// What was being read or written.
        what: String,
        /// Why.
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// An object store refused an operation.
    #[error("{operation} {path}: {source}")]
    Store {
        /// `get`, `put` or `head`.
        operation: &'static str,
        /// The object.
        path: String,
        /// Why.
        #[source]
        source: deltalake::ObjectStoreError,
    },
    /// The Greenfield storage provider refused or was unreachable.
    #[error(transparent)]
    Greenfield(#[from] gata_greenfield::GreenfieldError),
    /// A commit or data file did not parse.
    #[error("{path}: {reason}")]
    Decode {
        /// The file.
        path: String,
        /// What did not parse.
        reason: String,
    },
    /// The target already holds different bytes under a name the mirror wants to write.
    #[error("{path}: the target holds different content (sha256 {found}, lake has {expected}); not overwritten")]
    Conflict {
        /// The object.
        path: String,
        /// Its checksum at the target.
        found: String,
        /// The lake's.
        expected: String,
    },
}

impl From<gata_lakehouse::LakeError> for MirrorError {
    fn from(e: gata_lakehouse::LakeError) -> Self {
        MirrorError::Lake(Box::new(e))
    }
}
