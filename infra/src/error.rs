//! Errors of the shared kernel.

use std::path::PathBuf;

/// Result with [`InfraError`] as the default error.
pub type Result<T, E = InfraError> = std::result::Result<T, E>;

/// What can go wrong in configuration, broker and Kafka client setup.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    /// The configuration could not be read or merged.
    #[error("configuration: {0}")]
    Config(#[from] Box<figment::Error>),

    /// The configuration was read but holds values that cannot work.
    #[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
    InvalidConfig {
        /// Every problem found, so the operator fixes them all at once.
        problems: Vec<String>,
    },

    /// A directory or file needed on disk could not be prepared.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// No ONNX Runtime library was configured or found on the host.
    #[error(
        "ONNX Runtime not found ({reason}): set dva.onnxruntime (or ORT_DYLIB_PATH) to libonnxruntime.so, or `pip install onnxruntime`"
    )]
    OnnxRuntimeNotFound {
        /// Why the search failed.
        reason: String,
    },

    /// The embedded broker failed to start or stopped.
    #[error("embedded broker: {message}")]
    Broker {
        /// What the broker reported.
        message: String,
    },

    /// A Kafka client call failed.
    #[error("kafka {context}: {source}")]
    Kafka {
        /// What was being done.
        context: &'static str,
        /// The client error.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// No broker of the cluster answered within the client's timeout.
    #[error("no Kafka broker answered at {bootstrap} (is the cluster up and the address right?)")]
    Unreachable {
        /// The bootstrap servers tried.
        bootstrap: String,
    },

    /// Creating a topic failed for a reason other than "already exists".
    #[error("cannot create topic {topic}: {reason}")]
    TopicCreation {
        /// The topic.
        topic: String,
        /// The broker's reason.
        reason: String,
    },

    /// The Prometheus registry refused a metric (a duplicate name).
    #[error("metrics registration: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl InfraError {
    /// Wraps a Kafka client error with what was being attempted.
    pub fn kafka(context: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        move |source| Self::Kafka { context, source }
    }
}
