//! Kafka client setup shared by every role: the same settings serve the embedded broker and a
//! production cluster.
//!
//! Producers run with `acks=all` and, where the broker supports it, idempotent, so a retried send
//! never duplicates or reorders a record within a partition. Consumers never auto-commit: the
//! lake sink's progress lives in the Delta log, and Kafka's committed offsets are only a hint for
//! lag monitoring.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::RDKafkaErrorCode,
    producer::{BaseProducer, FutureProducer, Producer as _},
};

use serde::{Deserialize, Serialize};

use crate::{
    InfraError, Result,
    broker::EMBEDDED_CLUSTER_ID,
    config::{KafkaConfig, KafkaSecurity},
};

/// The log record `msg` is (its value empty when it has none). A record without a timestamp
/// (never one of gata's producers') is dated now.
pub fn log_record<M: rdkafka::Message>(msg: &M) -> gata_contract::LogRecord {
    let received_at = msg.timestamp().to_millis().and_then(chrono::DateTime::from_timestamp_millis);
    gata_contract::LogRecord {
        source: gata_contract::offsets::TopicPartition::new(msg.topic(), msg.partition()),
        offset: gata_contract::offsets::Offset(msg.offset()),
        received_at: received_at.unwrap_or_else(chrono::Utc::now),
        payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

/// Whether producers run idempotent (`kafka.idempotence`).
///
/// librdkafka's idempotent producer bumps its producer epoch on its own after a request timed
/// out (for instance while the broker restarts). Kafka accepts that; tansu 0.6, the embedded
/// broker, only knows epochs it handed out and its storage task panics on the first batch with
/// a bumped epoch, after which it stops serving. So against a tansu broker producers run
/// non-idempotent with `acks=all`: a retried send may then write a record twice to the log,
/// which the lake's silver tables absorb (one row per `event_id`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Idempotence {
    /// On, unless the cluster is a tansu broker started by gata (detected by its cluster id).
    #[default]
    Auto,
    /// Always idempotent.
    On,
    /// Never idempotent.
    Off,
}

/// Where the brokers are, and how every client is configured.
#[derive(Debug, Clone)]
pub struct KafkaClients {
    bootstrap: String,
    idempotent: bool,
    processors: SharedProducer,
    record_mac: Option<crate::record_mac::RecordMac>,
    security: KafkaSecurity,
    prefetch_kbytes: u32,
}

/// One producer for every stream processor of a process (see
/// [`KafkaClients::processor_producer`]); clones share it.
#[derive(Clone, Default)]
struct SharedProducer(Arc<OnceLock<FutureProducer>>);

impl std::fmt::Debug for SharedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedProducer").field("created", &self.0.get().is_some()).finish()
    }
}

/// What a consumer reads ahead of its processor by default, in KiB: librdkafka's own default.
pub const DEFAULT_PREFETCH_KBYTES: u32 = 64 << 10;

/// How long the stream processors' producer tries to deliver a record.
const PROCESSOR_DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

impl KafkaClients {
    /// Clients for the cluster at `bootstrap` (`host:port[,host:port]`) with idempotent
    /// producers: for a cluster that is known to support them, or a broker that lives exactly as
    /// long as its clients.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            idempotent: true,
            processors: SharedProducer::default(),
            record_mac: None,
            security: KafkaSecurity::default(),
            prefetch_kbytes: DEFAULT_PREFETCH_KBYTES,
        }
    }

    /// The same clients, authenticating and encrypting as `security` says.
    pub fn with_security(mut self, security: KafkaSecurity) -> Self {
        self.security = security;
        self
    }

    /// Clients for the cluster at `bootstrap` with `cfg`'s security and record MAC, and
    /// idempotent producers (see [`KafkaClients::new`]).
    pub fn configured(bootstrap: impl Into<String>, cfg: &KafkaConfig) -> Self {
        Self::new(bootstrap)
            .with_security(cfg.security.clone())
            .with_record_mac(cfg.record_mac())
            .with_prefetch_kbytes(cfg.consumer_prefetch_kbytes)
    }

    /// The same clients, with each consumer reading ahead of its processor at most `kbytes`
    /// (librdkafka's `queued.max.messages.kbytes`).
    pub fn with_prefetch_kbytes(mut self, kbytes: u32) -> Self {
        self.prefetch_kbytes = kbytes;
        self
    }

    /// Clients for the cluster at `bootstrap` as `cfg` configures them: security, record MAC,
    /// and idempotence resolved against the cluster.
    pub async fn for_config(bootstrap: impl Into<String>, cfg: &KafkaConfig) -> Result<Self> {
        Self::configured(bootstrap, cfg).resolve_idempotence(cfg.idempotence).await
    }

    /// The same clients, signing and checking records of the platform's topics with `mac`.
    pub fn with_record_mac(mut self, mac: Option<crate::record_mac::RecordMac>) -> Self {
        self.record_mac = mac;
        self
    }

    /// The MAC records of the platform's topics carry, when a secret is configured.
    pub fn record_mac(&self) -> Option<&crate::record_mac::RecordMac> {
        self.record_mac.as_ref()
    }

    /// Clients for the cluster at `bootstrap`, with idempotence resolved against the cluster:
    /// [`Idempotence::Auto`] asks the cluster for its id.
    pub async fn connect(bootstrap: impl Into<String>, idempotence: Idempotence) -> Result<Self> {
        Self::new(bootstrap).resolve_idempotence(idempotence).await
    }

    async fn resolve_idempotence(mut self, idempotence: Idempotence) -> Result<Self> {
        self.idempotent = match idempotence {
            Idempotence::On => true,
            Idempotence::Off => false,
            Idempotence::Auto => {
                let cluster_id = self.cluster_id().await?;
                let tansu = cluster_id == EMBEDDED_CLUSTER_ID;
                if tansu {
                    tracing::info!(
                        cluster_id,
                        "gata's own (tansu) broker: producers run non-idempotent with acks=all; \
                         silver tables deduplicate retried records by event_id"
                    );
                }
                !tansu
            }
        };
        Ok(self)
    }

    async fn cluster_id(&self) -> Result<String> {
        let producer: BaseProducer =
            self.base().create().map_err(InfraError::kafka("create a client to read the cluster id"))?;
        let bootstrap = self.bootstrap.clone();
        tokio::task::spawn_blocking(move || producer.client().fetch_cluster_id(Duration::from_secs(10)))
            .await
            .ok()
            .flatten()
            .ok_or(InfraError::Unreachable { bootstrap })
    }

    /// `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Settings every client shares. Client metrics are not pushed to the broker (KIP-714): gata
    /// exports its own at `/metrics`, and each client asked the embedded broker for a telemetry
    /// subscription every few seconds, which it does not offer.
    fn base(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.bootstrap)
            .set("broker.address.family", "v4")
            .set("log_level", "4")
            .set("enable.metrics.push", "false");
        let sec = &self.security;
        cfg.set("security.protocol", sec.protocol.name());
        if sec.protocol.sasl() {
            cfg.set("sasl.mechanism", sec.sasl_mechanism.name())
                .set("sasl.username", sec.username.as_deref().unwrap_or_default())
                .set("sasl.password", sec.password.as_ref().map_or("", |p| p.0.as_str()));
        }
        if sec.protocol.tls() {
            // Without a CA file, librdkafka's bundled OpenSSL looks for the system's CAs.
            cfg.set("ssl.ca.location", "probe");
            let files = [
                ("ssl.ca.location", &sec.ssl_ca_location),
                ("ssl.certificate.location", &sec.ssl_certificate_location),
                ("ssl.key.location", &sec.ssl_key_location),
            ];
            for (key, file) in files.into_iter().filter_map(|(k, f)| Some((k, f.as_ref()?))) {
                cfg.set(key, file.to_string_lossy());
            }
            if let Some(p) = &sec.ssl_key_password {
                cfg.set("ssl.key.password", &p.0);
            }
            cfg.set(
                "ssl.endpoint.identification.algorithm",
                if sec.ssl_endpoint_identification { "https" } else { "none" },
            );
        }
        cfg
    }

    /// Record bytes a consumer's fetch waits for (see [`KafkaClients::consumer`]).
    pub const FETCH_MIN_BYTES: usize = 16 * 1024;
    /// Longest a consumer's fetch waits for them.
    pub const FETCH_MAX_WAIT: Duration = Duration::from_millis(500);

    /// A producer (`acks=all`, idempotent where the cluster supports it) that gives up on a
    /// record after `delivery_timeout`.
    pub fn producer(&self, delivery_timeout: Duration) -> ClientConfig {
        let mut cfg = self.base();
        cfg.set("enable.idempotence", self.idempotent.to_string())
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", delivery_timeout.as_millis().max(1).to_string())
            .set("message.max.bytes", (4 << 20).to_string());
        cfg
    }

    /// The producer shared by the stream processors of this process (scores, votes, dead
    /// letters), created on first use, with a 30 s delivery timeout. Every rdkafka producer has a
    /// polling thread that wakes every 100 ms (and spins out the last millisecond of each
    /// wait), so one per process rather than one per role keeps an idle server idle.
    pub fn processor_producer(&self) -> Result<FutureProducer> {
        if let Some(producer) = self.processors.0.get() {
            return Ok(producer.clone());
        }
        let created: FutureProducer = self
            .producer(PROCESSOR_DELIVERY_TIMEOUT)
            .create()
            .map_err(InfraError::kafka("create the stream processors' producer"))?;
        Ok(self.processors.0.get_or_init(|| created).clone())
    }

    /// A consumer in `group` that never commits on its own and starts from the earliest record.
    /// A fetch is answered once it has [`Self::FETCH_MIN_BYTES`], or after [`Self::FETCH_MAX_WAIT`] with
    /// what there is: under a stream of single-event produces a consumer takes records by the
    /// dozen instead of one fetch per record, and a record waits at most `FETCH_MAX_WAIT`.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut cfg = self.base();
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.min.bytes", Self::FETCH_MIN_BYTES.to_string())
            .set("fetch.wait.max.ms", Self::FETCH_MAX_WAIT.as_millis().to_string())
            .set("queued.max.messages.kbytes", self.prefetch_kbytes.to_string());
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
