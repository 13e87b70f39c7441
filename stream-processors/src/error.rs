//! Errors of the stream processors.

use gata_lakehouse::LakeError;

/// Result with [`ProcessorError`] as the default error.
pub type Result<T, E = ProcessorError> = std::result::Result<T, E>;

/// What stops a stream processor.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// Creating or using a Kafka client failed.
    #[error("kafka {context}: {source}")]
    Kafka {
        /// What was being done.
        context: &'static str,
        /// Client error.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// The lake refused a read or commit.
    #[error(transparent)]
    Lake(Box<LakeError>),

    /// The rewards ledger could not be read or recorded.
    #[error(transparent)]
    Ledger(#[from] gata_ledger::LedgerError),

    /// The dead-letter topic did not acknowledge a record; the batch is not committed, so the
    /// records are read again after a restart.
    #[error("dead-letter topic did not take the record from {source_topic}/{partition}@{offset}: {reason}")]
    DeadLetter {
        /// Where the record came from.
        source_topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// Why the produce failed.
        reason: String,
    },

    /// The broker did not acknowledge a published record after every retry.
    #[error("publishing to {topic} failed for {subject}: {reason}")]
    Publish {
        /// Topic published to.
        topic: &'static str,
        /// What the record is about (a submission's event id).
        subject: String,
        /// The last error.
        reason: String,
    },

    /// The DVA's model failed on a batch.
    #[error("DVA inference failed: {0}")]
    Dva(#[from] gata_dva::DvaError),

    /// The HTTP client that fetches images by URL could not be built.
    #[error("cannot build the image client: {0}")]
    ImageClient(#[source] reqwest::Error),

    /// Commits kept failing; the sink stops rather than fall further behind silently.
    #[error("giving up after {attempts} failed flushes; last error: {last}")]
    FlushRetriesExhausted {
        /// Consecutive failures.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<ProcessorError>,
    },

    /// The Kafka poller thread stopped unexpectedly.
    #[error("kafka poller thread failed: {0}")]
    Poller(String),

    /// Scoring shards cannot split the log as configured.
    #[error("scoring shards: {0}")]
    Shards(String),

    /// A replay cannot run as asked.
    #[error("replay: {0}")]
    Replay(String),

    /// Records assessed ahead of the fold never came back (the runtime is shutting down).
    #[error("assessing submissions ahead of the fold: {0}")]
    AssessedAhead(String),

    /// The reward fold refused (an amount overflowed).
    #[error(transparent)]
    Rewards(#[from] gata_rewards::RewardsError),

    /// Registering metrics failed.
    #[error(transparent)]
    Infra(#[from] gata_infra::InfraError),
}

impl From<LakeError> for ProcessorError {
    fn from(err: LakeError) -> Self {
        Self::Lake(Box::new(err))
    }
}

impl ProcessorError {
    /// Whether trying again can succeed: the lake's storage or a version race
    /// ([`LakeError::is_retryable`]), or the broker not taking a record. Anything else (bad
    /// rows, a refused fold, a failed model) fails the same way every time.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Lake(e) => e.is_retryable(),
            Self::Kafka { .. } | Self::DeadLetter { .. } | Self::Publish { .. } => true,
            Self::Ledger(_)
            | Self::Dva(_)
            | Self::ImageClient(_)
            | Self::FlushRetriesExhausted { .. }
            | Self::Poller(_)
            | Self::Shards(_)
            | Self::Replay(_)
            | Self::AssessedAhead(_)
            | Self::Rewards(_)
            | Self::Infra(_) => false,
        }
    }

    /// Wraps a Kafka client error with what was being attempted.
    pub fn kafka(context: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        move |source| Self::Kafka { context, source }
    }
}
