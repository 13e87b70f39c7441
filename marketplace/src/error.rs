//! Errors of the marketplace service, with their HTTP answers.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use gata_api::ApiError;
use gata_contract::Violation;
use serde_json::json;

use crate::Refusal;

/// Result with [`MarketError`].
pub type Result<T, E = MarketError> = std::result::Result<T, E>;

/// What the marketplace answers when it cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// The request is malformed or breaks the contract.
    #[error("invalid request: {}", .0.iter().map(|v| format!("{}: {}", v.field, v.reason)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Violation>),
    /// The event does not fit the marketplace's state.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The principal may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing to sell: no granted, accepted rows in the listing.
    #[error("{0}")]
    Empty(String),
    /// A stream cursor points at history that is gone (vacuumed).
    #[error("{0}")]
    Gone(String),
    /// The log or the lake did not answer in time.
    #[error("marketplace unavailable: {0}")]
    Unavailable(String),
    /// The chain's JSON-RPC endpoint failed or answered something unusable.
    #[error("chain {method}: {reason}")]
    Chain {
        /// The JSON-RPC method.
        method: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// Kafka client failure.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The lake could not be read.
    #[error(transparent)]
    Lake(Box<gata_lakehouse::LakeError>),
    /// The thread that follows the marketplace log could not be started.
    #[error("cannot start the marketplace log follower: {0}")]
    Follower(#[source] std::io::Error),
    /// Counting a listing's rows failed.
    #[error(transparent)]
    Query(#[from] gata_sql::QueryError),
}

impl MarketError {
    /// For `map_err` on Kafka calls.
    pub fn kafka(e: rdkafka::error::KafkaError) -> Self {
        Self::Kafka(e)
    }
}

impl ApiError for MarketError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::Refused(Refusal::UnknownListing(_) | Refusal::NotOnSale { .. } | Refusal::UnknownPurchase(_)) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            Self::Refused(Refusal::NotYours { .. }) | Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::Refused(_) | Self::Empty(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Gone(_) => (StatusCode::GONE, "gone"),
            Self::Unavailable(_) | Self::Kafka(_) | Self::Chain { .. } | Self::Lake(_) | Self::Follower(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Self::Query(e) => e.status_and_code(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            Self::Invalid(violations) => Some(json!(violations)),
            _ => None,
        }
    }
}

impl aide::OperationOutput for MarketError {
    type Inner = gata_api::openapi::ErrorBody;
}

impl IntoResponse for MarketError {
    fn into_response(self) -> Response {
        gata_api::respond(&self)
    }
}
