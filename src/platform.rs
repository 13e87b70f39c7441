//! Wiring every role into one process: broker (embedded or external), topics, lake sink,
//! intake and SQL behind one HTTP listener. The same code path serves a laptop and a cluster;
//! only the configuration differs.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use gata_contract::topics;
use gata_infra::{
    broker::EmbeddedBroker,
    config::{GataConfig, Role},
    foreground::Foreground,
    kafka::KafkaClients,
    rate::RateLimits,
    runtime::DedicatedRuntime,
};
use gata_query_api::{Catalog, flight::FlightSql};
use gata_stream_processors::dva::{Output, consensus::run_consensus, run_dva};
use prometheus::Registry;
use rdkafka::producer::FutureProducer;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{http, resolve};

/// How long roles get to finish their work after a stop request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How long start-up waits for the marketplace state to be rebuilt from its log.
const MARKET_REBUILD_WAIT: Duration = Duration::from_secs(120);

/// What a started platform tells its operator.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The HTTP address actually bound.
    pub http: SocketAddr,
    /// `bootstrap.servers` of the broker in use.
    pub bootstrap: String,
    /// Whether the broker is the embedded one.
    pub embedded: bool,
    /// The lake root.
    pub lake: String,
    /// The Arrow Flight SQL address actually bound, when it runs.
    pub flight: Option<SocketAddr>,
}

impl Ready {
    /// Prints the addresses a user needs.
    pub fn print(&self) {
        let kind = if self.embedded { "embedded, log under the data dir" } else { "external" };
        println!("gata is serving");
        println!(
            "  HTTP   http://{}   (POST /v1/chat-turns, /v1/preferences, /v1/image-text-pairs, /v1/sql; GET /v1/tables, /v1/contributors/{{id}}/scores, /review, /review/label, /metrics)",
            self.http
        );
        if let Some(flight) = self.flight {
            println!("  Flight SQL  grpc://{flight}   (ADBC, JDBC, DBeaver)");
        }
        println!("  Kafka  {}   ({kind}; try: kcat -b {} -L)", self.bootstrap, self.bootstrap);
        println!("  Lake   {}", self.lake);
    }
}

/// The Kafka bootstrap servers: `kafka.brokers`, or the embedded broker started over the data
/// directory's log (returned too: it serves while it is kept).
pub async fn bootstrap(cfg: &GataConfig) -> anyhow::Result<(Option<EmbeddedBroker>, String)> {
    Ok(match &cfg.kafka.brokers {
        Some(brokers) => (None, brokers.clone()),
        None => {
            let broker =
                EmbeddedBroker::start_with_users(&cfg.data_dir, cfg.kafka.embedded_listen, &cfg.kafka.embedded_users)
                    .await?;
            let bootstrap = broker.bootstrap();
            (Some(broker), bootstrap)
        }
    })
}

/// Runs every role until `stop` is cancelled or one of them fails; calls `on_ready` once the
/// HTTP listener is bound and the sink is consuming.
pub async fn serve(cfg: GataConfig, stop: CancellationToken, on_ready: impl FnOnce(&Ready)) -> anyhow::Result<()> {
    let registry = Registry::new();
    let (_broker, bootstrap) = bootstrap(&cfg).await?;
    let kafka = KafkaClients::for_config(&bootstrap, &cfg.kafka).await?;
    kafka
        .ensure_topics(&topics::all_topics(), cfg.kafka.partitions, cfg.kafka.replication_factor)
        .await
        .with_context(|| format!("creating topics on {bootstrap}"))?;
    let lake = resolve::lake(&cfg)?;

    let producer: FutureProducer =
        kafka.producer(cfg.ingest.produce_timeout).create().context("creating the intake producer")?;
    let catalog = Arc::new(Catalog::open(lake.clone(), cfg.query.discover_interval).await?);
    let rates = Arc::new(RateLimits::new(&cfg.rate, &registry)?);
    let ingest = cfg
        .runs(Role::Intake)
        .then(|| {
            let chain_id = cfg.auth.wallet.chain_id;
            gata_ingest::IngestState::new(cfg.ingest.clone(), producer.clone(), rates.clone(), &registry, chain_id)
        })
        .transpose()?;
    let query = cfg
        .runs(Role::Query)
        .then(|| gata_query_api::QueryState::new(catalog.clone(), cfg.query.clone(), &registry))
        .transpose()?
        .map(|query| query.with_rate_limits(rates.clone()));
    // The marketplace serves with the query role: its listing tables are SQL views.
    let (query, market) = match query {
        Some(query) => {
            let followed = gata_marketplace::follower::follow(&kafka, cfg.ingest.limits.clone(), stop.child_token())
                .context("following the marketplace log")?;
            // Listing views are planned from this state: serve none from a half-rebuilt one (a
            // grant applied before a revoke in another partition would show revoked rows).
            followed.caught_up(MARKET_REBUILD_WAIT).await.context("rebuilding the marketplace from its log")?;
            let market = gata_marketplace::Marketplace::new(
                followed,
                producer.clone(),
                query.engine().clone(),
                catalog.clone(),
                cfg.ingest.limits.clone(),
            );
            let market = market.with_record_mac(cfg.kafka.record_mac());
            let market = match gata_marketplace::payments::Payments::new(&cfg.payments) {
                Some(payments) => market.with_payments(Arc::new(payments)),
                None => market,
            };
            let query = query.with_views(Arc::new(market.clone()));
            let sharing = gata_marketplace::sharing::Sharing::new(
                market.clone(),
                query.engine().clone(),
                cfg.data_dir.join("sharing"),
                signing_key(),
            );
            (Some(query), Some((market, sharing)))
        }
        None => (None, None),
    };
    let listener =
        tokio::net::TcpListener::bind(cfg.http.addr).await.with_context(|| format!("binding {}", cfg.http.addr))?;
    let auth = cfg.auth.authenticator(format!("localhost:{}", listener.local_addr()?.port()));
    let flight = match (&query, cfg.query.flight_addr) {
        (Some(query), Some(addr)) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding Flight SQL on {addr} (query.flight_addr)"))?;
            Some((listener, FlightSql::new(query.engine().clone(), auth.clone())?))
        }
        _ => None,
    };
    let validation = query
        .as_ref()
        .filter(|_| cfg.validation.enabled)
        .map(|q| {
            let (mac, chain_id) = (cfg.kafka.record_mac(), cfg.auth.wallet.chain_id);
            let (engine, journal) = (q.engine().clone(), cfg.data_dir.join("validation/gold.jsonl"));
            crate::validation::Validation::new(
                cfg.validation.clone(),
                engine,
                producer.clone(),
                mac,
                rates.clone(),
                chain_id,
                &journal,
            )
            .with_context(|| format!("opening the validators' gold journal {}", journal.display()))
        })
        .transpose()?;
    let labelling = query.as_ref().map(|q| {
        let (engine, limits) = (q.engine().clone(), cfg.ingest.limits.clone());
        crate::labelling::Labelling::new(engine, producer.clone(), cfg.kafka.record_mac(), rates.clone(), limits)
    });
    let ops = http::Ops { registry: registry.clone(), producer, catalog, readiness: Default::default() };
    let verifier = market.as_ref().and_then(|(m, _)| Some((m.payments()?.clone(), m.clone())));
    // On a saturated machine the consumers step aside for intake's bursts, and those deriving
    // from the log for the sink's backlog (see `gata_infra::foreground`).
    let foreground = crate::background::ROLES
        .iter()
        .any(|role| cfg.runs(*role))
        .then(|| cfg.background.yield_policy())
        .flatten()
        .map(|policy| Foreground::new(policy, &registry))
        .transpose()?;
    let counted = foreground.clone().filter(|_| cfg.runs(Role::Intake));
    let services = http::Services { ingest, query, market, validation, labelling, foreground: counted };
    let app = http::app(&cfg.http, auth, services, ops);
    let connections = crate::listener::ConnectionMetrics::register(&registry)?;

    let ready = Ready {
        http: listener.local_addr()?,
        bootstrap: bootstrap.clone(),
        embedded: cfg.kafka.brokers.is_none(),
        lake: cfg.lake_uri()?.to_string(),
        flight: flight.as_ref().map(|(l, _)| l.local_addr()).transpose()?,
    };

    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    if let Some(foreground) = &foreground {
        let watch = foreground.clone().watch(stop.child_token());
        tasks.spawn(async move {
            watch.await;
            Ok(())
        });
    }
    // The roles that consume the log run on a runtime of their own, niced when
    // `background.nice` says so (see `background`); a process running none of them has none.
    let background = crate::background::ROLES
        .iter()
        .any(|role| cfg.runs(*role))
        .then(|| crate::background::start(&cfg.background))
        .transpose()?;
    let current = tokio::runtime::Handle::current();
    let bg = background.as_ref().map_or(&current, DedicatedRuntime::handle);
    if let Some((payments, market)) = verifier {
        let stop = stop.child_token();
        tasks.spawn(async move {
            payments.run(market, stop).await;
            Ok(())
        });
    }
    let context = |group: &str| {
        resolve::context(&cfg, resolve::consumer_group(&cfg, group), &kafka, &registry, &stop, foreground.as_ref())
    };
    if cfg.runs(Role::Sink) {
        let sink = gata_stream_processors::run_sink(context(&cfg.kafka.sink_group), cfg.lake.clone(), lake.clone());
        tasks.spawn_on(async move { sink.await.context("lake sink") }, bg);
    }
    if cfg.runs(Role::Scoring) {
        let scoring =
            gata_stream_processors::run_scoring(context(&cfg.scoring.group), resolve::scoring(&cfg), lake.clone());
        tasks.spawn_on(async move { scoring.await.context("scoring") }, bg);
    }
    if cfg.runs(Role::Dva) && cfg.dva.replicas > 1 {
        let (ctx, thresholds) = (context(&cfg.dva.consensus_group), resolve::consensus_thresholds(&cfg)?);
        let consensus = run_consensus(ctx, cfg.dva.clone(), thresholds, lake.clone());
        tasks.spawn_on(async move { consensus.await.context("DVA consensus") }, bg);
    } else if cfg.runs(Role::Dva) {
        // The model loads on the background runtime too, so ONNX Runtime's threads are niced.
        let (ctx, dva, lake) = (context(&cfg.dva.group), cfg.dva.clone(), lake.clone());
        let scorer = async move {
            match resolve::dva_models(&dva).await {
                Ok(models) => run_dva(ctx, dva, Output::Scores, models, Some(lake)).await.context("DVA"),
                // Image-text pairs stay in the log and are scored once the DVA can start.
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "DVA disabled: its model cannot run here");
                    Ok(())
                }
            }
        };
        tasks.spawn_on(scorer, bg);
    }
    if cfg.runs(Role::Rewards) {
        let policy = resolve::policy(&cfg.rewards.policy).context("rewards.policy")?;
        let rewards = gata_stream_processors::run_rewards(
            cfg.rewards.clone(),
            policy,
            lake.clone(),
            registry.clone(),
            stop.child_token(),
        );
        tasks.spawn_on(async move { rewards.await.context("rewards") }, bg);
    }
    if cfg.runs(Role::Mirror) {
        // Built before serving, so a misconfigured mirror stops the start with its reason.
        let market = crate::mirror_cmd::market(&cfg, &kafka, &stop).await?;
        let mirror = crate::mirror_cmd::build(&cfg, lake.clone(), &registry, market).await.context("mirror")?;
        let stop = stop.child_token();
        tasks.spawn_on(
            async move {
                mirror.run(stop).await;
                Ok(())
            },
            bg,
        );
    }
    if cfg.runs(Role::Maintenance) && cfg.maintenance.enabled {
        let (lake, maintenance, stop) = (lake.clone(), cfg.maintenance.clone(), stop.child_token());
        let maintain = gata_lakehouse::maintenance::run_maintenance(lake, maintenance, stop);
        tasks.spawn_on(async move { maintain.await.context("table maintenance") }, bg);
    }
    // The addresses are printed before either listener answers, so whoever waits for
    // `/healthz` finds them already in the output.
    on_ready(&ready);
    if let Some((listener, service)) = flight {
        let flight_stop = stop.child_token();
        tasks.spawn(async move { service.serve(listener, flight_stop).await.context("Flight SQL server") });
    }
    let (http_stop, http_cfg) = (stop.child_token(), cfg.http.clone());
    tasks.spawn(async move {
        crate::listener::serve(listener, app, &http_cfg, connections, http_stop).await.context("HTTP server")
    });

    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = result {
            tracing::error!(error = %format!("{e:#}"), "a role failed; stopping the others");
            first_error.get_or_insert(e);
            stop.cancel();
        }
        if stop.is_cancelled() {
            let drain = async { while tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
                tracing::warn!("roles did not stop within {SHUTDOWN_GRACE:?}; aborting them");
            }
            break;
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Runs only the embedded broker (with the platform's topics) until `stop` is cancelled, for
/// deployments where intake, sinks and SQL run as separate processes on one machine.
pub async fn broker(cfg: GataConfig, stop: CancellationToken) -> anyhow::Result<()> {
    let broker =
        EmbeddedBroker::start_with_users(&cfg.data_dir, cfg.kafka.embedded_listen, &cfg.kafka.embedded_users).await?;
    KafkaClients::configured(broker.bootstrap(), &cfg.kafka)
        .ensure_topics(&topics::all_topics(), cfg.kafka.partitions, cfg.kafka.replication_factor)
        .await?;
    println!("gata broker is serving");
    println!(
        "  Kafka  {}   (log in {}; try: kcat -b {} -L)",
        broker.bootstrap(),
        broker.log_path().display(),
        broker.bootstrap()
    );
    stop.cancelled().await;
    Ok(())
}

/// A query engine over the configured lake, for commands that run without a server.
pub async fn lake_engine(cfg: &GataConfig) -> anyhow::Result<gata_query_api::sql::SqlEngine> {
    let catalog = Arc::new(Catalog::open(resolve::lake(cfg)?, cfg.query.discover_interval).await?);
    Ok(gata_query_api::sql::SqlEngine::new(catalog, cfg.query.clone())?)
}

/// Runs one query against the lake without a server, as the local admin.
pub async fn query_once(cfg: &GataConfig, sql: &str) -> anyhow::Result<gata_query_api::sql::QueryAnswer> {
    let engine = lake_engine(cfg).await?;
    Ok(engine.run(&gata_infra::auth::Principal::local_admin(), sql, Vec::new()).await?)
}

/// A fresh random key for signing Delta Sharing file URLs (the SHA-256 of a new random token):
/// URLs are valid on the process that issued them, for their lifetime.
fn signing_key() -> [u8; 32] {
    let digest = gata_infra::auth::token_hash(&gata_infra::auth::new_token());
    hex::decode(digest).ok().and_then(|bytes| bytes.try_into().ok()).unwrap_or_default()
}
