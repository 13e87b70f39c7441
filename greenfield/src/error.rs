//! Errors of the Greenfield client, its storage-provider emulator and the transactions it signs.

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
    /// A key, address, signature or typed-data value was refused.
    #[error(transparent)]
    Wallet(#[from] gata_wallet::WalletError),
    /// An object name Greenfield does not accept.
    #[error("object name {name:?}: {reason}")]
    ObjectName {
        /// The name.
        name: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A request or transaction signature is missing, malformed, expired or invalid.
    #[error("signature: {0}")]
    Signature(String),
    /// The storage provider could not be reached (after the retries).
    #[error("{operation} {object}: {source}")]
    Transport {
        /// The operation (`put`, `get`, `head`, `list`).
        operation: &'static str,
        /// The bucket/object addressed.
        object: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The storage provider answered with an error.
    #[error("{operation} {object}: storage provider answered {status} {code}: {message}")]
    Refused {
        /// The operation.
        operation: &'static str,
        /// The bucket/object addressed.
        object: String,
        /// The HTTP status.
        status: u16,
        /// The provider's error code.
        code: String,
        /// The provider's message.
        message: String,
    },
    /// A provider's answer did not parse.
    #[error("{operation} {object}: unreadable answer: {reason}")]
    Answer {
        /// The operation.
        operation: &'static str,
        /// The bucket/object addressed.
        object: String,
        /// What did not parse.
        reason: String,
    },
    /// A transaction that does not decode or does not fit the chain's rules.
    #[error("transaction: {0}")]
    Transaction(String),
    /// The chain refused a transaction.
    #[error("transaction {txhash} refused with code {code}: {log}")]
    TxRefused {
        /// The transaction's hash.
        txhash: String,
        /// The chain's result code.
        code: u32,
        /// The chain's log.
        log: String,
    },
    /// The client's configuration is unusable.
    #[error("greenfield config: {0}")]
    Config(String),
}
