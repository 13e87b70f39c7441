//! The one error type of the rewards crate.

/// What can go wrong reading a policy or checking a proof.
#[derive(Debug, thiserror::Error)]
pub enum RewardsError {
    /// The policy file is not valid TOML for a policy.
    #[error("reward policy {source_name}: {source}")]
    PolicySyntax {
        /// File name or built-in name.
        source_name: String,
        /// The parser's complaint.
        #[source]
        source: toml::de::Error,
    },
    /// The policy parses but breaks a rule.
    #[error("reward policy {source_name}: {reason}")]
    PolicyInvalid {
        /// File name or built-in name.
        source_name: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A proof document that cannot be read.
    #[error("payout proof: {0}")]
    ProofFormat(String),
    /// An amount overflowed 64 bits.
    #[error("amount overflow for {account} in epoch {epoch}")]
    Overflow {
        /// The account.
        account: String,
        /// The epoch.
        epoch: i64,
    },
}

/// Result with [`RewardsError`].
pub type Result<T, E = RewardsError> = std::result::Result<T, E>;
