//! The HTTP connection loop: what `axum::serve` does, plus the bounds a public listener needs.
//!
//! - at most `http.max_connections` open connections; past it a new one is closed at once
//!   (counted in `gata_http_connections_refused_total`);
//! - a client has `http.header_read_timeout` to send each request's headers, which is also how
//!   long a kept-alive connection may sit idle, so slow-headers clients (slowloris) cannot pin
//!   connections;
//! - on `stop`, no new connection is accepted and open ones finish their request and close.

use std::{io, sync::Arc, time::Duration};

use axum::Router;
use gata_infra::config::HttpConfig;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

/// Connection counters on `/metrics`.
#[derive(Clone)]
pub struct ConnectionMetrics {
    open: IntGauge,
    refused: IntCounter,
}

impl ConnectionMetrics {
    /// Registers the gauges on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let open = IntGauge::new("gata_http_connections_open", "HTTP connections open now")?;
        let refused = IntCounter::new(
            "gata_http_connections_refused_total",
            "HTTP connections closed on accept because http.max_connections were open",
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(Self { open, refused })
    }
}

/// How long open connections get to finish after `stop`.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` within `cfg`'s connection bounds until `stop`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cfg: &HttpConfig,
    metrics: ConnectionMetrics,
    stop: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1.timer(TokioTimer::new()).header_read_timeout(Some(cfg.header_read_timeout)).keep_alive(true);
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: back off instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.refused.inc();
            tracing::debug!(%peer, "connection refused: http.max_connections are open");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let (builder, stop, open) = (http1.clone(), stop.clone(), metrics.open.clone());
        connections.spawn(async move {
            let _slot = slot;
            open.inc();
            let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_end(result),
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    log_end(conn.await);
                }
            }
            open.dec();
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(after = ?DRAIN, left = connections.len(), "closing HTTP connections that did not finish");
    }
    Ok(())
}

fn log_end(result: hyper::Result<()>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}
