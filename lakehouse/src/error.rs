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

impl LakeError {
    /// Whether trying again can succeed: the object store or the file system failed, or a
    /// concurrent writer won a version race. Bad rows, a schema that does not fit, an unusable
    /// location or a refused operation fail the same way every time.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Open { source, .. } | Self::Commit { source, .. } | Self::Read { source, .. } => {
                delta_is_transient(source)
            }
            Self::Scan { source, .. } => matches!(
                source.find_root(),
                deltalake::datafusion::error::DataFusionError::ObjectStore(_)
                    | deltalake::datafusion::error::DataFusionError::IoError(_)
                    | deltalake::datafusion::error::DataFusionError::ResourcesExhausted(_)
            ),
            Self::Location { .. } | Self::RetentionTooShort { .. } | Self::Rows { .. } | Self::Decode { .. } => false,
        }
    }
}

/// Whether a Delta error is one of storage or of a race with another writer.
fn delta_is_transient(err: &DeltaTableError) -> bool {
    matches!(
        err,
        DeltaTableError::ObjectStore { .. }
            | DeltaTableError::Io { .. }
            | DeltaTableError::Transaction { .. }
            | DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::VersionMismatch(..)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_failures_and_races_are_retried_and_bugs_are_not() {
        let store = DeltaTableError::ObjectStore {
            source: deltalake::ObjectStoreError::Generic { store: "s3", source: "connection reset".into() },
        };
        assert!(LakeError::Commit { table: "events", source: store }.is_retryable());
        let race = DeltaTableError::VersionAlreadyExists(7);
        assert!(LakeError::Commit { table: "events", source: race }.is_retryable());
        let schema = DeltaTableError::Generic("schema mismatch".into());
        assert!(!LakeError::Commit { table: "events", source: schema }.is_retryable());
        let rows = deltalake::arrow::error::ArrowError::SchemaError("no column x".into());
        assert!(!LakeError::Rows { table: "events", source: rows }.is_retryable());
    }
}
