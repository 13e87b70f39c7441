//! Errors of the lake layer.

use deltalake::DeltaTableError;

/// Result with [`LakeError`] as the default error.
pub type Result<T, E = LakeError> = std::result::Result<T, E>;

/// What can go wrong reading or writing the lake.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The lake URL is not usable.
    #[error("invalid lake location {uri:?}: {reason}")]
    Location {
        /// The configured location.
        uri: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// A vacuum was asked to keep less history than the safety window.
    #[error("vacuum of {table} refused: retention {retention:?} is below the safety window of {minimum:?}")]
    RetentionTooShort {
        /// Table name.
        table: &'static str,
        /// What was asked.
        retention: std::time::Duration,
        /// The least accepted.
        minimum: std::time::Duration,
    },

    /// Opening or creating a table failed.
    #[error("cannot open table {table}: {source}")]
    Open {
        /// Table name.
        table: &'static str,
        /// Delta error.
        #[source]
        source: DeltaTableError,
    },

    /// A commit (data and offsets) failed; nothing of it is visible.
    #[error("commit to table {table} failed: {source}")]
    Commit {
        /// Table name.
        table: &'static str,
        /// Delta error.
        #[source]
        source: DeltaTableError,
    },

    /// Reading table state (offsets, versions) failed.
    #[error("reading table {table}: {source}")]
    Read {
        /// Table name.
        table: &'static str,
        /// Delta error.
        #[source]
        source: DeltaTableError,
    },

    /// Building Arrow rows from records failed: a schema bug, not bad input.
    #[error("building rows for table {table}: {source}")]
    Rows {
        /// Table name.
        table: &'static str,
        /// Arrow error.
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },

    /// A query over a table failed.
    #[error("scanning table {table}: {source}")]
    Scan {
        /// Table name.
        table: &'static str,
        /// DataFusion error.
        #[source]
        source: deltalake::datafusion::error::DataFusionError,
    },

    /// Rows read back from a table do not have the shape written.
    #[error("decoding rows of table {table}: {reason}")]
    Decode {
        /// Table name.
        table: &'static str,
        /// What did not fit.
        reason: String,
    },
}
