//! What can go wrong reading or recording the rewards ledger.

use gata_lakehouse::LakeError;

/// A ledger failure.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The lake refused a read or a commit.
    #[error(transparent)]
    Lake(Box<LakeError>),
    /// A row of `table` does not read back as the ledger wrote it.
    #[error("{table}: {reason}")]
    Row {
        /// The table.
        table: &'static str,
        /// What is wrong with the row.
        reason: String,
    },
}

impl From<LakeError> for LedgerError {
    fn from(err: LakeError) -> Self {
        Self::Lake(Box::new(err))
    }
}

/// A ledger result.
pub type Result<T> = std::result::Result<T, LedgerError>;
