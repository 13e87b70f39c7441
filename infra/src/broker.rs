//! The embedded Kafka-protocol broker: tansu, in-process, with its log in SQLite under the
//! data directory.
//!
//! It is a real broker on a real TCP port, so the platform's own clients (rdkafka) and outside
//! tools (kcat, kafka-console-consumer) talk to it exactly as to a production cluster. Records
//! are in SQLite (WAL) when the broker acknowledges them, so an acknowledged record survives a
//! SIGKILL of the whole process. tansu has no public shutdown: dropping [`EmbeddedBroker`]
//! aborts its task, and SQLite's journal keeps what was committed.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    time::Duration,
};

use tansu_broker::{broker::Broker, coordinator::group::administrator::Controller};
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
use url::Url;

use crate::{InfraError, Result, config::absolute};

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
        let dir = absolute(&data_dir.join("broker"))?;
        std::fs::create_dir_all(&dir).map_err(|source| InfraError::Io { path: dir.clone(), source })?;
        let db = dir.join("gata.db");
        let addr = resolve_port(listen)?;
        let broker_err = |message: String| InfraError::Broker { message };
        let listener = Url::parse(&format!("tcp://{addr}")).map_err(|e| broker_err(e.to_string()))?;
        // tansu joins the URL path onto the working directory after stripping one leading '/',
        // so an absolute path needs a second slash to stay absolute.
        let storage = Url::parse(&format!("sqlite:///{}", db.display())).map_err(|e| broker_err(e.to_string()))?;

        let mut broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(1)
            .cluster_id(EMBEDDED_CLUSTER_ID)
            .incarnation_id(uuid::Uuid::now_v7())
            .advertised_listener(listener.clone())
            .storage(storage)
            .listener(listener)
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
