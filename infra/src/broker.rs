//! The embedded Kafka-protocol broker: tansu, in-process, with its log in SQLite under the
//! data directory.
//!
//! It is a real broker on a real TCP port, so the platform's own clients (rdkafka) and outside
//! tools (kcat, kafka-console-consumer) talk to it exactly as to a production cluster. Records
//! are in SQLite (WAL) when the broker acknowledges them, so an acknowledged record survives a
//! SIGKILL of the whole process. tansu has no public shutdown: dropping [`EmbeddedBroker`]
//! aborts its task, and SQLite's journal keeps what was committed.
//!
//! With SCRAM users configured (`kafka.embedded_users`) it serves only clients that
//! authenticate as one of them, with SCRAM-SHA-256 or SCRAM-SHA-512 (tansu's SASL, patched to
//! refuse PLAIN: `vendor/tansu-auth/PATCHES.md`). The log stores each user's salted SCRAM keys,
//! never the password; a user taken out of the configuration is deleted at the next start.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    time::Duration,
};

use tansu_broker::{broker::Broker, coordinator::group::administrator::Controller};
use tansu_sans_io::ScramMechanism;
use tansu_storage::{ScramCredential, Storage, StorageContainer};
use tokio::task::JoinHandle;
use url::Url;

use crate::{
    InfraError, Result,
    config::{ScramUser, absolute},
    scram::{ITERATIONS, ScramHash, StoredCredential},
};

/// The cluster id the embedded broker (and `gata broker`) reports; clients use it to recognise a
/// tansu broker and adapt to what it does not implement (see [`crate::kafka::Idempotence`]).
pub const EMBEDDED_CLUSTER_ID: &str = "gata";

/// The running embedded broker. Dropping it stops the broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    db: PathBuf,
    task: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts the broker with its log in `<data_dir>/broker/gata.db`, listening on `listen`
    /// (port 0 picks a free port), and waits until it accepts connections.
    pub async fn start(data_dir: &Path, listen: SocketAddr) -> Result<Self> {
        Self::start_with_users(data_dir, listen, &[]).await
    }

    /// Starts the broker as [`EmbeddedBroker::start`] does; with `users`, it serves only
    /// clients that authenticate as one of them with SCRAM.
    pub async fn start_with_users(data_dir: &Path, listen: SocketAddr, users: &[ScramUser]) -> Result<Self> {
        let dir = absolute(&data_dir.join("broker"))?;
        std::fs::create_dir_all(&dir).map_err(|source| InfraError::Io { path: dir.clone(), source })?;
        let db = dir.join("gata.db");
        let addr = resolve_port(listen)?;
        let broker_err = |message: String| InfraError::Broker { message };
        let listener = Url::parse(&format!("tcp://{addr}")).map_err(|e| broker_err(e.to_string()))?;
        // tansu joins the URL path onto the working directory after stripping one leading '/',
        // so an absolute path needs a second slash to stay absolute.
        let storage = Url::parse(&format!("sqlite:///{}", db.display())).map_err(|e| broker_err(e.to_string()))?;

        let started_listener = listener.clone();
        let mut broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(1)
            .cluster_id(EMBEDDED_CLUSTER_ID)
            .incarnation_id(uuid::Uuid::now_v7())
            .advertised_listener(listener.clone())
            .storage(storage.clone())
            .listener(listener)
            .authentication(!users.is_empty())
            .silent(true)
            .build()
            .await
            .map_err(|e| broker_err(format!("{e:?}")))?;

        let task = tokio::spawn(async move {
            if let Err(e) = broker.serve(tokio::time::Instant::now()).await {
                tracing::error!(error = ?e, "embedded broker stopped");
            }
        });
        let started = Self { addr, db, task };
        started.wait_until_listening(Duration::from_secs(20)).await?;
        // Beside the running broker: a second engine opened on the log before the broker's
        // leaves the file locked while its task winds down. gata's own clients start after this
        // returns; a user removed from the configuration keeps its old credential for the few
        // milliseconds between the listener opening and this deletion.
        provision_users(&dir, &storage, &started_listener, users).await?;
        tracing::info!(%addr, db = %started.db.display(), "embedded Kafka broker listening");
        Ok(started)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The SQLite file holding the broker's log.
    pub fn log_path(&self) -> &Path {
        &self.db
    }

    async fn wait_until_listening(&self, within: Duration) -> Result<()> {
        let end = tokio::time::Instant::now() + within;
        loop {
            if self.task.is_finished() {
                return Err(InfraError::Broker {
                    message: format!("stopped during start-up (is {} free?)", self.addr),
                });
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > end {
                return Err(InfraError::Broker { message: format!("not listening on {} after {within:?}", self.addr) });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The file naming the SCRAM users the log holds credentials of (names only).
const USER_ROSTER: &str = "scram-users.json";

/// Stores a fresh SCRAM credential (new salt, both mechanisms) of every user in `users`, and
/// deletes those of users provisioned before and no longer configured.
async fn provision_users(dir: &Path, storage: &Url, listener: &Url, users: &[ScramUser]) -> Result<()> {
    let roster = dir.join(USER_ROSTER);
    let io = |source| InfraError::Io { path: roster.clone(), source };
    let before: Vec<String> = match std::fs::read(&roster) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| InfraError::Broker {
            message: format!("{} is not a JSON list of user names: {e}", roster.display()),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(e)),
    };
    if before.is_empty() && users.is_empty() {
        return Ok(());
    }
    let broker_err = |what: &str, e: tansu_storage::Error| InfraError::Broker { message: format!("{what}: {e:?}") };
    let store = StorageContainer::builder()
        .cluster_id(EMBEDDED_CLUSTER_ID)
        .node_id(1)
        .advertised_listener(listener.clone())
        .storage(storage.clone())
        .build()
        .await
        .map_err(|e| broker_err("opening the broker's log for its users", e))?;
    let mechanisms = [(ScramMechanism::Scram256, ScramHash::Sha256), (ScramMechanism::Scram512, ScramHash::Sha512)];
    for gone in before.iter().filter(|name| !users.iter().any(|u| &u.name == *name)) {
        for (mechanism, _) in mechanisms {
            store.delete_user_scram_credential(gone, mechanism).await.map_err(|e| broker_err("deleting a user", e))?;
        }
        tracing::info!(user = %gone, "embedded broker user removed");
    }
    for user in users {
        let salt = uuid::Uuid::new_v4().into_bytes();
        for (mechanism, hash) in mechanisms {
            let c = StoredCredential::new(hash, &user.password.0, &salt, ITERATIONS);
            let credential = ScramCredential {
                salt: c.salt.into(),
                iterations: ITERATIONS as i32,
                stored_key: c.stored_key.into(),
                server_key: c.server_key.into(),
            };
            store
                .upsert_user_scram_credential(&user.name, mechanism, credential)
                .await
                .map_err(|e| broker_err("storing a user's credential", e))?;
        }
    }
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    std::fs::write(&roster, serde_json::to_vec(&names).unwrap_or_default()).map_err(io)
}

/// tansu must advertise a known port: port 0 is resolved to a free one here.
fn resolve_port(listen: SocketAddr) -> Result<SocketAddr> {
    if listen.port() != 0 {
        return Ok(listen);
    }
    let probe = TcpListener::bind(listen)
        .map_err(|source| InfraError::Io { path: PathBuf::from(listen.to_string()), source })?;
    probe.local_addr().map_err(|source| InfraError::Io { path: PathBuf::from(listen.to_string()), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn keeps_its_log_under_the_data_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = EmbeddedBroker::start(dir.path(), "127.0.0.1:0".parse().expect("addr")).await.expect("starts");
        assert!(
            broker.log_path().starts_with(dir.path().canonicalize().expect("canon"))
                || broker.log_path().starts_with(dir.path())
        );
        assert!(broker.log_path().exists(), "{} missing", broker.log_path().display());
        assert!(tokio::net::TcpStream::connect(broker.bootstrap()).await.is_ok());
    }
}
