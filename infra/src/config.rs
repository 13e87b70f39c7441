//! One configuration for the whole binary: defaults < `gata.toml` < `GATA__SECTION__KEY`
//! environment variables < command-line flags, merged in [`load`] and validated at once.
//!
//! Libraries get their section by value; nothing below the binary reads files or the
//! environment. [`GataConfig::default`] is what `gata demo` runs on: an embedded broker and a
//! lake under `./gata-data`, HTTP on loopback.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

use crate::{InfraError, Result, kafka::Idempotence};
use gata_contract::Limits;

/// A role `gata serve` can run; a process runs any subset, so roles scale independently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// HTTP intake (`/v1/chat-turns`, …).
    Intake,
    /// The lake sink, a consumer-group member.
    Sink,
    /// SQL (`/v1/sql`, `/v1/tables`).
    Query,
    /// Background compaction and vacuum.
    Maintenance,
    /// The scoring processor: a quality score for every chat turn and preference.
    Scoring,
    /// The DVA: an image-caption agreement score for every image-text pair.
    Dva,
    /// The rewards processor: closes epochs, folds their scores into payouts (`gold/rewards`).
    Rewards,
    /// The mirror: copies every committed table version to `mirror.target` (not in the
    /// default set: it needs a target).
    Mirror,
}

impl Role {
    /// Every role: what `gata serve` runs by default.
    pub const ALL: [Role; 7] =
        [Role::Intake, Role::Sink, Role::Query, Role::Maintenance, Role::Scoring, Role::Dva, Role::Rewards];
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim() {
            "intake" => Ok(Role::Intake),
            "sink" => Ok(Role::Sink),
            "query" => Ok(Role::Query),
            "maintenance" => Ok(Role::Maintenance),
            "scoring" => Ok(Role::Scoring),
            "dva" => Ok(Role::Dva),
            "rewards" => Ok(Role::Rewards),
            "mirror" => Ok(Role::Mirror),
            other => Err(format!(
                "unknown role {other:?}; roles: intake, sink, query, maintenance, scoring, dva, rewards, mirror"
            )),
        }
    }
}

/// The whole configuration, one section per role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GataConfig {
    /// Roles this process runs (all by default).
    pub roles: Vec<Role>,
    /// Where the embedded broker's log and the default lake live.
    pub data_dir: PathBuf,
    /// The HTTP listener shared by intake and SQL.
    pub http: HttpConfig,
    /// Kafka: an external cluster or the embedded broker.
    pub kafka: KafkaConfig,
    /// HTTP intake.
    pub ingest: IngestConfig,
    /// The lake and its sink.
    pub lake: LakeConfig,
    /// The SQL service.
    pub query: QueryConfig,
    /// Principals, their tokens (hashed) and grants.
    pub auth: crate::auth::AuthConfig,
    /// Background table maintenance.
    pub maintenance: MaintenanceConfig,
    /// The scoring processor.
    pub scoring: ScoringConfig,
    /// The DVA.
    pub dva: DvaConfig,
    /// The rewards processor.
    pub rewards: RewardsConfig,
    /// The mirror role.
    pub mirror: MirrorConfig,
    /// Rate limits per principal and per contributor.
    pub rate: crate::rate::RateConfig,
    /// How marketplace purchases are paid and confirmed.
    pub payments: PaymentsConfig,
    /// Outside validators: leases, gold pairs, qualification.
    pub validation: ValidationConfig,
    /// Where the roles that consume the log run, and at what CPU priority.
    pub background: BackgroundConfig,
}

impl Default for GataConfig {
    fn default() -> Self {
        Self {
            roles: Role::ALL.to_vec(),
            data_dir: PathBuf::from("gata-data"),
            http: HttpConfig::default(),
            kafka: KafkaConfig::default(),
            ingest: IngestConfig::default(),
            lake: LakeConfig::default(),
            query: QueryConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            payments: PaymentsConfig::default(),
            validation: ValidationConfig::default(),
            maintenance: MaintenanceConfig::default(),
            scoring: ScoringConfig::default(),
            dva: DvaConfig::default(),
            rewards: RewardsConfig::default(),
            mirror: MirrorConfig::default(),
            rate: crate::rate::RateConfig::default(),
            background: BackgroundConfig::default(),
        }
    }
}

/// `[background]`: the runtime of the roles that consume the log (sink, scoring, DVA, rewards,
/// maintenance, mirror), apart from the one serving HTTP. With `nice` set, its threads and every
/// thread they start (librdkafka's, the pollers', ONNX Runtime's) run at a lower CPU priority, so
/// in a burst the requests waiting on an answer keep the cores and the consumers catch up after.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackgroundConfig {
    /// The nice value of those threads, 0 (as the listener; the default) to 19 (at 10, under
    /// contention they get about a tenth of a core the listener's threads want).
    pub nice: i32,
    /// Worker threads of that runtime (`0`: one per core).
    pub threads: usize,
    /// Whether the consumers of a process that also runs intake step aside (stop fetching and
    /// processing) while intake requests arrive on a saturated machine
    /// ([`crate::foreground`]); on by default.
    pub yield_to_intake: bool,
    /// The longest they step aside at a time for intake (what the lake's freshness may lose
    /// to a burst), at most a minute.
    #[serde(with = "humantime_serde")]
    pub yield_max: Duration,
    /// The longest the consumers deriving from the log (scorers, DVA) step aside at a time for
    /// the lake sink's backlog, at most a minute. Their waits do not count that time
    /// ([`crate::foreground::Clock`]).
    #[serde(with = "humantime_serde")]
    pub yield_max_backlog: Duration,
    /// How long they run before they may step aside again.
    #[serde(with = "humantime_serde")]
    pub yield_min_run: Duration,
    /// The share of the machine's CPU time in use, in (0, 1], from which it counts as saturated.
    pub yield_busy: f64,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        Self {
            nice: 0,
            threads: 0,
            yield_to_intake: true,
            yield_max: Duration::from_secs(2),
            yield_max_backlog: Duration::from_secs(30),
            yield_min_run: Duration::from_millis(500),
            yield_busy: 0.9,
        }
    }
}

/// The longest a consumer may be told to step aside at a time: longer, it is a stalled one.
const MAX_ASIDE: Duration = Duration::from_secs(60);

impl BackgroundConfig {
    /// When the consumers step aside for intake; `None` when they never do.
    pub fn yield_policy(&self) -> Option<crate::foreground::YieldPolicy> {
        self.yield_to_intake.then_some(crate::foreground::YieldPolicy {
            max: self.yield_max,
            max_backlog: self.yield_max_backlog,
            min_run: self.yield_min_run,
            busy: self.yield_busy,
        })
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, max) in [("yield_max", self.yield_max), ("yield_max_backlog", self.yield_max_backlog)] {
            if max > MAX_ASIDE {
                problems.push(format!("background.{key} must be at most 1m"));
            }
        }
        if !(self.yield_busy > 0.0 && self.yield_busy <= 1.0) {
            problems.push("background.yield_busy must be in (0, 1]".to_string());
        }
        problems
    }
}

/// `[payments]`: how a purchase's payment is confirmed. With a chain endpoint, the marketplace
/// confirms a purchase once a transfer of at least its price, from the buyer's address to the
/// treasury, whose data names the purchase, has `min_confirmations`; without one, operators
/// confirm purchases by hand.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsConfig {
    /// The EVM chain's JSON-RPC endpoint (`https://bsc-dataseed.bnbchain.org`).
    pub chain_rpc: Option<url::Url>,
    /// The chain id transfers must be signed for (`56`: BNB Smart Chain).
    pub chain_id: u64,
    /// The marketplace's treasury address: where payments go.
    pub treasury: Option<String>,
    /// Blocks on top of a transfer's, itself included, before it counts.
    pub min_confirmations: u64,
    /// Wei a transfer must carry per unit of a listing's price.
    pub wei_per_unit: u64,
    /// How often pending purchases are looked up on chain.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            chain_rpc: None,
            chain_id: 56,
            treasury: None,
            min_confirmations: 3,
            wei_per_unit: 1,
            poll_interval: Duration::from_secs(2),
        }
    }
}

impl PaymentsConfig {
    /// What is wrong with this section, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.chain_rpc.is_some() && self.treasury.is_none() {
            problems.push("payments.chain_rpc is set: set payments.treasury, the address payments go to".into());
        }
        if let Some(t) = self.treasury.as_deref().filter(|t| t.parse::<gata_wallet::Address>().is_err()) {
            problems.push(format!("payments.treasury {t:?} is not 0x and 40 hex digits"));
        }
        if self.min_confirmations == 0 || self.wei_per_unit == 0 || self.poll_interval.is_zero() {
            problems.push("payments: min_confirmations, wei_per_unit and poll_interval must be above zero".into());
        }
        problems
    }
}

/// `[validation]`: validators from outside, over HTTP (with the query role). A signed-in wallet
/// leases image-text pairs, votes on each with a signature, and its votes reach the DVA
/// consensus (as scorer version `scorer_version`) once it answered `qualify_after` gold pairs
/// with at least `min_accuracy` right, and only while it stays there.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationConfig {
    /// Whether the routes are served.
    pub enabled: bool,
    /// The scorer version of validators' votes (their own ballots in the consensus).
    pub scorer_version: String,
    /// How long a lease waits for its vote.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Open leases in all.
    pub max_leases: usize,
    /// Gold pairs answered before votes count.
    pub qualify_after: u32,
    /// Share of gold answered right that keeps votes counting.
    pub min_accuracy: f64,
    /// Share of a qualified validator's leases that are gold.
    pub gold_share: f64,
    /// A vote at or above this accepts the pair.
    pub threshold: f64,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            scorer_version: "human@1".into(),
            lease_ttl: Duration::from_secs(600),
            max_leases: 100_000,
            qualify_after: 4,
            min_accuracy: 0.75,
            gold_share: 0.1,
            threshold: 0.0,
        }
    }
}

impl ValidationConfig {
    /// What is wrong with this section, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let version_ok = !self.scorer_version.is_empty()
            && self.scorer_version.len() <= 64
            && self.scorer_version.bytes().all(|b| b.is_ascii_alphanumeric() || b"@._-/".contains(&b));
        if !version_ok {
            problems.push("validation.scorer_version: 1..=64 of letters, digits and @._-/".into());
        }
        if !(0.0..=1.0).contains(&self.min_accuracy) || !(0.0..=1.0).contains(&self.gold_share) {
            problems.push("validation: min_accuracy and gold_share are shares in [0, 1]".into());
        }
        if !(-1.0..=1.0).contains(&self.threshold) || self.lease_ttl.is_zero() || self.max_leases == 0 {
            problems.push("validation: threshold in [-1, 1], lease_ttl and max_leases above zero".into());
        }
        problems
    }
}

/// The HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to bind (`127.0.0.1:8080`). Port 0 picks a free port.
    pub addr: SocketAddr,
    /// Upper bound on one request (`30s`).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Requests served at once before new ones wait (`256`); a streamed response holds its
    /// slot until its body is sent.
    pub max_concurrency: usize,
    /// Open connections; past it new ones are closed at once (`1024`).
    pub max_connections: usize,
    /// Time a client has to send a request's headers, also the idle limit of a kept-alive
    /// connection (`10s`): a slow-headers client cannot hold a connection.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Upper bound on sending one streamed response body (`10m`).
    #[serde(with = "humantime_serde")]
    pub stream_timeout: Duration,
    /// Serve `/metrics` without a token even when auth is on (`false`: operators only), for
    /// a Prometheus that scrapes over a private network.
    pub public_metrics: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout: Duration::from_secs(30),
            max_concurrency: 256,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            stream_timeout: Duration::from_secs(600),
            public_metrics: false,
        }
    }
}

/// Kafka connection and topic layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port]` of an external cluster. Unset: start the embedded broker.
    pub brokers: Option<String>,
    /// Listener of the embedded broker (`127.0.0.1:0` picks a free port, printed at start).
    pub embedded_listen: SocketAddr,
    /// Partitions per topic when the platform creates its topics (`4`).
    pub partitions: i32,
    /// Replication factor for created topics (`1`; use 3 on a production cluster).
    pub replication_factor: i32,
    /// Consumer group of the lake sink (`gata-lake-sink`).
    pub sink_group: String,
    /// Idempotent producers: `auto` (on, except against gata's own tansu broker), `on`, `off`.
    pub idempotence: Idempotence,
    /// Serve the embedded broker on a non-loopback `embedded_listen` (it has no authentication:
    /// set `record_secret` too).
    pub embedded_remote: bool,
    /// Hex of at least 32 random bytes, the same in every process: records on the topics only
    /// the platform writes carry its MAC, and records without a valid one are refused
    /// ([`crate::record_mac`]). Unset: the broker is trusted.
    pub record_secret: Option<Secret>,
    /// How every client authenticates to the cluster and encrypts the connection.
    pub security: KafkaSecurity,
    /// SCRAM users of the embedded broker. When set, it serves only clients that authenticate
    /// as one of them (SASL SCRAM-SHA-256 or -512; PLAIN is refused), and gata's own clients
    /// use `kafka.security`.
    pub embedded_users: Vec<ScramUser>,
    /// What each consumer reads ahead of its processor, in KiB (librdkafka's
    /// `queued.max.messages.kbytes`; `65536`).
    pub consumer_prefetch_kbytes: u32,
}

/// `[kafka.security]`: SASL and TLS settings every Kafka client of gata gets (librdkafka's
/// `security.protocol`, `sasl.*` and `ssl.*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSecurity {
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub protocol: SecurityProtocol,
    /// `SCRAM-SHA-512` (default), `SCRAM-SHA-256` or `PLAIN` (only over `sasl_ssl`: it sends
    /// the password as is).
    pub sasl_mechanism: SaslMechanism,
    /// The SASL user.
    pub username: Option<String>,
    /// Its password (`GATA__KAFKA__SECURITY__PASSWORD`).
    pub password: Option<Secret>,
    /// PEM file of the CAs that sign the brokers' certificates. Unset: the system's.
    pub ssl_ca_location: Option<PathBuf>,
    /// PEM client certificate, for clusters that authenticate clients by TLS (mTLS).
    pub ssl_certificate_location: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub ssl_key_location: Option<PathBuf>,
    /// Password of the private key, if it is encrypted.
    pub ssl_key_password: Option<Secret>,
    /// Check that a broker's certificate names the host connected to (`true`).
    pub ssl_endpoint_identification: bool,
}

impl Default for KafkaSecurity {
    fn default() -> Self {
        Self {
            protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: SaslMechanism::ScramSha512,
            username: None,
            password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            ssl_endpoint_identification: true,
        }
    }
}

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// Neither authentication nor encryption.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// As librdkafka names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether clients authenticate with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    /// Whether the connection is TLS.
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// The password in clear (acceptable only inside TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// As Kafka names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl KafkaSecurity {
    /// What is wrong with this section, one line each.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let sasl_set = self.username.is_some() || self.password.is_some();
        if self.protocol.sasl() && (self.username.is_none() || self.password.is_none()) {
            problems.push(format!(
                "kafka.security.protocol = {:?} needs kafka.security.username and password",
                self.protocol.name()
            ));
        }
        if !self.protocol.sasl() && sasl_set {
            problems.push(
                "kafka.security.username/password are set but the protocol has no SASL: \
                 set kafka.security.protocol = \"sasl_ssl\" (or \"sasl_plaintext\")"
                    .into(),
            );
        }
        if self.protocol == SecurityProtocol::SaslPlaintext && self.sasl_mechanism == SaslMechanism::Plain {
            problems.push("kafka.security: PLAIN sends the password in clear; use it with sasl_ssl only".into());
        }
        let files = [&self.ssl_ca_location, &self.ssl_certificate_location, &self.ssl_key_location];
        if !self.protocol.tls() && files.iter().any(|f| f.is_some()) {
            problems.push("kafka.security.ssl_* files are set but the protocol is not ssl or sasl_ssl".into());
        }
        for file in files.into_iter().flatten().filter(|f| !f.is_file()) {
            problems.push(format!("kafka.security: {} is not a readable file", file.display()));
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            problems.push("kafka.security: a client certificate needs its key, and a key its certificate".into());
        }
        problems
    }
}

/// A SCRAM user of the embedded broker.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScramUser {
    /// The user name.
    pub name: String,
    /// Its password; the broker stores only SCRAM's salted keys of it.
    pub password: Secret,
}

impl std::fmt::Debug for ScramUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUser").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A secret setting: read from the configuration, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl KafkaConfig {
    /// The record MAC of `record_secret`, if set.
    pub fn record_mac(&self) -> Option<crate::record_mac::RecordMac> {
        crate::record_mac::RecordMac::from_hex(&self.record_secret.as_ref()?.0)
    }

    /// What is wrong with this section, one line each.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.brokers.is_none() && !self.embedded_listen.ip().is_loopback() && !self.embedded_remote {
            problems.push(format!(
                "kafka.embedded_listen {} is not loopback: set kafka.embedded_remote = true (with \
                 kafka.embedded_users and kafka.record_secret) to serve the embedded broker on the network",
                self.embedded_listen
            ));
        }
        if !self.embedded_users.is_empty() && !self.security.protocol.sasl() {
            problems.push(
                "kafka.embedded_users makes the embedded broker require SCRAM: set kafka.security \
                 (protocol = \"sasl_plaintext\", a SCRAM mechanism, one user's name and password) for gata's own clients"
                    .into(),
            );
        }
        if !self.embedded_users.is_empty() && self.security.sasl_mechanism == SaslMechanism::Plain {
            problems.push("kafka.security.sasl_mechanism: the embedded broker accepts SCRAM only, not PLAIN".into());
        }
        if let Some(u) = self.embedded_users.iter().find(|u| u.name.is_empty() || u.password.0.is_empty()) {
            problems.push(format!("kafka.embedded_users: user {:?} needs a name and a password", u.name));
        }
        problems.extend(self.security.problems());
        if self.record_secret.is_some() && self.record_mac().is_none() {
            problems.push("kafka.record_secret must be the hex of at least 32 random bytes".into());
        }
        problems
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: None,
            embedded_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            partitions: 4,
            replication_factor: 1,
            sink_group: "gata-lake-sink".into(),
            idempotence: Idempotence::Auto,
            embedded_remote: false,
            record_secret: None,
            security: KafkaSecurity::default(),
            embedded_users: Vec::new(),
            consumer_prefetch_kbytes: crate::kafka::DEFAULT_PREFETCH_KBYTES,
        }
    }
}

/// HTTP intake limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest request body accepted (`16 MiB`); larger bodies get 413.
    pub max_body_bytes: usize,
    /// Most events in one NDJSON batch (`1000`).
    pub max_batch_events: usize,
    /// How long to wait for the broker to acknowledge a batch (`10s`) before answering 503.
    #[serde(with = "humantime_serde")]
    pub produce_timeout: Duration,
    /// Per-event limits.
    pub limits: Limits,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            max_batch_events: 1000,
            produce_timeout: Duration::from_secs(10),
            limits: Limits::default(),
        }
    }
}

/// The lake and the sink that fills it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    /// Lake root as a URL (`file:///…`, `s3://…`). Unset: `<data_dir>/lake`.
    pub uri: Option<url::Url>,
    /// Flush buffered records once this many are waiting (`20000`). Each commit costs tens of
    /// milliseconds whatever its size, so a backlog drains in large commits (docs/scaling.md).
    pub flush_max_records: usize,
    /// Flush once the buffered records hold this many bytes of payload (`64 MiB`), so large
    /// events make large files without holding too much in memory.
    pub flush_max_bytes: usize,
    /// Flush buffered records at least this often (`500ms`), so data is queryable quickly.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Records queued between the Kafka poller and the writer before polling pauses (`10000`).
    pub queue_records: usize,
    /// Write a log checkpoint every this many commits to a table (`100`).
    pub checkpoint_interval: u64,
    /// Object-store options for the lake URL (`AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, …); `AWS_*` environment
    /// variables are read too. Values never appear in logs.
    pub storage_options: TextOptions,
}

/// Options handed to a library as text (object-store options, DataFusion settings): key →
/// value; `Debug` shows the keys only, since some are secrets. Values may be written as
/// strings, booleans or numbers (environment variables such as `…__AWS_ALLOW_HTTP=true` parse
/// as booleans); they are kept as text, which is what those libraries take.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TextOptions(pub std::collections::BTreeMap<String, String>);

impl<'de> Deserialize<'de> for TextOptions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            Text(String),
            Flag(bool),
            Int(i64),
            Float(f64),
            Nested(std::collections::BTreeMap<String, Scalar>),
        }
        /// Nested tables (TOML dotted keys, `…__A__B` variables) become dotted names.
        fn flatten(prefix: &str, raw: std::collections::BTreeMap<String, Scalar>, out: &mut TextOptions) {
            for (k, v) in raw {
                let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                let text = match v {
                    Scalar::Text(s) => s,
                    Scalar::Flag(b) => b.to_string(),
                    Scalar::Int(i) => i.to_string(),
                    Scalar::Float(f) => f.to_string(),
                    Scalar::Nested(inner) => {
                        flatten(&key, inner, out);
                        continue;
                    }
                };
                out.0.insert(key, text);
            }
        }
        let mut options = TextOptions::default();
        flatten("", std::collections::BTreeMap::<String, Scalar>::deserialize(deserializer)?, &mut options);
        Ok(options)
    }
}

impl fmt::Debug for TextOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            uri: None,
            flush_max_records: 20_000,
            flush_max_bytes: 64 << 20,
            flush_interval: Duration::from_millis(500),
            queue_records: 10_000,
            checkpoint_interval: 100,
            storage_options: TextOptions::default(),
        }
    }
}

/// The SQL service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Most rows in a JSON answer (`10000`); the answer says when it was truncated.
    pub max_rows: usize,
    /// Most rows a streamed answer (NDJSON, CSV, Arrow, Parquet, Flight SQL) may carry
    /// (`10000000`); past it the stream is cut off with an error, never silently short.
    pub max_stream_rows: u64,
    /// Most bytes one answer may carry, in any format (`1 GiB`).
    pub max_result_bytes: u64,
    /// Disk kept for Delta Sharing's materialized answers; the oldest go first (`4 GiB`).
    pub sharing_cache_bytes: u64,
    /// Longest a query may run, streaming included (`30s`).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Memory one query may use for sorts, joins and aggregates (`1 GiB`); past it operators
    /// that can spill to disk do, the others fail the query cleanly.
    pub memory_limit_bytes: usize,
    /// Most bytes one call of a function whose output size the caller chooses (`repeat`, `lpad`,
    /// `rpad`, `array_repeat`, `range`, `generate_series`) may produce for one batch (`64 MiB`);
    /// past it the query fails with a 400 before anything is allocated.
    pub max_function_bytes: u64,
    /// Threads of the query runtime, apart from the HTTP one, so a heavy query cannot starve
    /// the listeners (`2`).
    pub executor_threads: usize,
    /// How often the lake root is listed for new tables (`5s`); versions of known tables are
    /// refreshed before every query.
    #[serde(with = "humantime_serde")]
    pub discover_interval: Duration,
    /// Arrow Flight SQL listener (`127.0.0.1:50051`; port 0 picks a free one, printed at start;
    /// unset turns Flight SQL off).
    pub flight_addr: Option<SocketAddr>,
    /// DataFusion settings for every query session, by their name without the `datafusion.`
    /// prefix (`execution.parquet.pushdown_filters = true`, `execution.batch_size = 16384`, or
    /// `GATA__QUERY__DATAFUSION__EXECUTION__BATCH_SIZE=16384`); analysts cannot change them
    /// (`SET` is refused). Unknown names stop the start.
    pub datafusion: TextOptions,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            max_rows: 10_000,
            max_stream_rows: 10_000_000,
            max_result_bytes: 1 << 30,
            sharing_cache_bytes: 4 << 30,
            timeout: Duration::from_secs(30),
            memory_limit_bytes: 1 << 30,
            max_function_bytes: 64 << 20,
            executor_threads: 2,
            discover_interval: Duration::from_secs(5),
            flight_addr: Some(SocketAddr::from(([127, 0, 0, 1], 50051))),
            datafusion: TextOptions::default(),
        }
    }
}

/// Background table maintenance run by `gata serve` (and on demand by `gata lake`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Run compaction and vacuum in the background (`true`).
    pub enabled: bool,
    /// How often to compact small files (`10m`).
    #[serde(with = "humantime_serde")]
    pub optimize_interval: Duration,
    /// Size compaction aims for (`128 MiB`).
    pub target_file_bytes: u64,
    /// How often to vacuum (`24h`).
    #[serde(with = "humantime_serde")]
    pub vacuum_interval: Duration,
    /// Files unreferenced for less than this are kept (`7days`; at least 1 hour).
    #[serde(with = "humantime_serde")]
    pub vacuum_retention: Duration,
    /// Columns to cluster each table by when compacting (Z-order; one column is a sort), e.g.
    /// `chat_turns = ["contributor_id"]`. None by default: clustering rewrites whole partitions.
    pub zorder: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            optimize_interval: Duration::from_secs(600),
            target_file_bytes: 128 << 20,
            vacuum_interval: Duration::from_secs(86_400),
            vacuum_retention: Duration::from_secs(7 * 86_400),
            zorder: std::collections::BTreeMap::new(),
        }
    }
}

/// How the scoring processor runs. The scoring rules and thresholds are not configuration:
/// they belong to the scorer version stamped on every score, so two scores of one version
/// always mean the same thing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// Consumer group (`gata-scoring`).
    pub group: String,
    /// How long a preference read before the turn it judges waits for it (`5s`).
    #[serde(with = "humantime_serde")]
    pub turn_wait: Duration,
    /// How long each record is held so that a submission received earlier but fetched later
    /// (from another partition) is scored first (`1s`; `0s` scores in fetch order).
    #[serde(with = "humantime_serde")]
    pub reorder_window: Duration,
    /// Records queued between the Kafka poller and the scorer (`10000`).
    pub queue_records: usize,
    /// Score events in flight to the broker at most (`1000`).
    pub publish_window: usize,
    /// Threads that decode a batch of submissions and assess their texts before the scorer
    /// folds them in order (`0`: one per core when the process runs only the scoring role,
    /// else one). Scores are the same whatever the count.
    pub threads: usize,
    /// How many scoring processes share the work (`1`). Each reads every partition and
    /// remembers every submission, so cross-account signals see everything, but judges and
    /// publishes only the submissions of its own partitions.
    pub shards: u32,
    /// Which of the [`shards`](Self::shards) this process is (`0`): it judges the partitions
    /// whose number modulo `shards` is `shard`.
    pub shard: u32,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            group: "gata-scoring".into(),
            turn_wait: Duration::from_secs(5),
            reorder_window: Duration::from_secs(1),
            queue_records: 10_000,
            publish_window: 1000,
            threads: 0,
            shards: 1,
            shard: 0,
        }
    }
}

/// The DVA: which model, where it runs, how it batches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DvaConfig {
    /// Consumer group (`gata-dva`).
    pub group: String,
    /// Model directory with its `model.json`. Unset: the shipped `models/tiny-clip`, built into
    /// the binary.
    pub model_dir: Option<PathBuf>,
    /// Which inference engine runs the encoders (`auto`).
    pub engine: DvaEngine,
    /// ONNX Runtime shared library. Unset: `ORT_DYLIB_PATH`, else the one the `onnxruntime`
    /// Python package installed.
    pub onnxruntime: Option<PathBuf>,
    /// Where ONNX Runtime runs the encoders (`cpu`; `cuda` falls back to the CPU, with a log
    /// line, when unavailable).
    pub provider: DvaProvider,
    /// Accept threshold on the score in [-1, 1]. Unset: the model card's.
    pub threshold: Option<f32>,
    /// A head trained from reviewers' labels on this model (`gata dva train --out DIR`): its
    /// accept probability is published as a second scorer version. Unset: none.
    pub head: Option<PathBuf>,
    /// Pairs scored per encoder call (`16`).
    pub batch_size: usize,
    /// Longest a pair waits for its batch to fill (`20ms`).
    #[serde(with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Images with more pixels are refused before decoding (`40000000`).
    pub max_pixels: u64,
    /// ONNX Runtime threads per encoder (`2`).
    pub threads: usize,
    /// Longest one fetch of an image sent by URL may take, body included (`10s`).
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// Longest connecting to an image's host may take (`3s`).
    #[serde(with = "humantime_serde")]
    pub fetch_connect_timeout: Duration,
    /// Further attempts after a timeout, refused connection, 5xx or 429 (`2`).
    pub fetch_retries: u32,
    /// Whether image URLs may point at loopback, private and link-local addresses (`false`).
    pub allow_private_urls: bool,
    /// Independent DVA workers that score each pair (`1`: this process scores alone; more: the
    /// `dva` role runs the consensus over `gata dva-worker` votes).
    pub replicas: u32,
    /// Consumer group of the consensus (`gata-dva-consensus`).
    pub consensus_group: String,
    /// Largest distance from the median vote that still agrees (`0.05`).
    pub tolerance: f64,
    /// How long a pair with a majority of votes waits for the rest (`30s`).
    #[serde(with = "humantime_serde")]
    pub consensus_wait: Duration,
    /// Votes a worker casts before it can be flagged (`20`).
    pub flag_min_votes: u32,
    /// Share of disagreeing votes that flags a worker (`0.5`).
    pub flag_share: f64,
}

/// The DVA's inference engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DvaEngine {
    /// ONNX Runtime when its library is found, else tract (logged, and shown in `/metrics`).
    Auto,
    /// ONNX Runtime only: the DVA does not start without it.
    Onnxruntime,
    /// tract, the pure-Rust engine built into the binary (CPU).
    Tract,
}

/// Where ONNX Runtime runs the DVA's encoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DvaProvider {
    /// ONNX Runtime's CPU execution provider.
    Cpu,
    /// CUDA when the runtime has it and a GPU answers; the CPU otherwise.
    Cuda,
}

impl DvaConfig {
    /// The consumer group of DVA workers in replica slot `slot`.
    pub fn replica_group(&self, slot: u32) -> String {
        format!("{}-replica-{slot}", self.group)
    }
}

impl Default for DvaConfig {
    fn default() -> Self {
        Self {
            group: "gata-dva".into(),
            model_dir: None,
            engine: DvaEngine::Auto,
            onnxruntime: None,
            provider: DvaProvider::Cpu,
            threshold: None,
            head: None,
            batch_size: 16,
            batch_wait: Duration::from_millis(20),
            max_pixels: 40_000_000,
            threads: 2,
            fetch_timeout: Duration::from_secs(10),
            fetch_connect_timeout: Duration::from_secs(3),
            fetch_retries: 2,
            allow_private_urls: false,
            replicas: 1,
            consensus_group: "gata-dva-consensus".into(),
            tolerance: 0.05,
            consensus_wait: Duration::from_secs(30),
            flag_min_votes: 20,
            flag_share: 0.5,
        }
    }
}

/// The rewards processor: which policy, and when an epoch is closed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardsConfig {
    /// A built-in policy (`v1`, `v2`) or a policy file's path (`v1`). The epoch length is the
    /// policy's.
    pub policy: String,
    /// How long after an epoch ends it is closed, for submissions still on their way to the
    /// lake (`10m`). It is closed later while some of its submissions have no score yet.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// How long after its end an epoch waits at most for unscored submissions (`1h`): then it
    /// closes without them (they are logged, counted in `gata_rewards_unscored_total`, and
    /// surface in `gata replay`).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// How often the processor looks for epochs to close (`1m`; epochs last a day and close
    /// after a 10-minute grace, and each look reads the lake).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for RewardsConfig {
    fn default() -> Self {
        Self {
            policy: "v1".into(),
            grace: Duration::from_secs(600),
            max_wait: Duration::from_secs(3600),
            interval: Duration::from_secs(60),
        }
    }
}

/// The mirror role: where every committed table version is copied, and how fast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorConfig {
    /// `file:///abs/dir`, `s3://bucket/prefix` (with the lake's storage options) or
    /// `greenfield://bucket/prefix`; the role needs one.
    pub target: Option<url::Url>,
    /// Time between passes (`10s`).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Bytes per second sent to the target (0: unlimited).
    pub rate_limit_bytes_per_second: u64,
    /// Table versions per table and pass.
    pub versions_per_pass: i64,
    /// A Greenfield target's provider, chain and buyers. The account's private key comes from
    /// the environment only (`GATA_GREENFIELD_PRIVATE_KEY`).
    pub greenfield: GreenfieldConfig,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        Self {
            target: None,
            interval: Duration::from_secs(10),
            rate_limit_bytes_per_second: 0,
            versions_per_pass: 100,
            greenfield: GreenfieldConfig::default(),
        }
    }
}

/// Who may read the objects the mirror creates on Greenfield.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectVisibility {
    /// The owner, and those an object policy grants (the marketplace's buyers).
    #[default]
    Private,
    /// Anyone.
    PublicRead,
}

/// How the mirror reaches Greenfield.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GreenfieldConfig {
    /// The storage provider's endpoint.
    pub sp_endpoint: url::Url,
    /// Who may read the objects created (`private`).
    pub visibility: ObjectVisibility,
    /// Attempts after the first for a failed provider request.
    pub retries: u32,
    /// The chain's REST gateway, for permission transactions (none: no permissions synced).
    pub chain_endpoint: Option<url::Url>,
    /// The chain id (`greenfield_5600-1` testnet, `greenfield_1017-1` mainnet).
    pub chain_id: String,
    /// Buyer principal name → Greenfield account (`0x…`): who gets object policies for what
    /// the marketplace lets them read.
    pub buyers: std::collections::BTreeMap<String, String>,
}

impl Default for GreenfieldConfig {
    fn default() -> Self {
        Self {
            sp_endpoint: url::Url::parse("http://127.0.0.1:9033").expect("a valid URL"),
            visibility: ObjectVisibility::Private,
            retries: 4,
            chain_endpoint: None,
            chain_id: "greenfield_9000-121".into(),
            buyers: std::collections::BTreeMap::new(),
        }
    }
}

impl GataConfig {
    /// Whether this process runs `role`.
    pub fn runs(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The lake root: the configured URL or `<data_dir>/lake` as an absolute `file://` URL.
    pub fn lake_uri(&self) -> Result<url::Url> {
        match &self.lake.uri {
            Some(uri) => Ok(uri.clone()),
            None => {
                let dir = absolute(&self.data_dir.join("lake"))?;
                url::Url::from_file_path(&dir).map_err(|()| InfraError::InvalidConfig {
                    problems: vec![format!("{}: cannot be a lake URL", dir.display())],
                })
            }
        }
    }

    /// Every problem that would stop this configuration from working.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, what: &str| {
            if !ok {
                problems.push(what.to_string());
            }
        };
        check(!self.roles.is_empty(), "roles must name at least one of intake, sink, query, maintenance, scoring, dva");
        check(self.kafka.partitions > 0, "kafka.partitions must be at least 1");
        check(self.kafka.replication_factor > 0, "kafka.replication_factor must be at least 1");
        check(!self.kafka.sink_group.is_empty(), "kafka.sink_group must not be empty");
        check(
            (1..=2_097_151).contains(&self.kafka.consumer_prefetch_kbytes),
            "kafka.consumer_prefetch_kbytes must be 1 to 2097151",
        );
        check(self.ingest.max_body_bytes > 0, "ingest.max_body_bytes must be positive");
        check(self.ingest.max_batch_events > 0, "ingest.max_batch_events must be positive");
        check(self.lake.flush_max_records > 0, "lake.flush_max_records must be positive");
        check(!self.lake.flush_interval.is_zero(), "lake.flush_interval must be positive");
        check(self.lake.queue_records > 0, "lake.queue_records must be positive");
        check(self.lake.flush_max_bytes > 0, "lake.flush_max_bytes must be positive");
        check(self.lake.checkpoint_interval > 0, "lake.checkpoint_interval must be positive");
        check(self.maintenance.target_file_bytes > 0, "maintenance.target_file_bytes must be positive");
        check(!self.maintenance.optimize_interval.is_zero(), "maintenance.optimize_interval must be positive");
        check(
            self.maintenance.vacuum_retention >= Duration::from_secs(3600),
            "maintenance.vacuum_retention must be at least 1h (readers of recent versions keep their files)",
        );
        check(
            self.query.max_rows > 0 && self.query.max_stream_rows > 0 && self.query.max_result_bytes > 0,
            "query.max_rows, query.max_stream_rows and query.max_result_bytes must be positive",
        );
        check(self.query.executor_threads > 0, "query.executor_threads must be positive");
        check((0..=19).contains(&self.background.nice), "background.nice must be 0 to 19");
        check(!self.scoring.group.is_empty(), "scoring.group must not be empty");
        check(self.scoring.queue_records > 0, "scoring.queue_records must be positive");
        check(self.scoring.publish_window > 0, "scoring.publish_window must be positive");
        check(self.scoring.shards > 0, "scoring.shards must be positive");
        check(self.scoring.shard < self.scoring.shards, "scoring.shard must be below scoring.shards");
        check(self.dva.batch_size > 0 && self.dva.threads > 0, "dva.batch_size and dva.threads must be positive");
        check(self.dva.threshold.is_none_or(|t| (-1.0..=1.0).contains(&t)), "dva.threshold must be in [-1, 1]");
        check((1..=15).contains(&self.dva.replicas), "dva.replicas must be 1 to 15");
        check(self.dva.tolerance > 0.0 && self.dva.tolerance <= 2.0, "dva.tolerance must be in (0, 2]");
        check((0.0..1.0).contains(&self.dva.flag_share), "dva.flag_share must be in [0, 1)");
        check(
            self.http.addr.ip().is_loopback() || self.auth.enabled(),
            "http.addr is not loopback: configure auth.principals so the API is not open to the network",
        );
        check(
            self.query.flight_addr.is_none_or(|a| a.ip().is_loopback()) || self.auth.enabled(),
            "query.flight_addr is not loopback: configure auth.principals so Flight SQL is not open to the network",
        );
        check(
            self.http.max_concurrency > 0 && self.http.max_connections > 0,
            "http.max_concurrency and http.max_connections must be positive",
        );
        check(
            !self.http.header_read_timeout.is_zero() && !self.http.stream_timeout.is_zero(),
            "http.header_read_timeout and http.stream_timeout must be positive",
        );
        problems.extend(self.ingest.limits.problems());
        problems.extend(self.auth.problems());
        problems.extend(self.payments.problems());
        problems.extend(self.kafka.problems());
        problems.extend(self.validation.problems());
        problems.extend(self.rate.problems());
        problems.extend(self.background.problems());
        problems
    }
}

/// Makes a path absolute against the current directory without requiring it to exist.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|source| InfraError::Io { path: path.to_path_buf(), source })
}

/// Loads the configuration: defaults < `file` (when given it must exist) < `GATA__A__B`
/// environment variables < `overrides` (the flags that were given), then validates it.
pub fn load(file: Option<&Path>, overrides: &impl Serialize) -> Result<GataConfig> {
    let mut figment = Figment::from(Serialized::defaults(GataConfig::default()));
    if let Some(file) = file {
        if !file.exists() {
            return Err(InfraError::InvalidConfig {
                problems: vec![format!("config file {} does not exist", file.display())],
            });
        }
        figment = figment.merge(Toml::file(file));
    }
    let cfg: GataConfig = figment
        .merge(Env::prefixed("GATA__").split("__"))
        .merge(Serialized::defaults(overrides))
        .extract()
        .map_err(Box::new)?;
    let problems = cfg.problems();
    if problems.is_empty() { Ok(cfg) } else { Err(InfraError::InvalidConfig { problems }) }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Flags {
        data_dir: &'static str,
    }

    #[test]
    fn defaults_are_valid() {
        assert!(GataConfig::default().problems().is_empty());
    }

    #[test]
    fn file_env_and_flags_layer_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gata.toml",
                "data_dir = \"from-file\"\n[lake]\nflush_max_records = 7\n[query]\nmax_rows = 3\n",
            )?;
            jail.set_env("GATA__LAKE__FLUSH_MAX_RECORDS", "9");
            let cfg = load(Some(Path::new("gata.toml")), &Flags { data_dir: "from-flag" }).expect("valid config");
            assert_eq!(cfg.data_dir, PathBuf::from("from-flag"));
            assert_eq!(cfg.lake.flush_max_records, 9);
            assert_eq!(cfg.query.max_rows, 3);
            Ok(())
        });
    }

    #[test]
    fn all_problems_are_reported_together() {
        let mut cfg = GataConfig::default();
        cfg.kafka.partitions = 0;
        cfg.query.max_rows = 0;
        cfg.http.addr = SocketAddr::from(([0, 0, 0, 0], 8080));
        cfg.background.yield_max_backlog = Duration::from_secs(61);
        assert_eq!(cfg.problems().len(), 4, "{:?}", cfg.problems());
        assert!(cfg.problems().iter().any(|p| p == "background.yield_max_backlog must be at most 1m"));
    }

    #[test]
    fn kafka_security_is_checked_whole_and_its_secrets_never_print() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gata.toml",
                "[kafka]\nembedded_users = [{ name = \"gata\", password = \"pw-1\" }]\n\
                 [kafka.security]\nprotocol = \"sasl_plaintext\"\nsasl_mechanism = \"SCRAM-SHA-256\"\n\
                 username = \"gata\"\n",
            )?;
            jail.set_env("GATA__KAFKA__SECURITY__PASSWORD", "pw-1");
            let cfg = load(Some(Path::new("gata.toml")), &serde_json::json!({})).expect("valid");
            assert_eq!(cfg.kafka.security.sasl_mechanism, SaslMechanism::ScramSha256);
            let shown = format!("{cfg:?}");
            assert!(!shown.contains("pw-1"), "{shown}");
            Ok(())
        });
        let mut k = KafkaConfig::default();
        k.security.username = Some("gata".into());
        k.security.ssl_ca_location = Some(PathBuf::from("/no/such/ca.pem"));
        k.embedded_users.push(ScramUser { name: "gata".into(), password: Secret(String::new()) });
        let problems = k.problems().join("\n");
        for expected in
            ["needs a name and a password", "require SCRAM", "no SASL", "not ssl or sasl_ssl", "not a readable file"]
        {
            assert!(problems.contains(expected), "{expected}: {problems}");
        }
        k.security.protocol = SecurityProtocol::SaslPlaintext;
        k.security.sasl_mechanism = SaslMechanism::Plain;
        assert!(k.problems().join("\n").contains("PLAIN sends the password in clear"));
    }

    #[test]
    fn storage_options_take_any_scalar_as_text() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GATA__LAKE__STORAGE_OPTIONS__AWS_ALLOW_HTTP", "true");
            jail.set_env("GATA__LAKE__STORAGE_OPTIONS__AWS_ENDPOINT_URL", "http://127.0.0.1:9000");
            let cfg = load(None, &serde_json::json!({})).expect("valid config");
            let opts = &cfg.lake.storage_options.0;
            let get = |k: &str| opts.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
            assert_eq!(get("aws_allow_http"), Some("true"));
            assert_eq!(get("aws_endpoint_url"), Some("http://127.0.0.1:9000"));
            Ok(())
        });
    }

    #[test]
    fn datafusion_settings_nest_into_dotted_names() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("gata.toml", "[query.datafusion]\nexecution.parquet.pushdown_filters = true\n")?;
            jail.set_env("GATA__QUERY__DATAFUSION__EXECUTION__BATCH_SIZE", "16384");
            let cfg = load(Some(Path::new("gata.toml")), &serde_json::json!({})).expect("valid config");
            let opts = &cfg.query.datafusion.0;
            assert_eq!(opts.get("execution.parquet.pushdown_filters").map(String::as_str), Some("true"));
            assert_eq!(opts.get("execution.batch_size").map(String::as_str), Some("16384"));
            Ok(())
        });
    }

    #[test]
    fn the_kubernetes_config_is_valid_with_its_secret() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/gata.toml");
        figment::Jail::expect_with(|jail| {
            let err = load(Some(&path), &serde_json::json!({})).expect_err("0.0.0.0 without principals");
            assert!(err.to_string().contains("auth.principals"), "{err}");
            let hash = crate::auth::token_hash("a-long-token");
            jail.set_env(
                "GATA__AUTH__PRINCIPALS",
                format!(r#"[{{name="ops",role="operator",token_sha256="{hash}"}}]"#),
            );
            let cfg = load(Some(&path), &serde_json::json!({})).expect("valid with the secret's principal");
            assert!(cfg.auth.authenticator("localhost".into()).principal("a-long-token").is_some());
            assert_eq!((cfg.kafka.partitions, cfg.kafka.replication_factor), (12, 3));
            assert_eq!(cfg.lake.uri.as_ref().map(url::Url::as_str), Some("s3://gata-lake/lake"));
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("gata.toml", "[lake]\nflush_max_recordz = 7\n")?;
            let err = load(Some(Path::new("gata.toml")), &serde_json::json!({})).expect_err("typo");
            assert!(err.to_string().contains("flush_max_recordz"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn secrets_never_print() {
        let mut cfg = GataConfig::default();
        cfg.auth.principals.push(crate::auth::PrincipalConfig {
            name: "ops".into(),
            role: crate::auth::Role::Operator,
            token_sha256: "ab".repeat(32),
            tables: vec![],
            datasets: vec![],
            contributor_id: None,
            address: None,
        });
        cfg.lake.storage_options.0.insert("AWS_SECRET_ACCESS_KEY".into(), "hunter2".into());
        let shown = format!("{cfg:?}");
        assert!(!shown.contains(&"ab".repeat(32)) && !shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("AWS_SECRET_ACCESS_KEY"));
    }
}
