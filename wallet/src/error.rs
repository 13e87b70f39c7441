//! Errors of key handling, signatures, typed data and sign-in messages.

/// Result with [`WalletError`].
pub type Result<T, E = WalletError> = std::result::Result<T, E>;

/// Why a key, address, signature, typed-data value or sign-in message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    /// A private key could not be used.
    #[error("private key: {0}")]
    PrivateKey(String),
    /// An account address did not parse.
    #[error("address {value:?}: {reason}")]
    Address {
        /// The text given.
        value: String,
        /// Why it is no address.
        reason: String,
    },
    /// A signature is malformed or does not recover to a key.
    #[error("signature: {0}")]
    Signature(String),
    /// Typed data (EIP-712) that does not fit its types.
    #[error("typed data: {0}")]
    TypedData(String),
    /// A raw transaction that does not decode.
    #[error("transaction: {0}")]
    Transaction(String),
    /// A Sign-In with Ethereum message that does not follow EIP-4361.
    #[error("sign-in message, {0}")]
    SignIn(String),
}
