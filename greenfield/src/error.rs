//! Errors of the Greenfield client.

/// Result with [`GreenfieldError`].
pub type Result<T, E = GreenfieldError> = std::result::Result<T, E>;

/// What went wrong talking to Greenfield or preparing what it expects.
#[derive(Debug, thiserror::Error)]
pub enum GreenfieldError {
    /// The erasure coder refused its parameters or input.
    #[error("erasure coding {what}: {reason}")]
    Erasure {
        /// What was being coded.
        what: String,
        /// Why it failed.
        reason: String,
    },
}
