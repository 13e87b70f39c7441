//! Kafka client setup shared by every role: the same settings serve the embedded broker and a
//! production cluster.
//!
//! Producers run idempotent with `acks=all`, so a retried send never duplicates or reorders a
//! record within a partition. Consumers never auto-commit: the lake sink's progress lives in the
//! Delta log, and Kafka's committed offsets are only a hint for lag monitoring.

use std::time::Duration;

use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::RDKafkaErrorCode,
};

use crate::{InfraError, Result};

/// Where the brokers are, and how every client is configured.
#[derive(Debug, Clone)]
pub struct KafkaClients {
    bootstrap: String,
}

impl KafkaClients {
    /// Clients for the cluster at `bootstrap` (`host:port[,host:port]`).
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self { bootstrap: bootstrap.into() }
    }

    /// `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn base(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.bootstrap).set("broker.address.family", "v4").set("log_level", "4");
        cfg
    }

    /// An idempotent producer (`acks=all`) that gives up on a record after `delivery_timeout`.
    pub fn producer(&self, delivery_timeout: Duration) -> ClientConfig {
        let mut cfg = self.base();
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", delivery_timeout.as_millis().max(1).to_string())
            .set("message.max.bytes", (4 << 20).to_string());
        cfg
    }

    /// A consumer in `group` that never commits on its own and starts from the earliest record.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut cfg = self.base();
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", "100");
        cfg
    }

    /// Creates `topics` with `partitions` each; topics that already exist are left as they are.
    pub async fn ensure_topics(&self, topics: &[&str], partitions: i32, replication: i32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> =
            self.base().create().map_err(InfraError::kafka("create admin client"))?;
        let new: Vec<_> =
            topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication))).collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin.create_topics(&new, &opts).await.map_err(InfraError::kafka("create topics"))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(InfraError::TopicCreation { topic, reason: code.to_string() }),
            }
        }
        Ok(())
    }
}
