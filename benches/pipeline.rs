//! Pipeline benchmark (not a test): how fast events move through each stage, next to the raw
//! rate of the same broker on the same data, in one run on one machine.
//!
//! `cargo bench --bench pipeline [-- EVENTS] [stages] [backlog] [mixed]` prints a table (naming
//! sections runs only those; all by default). `stages`:
//! - raw produce: idempotent `acks=all` rdkafka producer into the embedded broker (ceiling of intake)
//! - intake over HTTP: NDJSON batches to `gata serve`, 202 after the broker's ack
//! - raw consume: one rdkafka consumer reading the same records back (ceiling of the sink)
//! - lake sink: the same records into bronze + silver Delta tables, exactly-once (`txn`) on
//!
//! and, with every role of `gata serve` running (separate processes, release binary):
//! - `backlog` drain: the records wait in the log of a stopped intake-only server; then a server
//!   with all default roles starts on it and lands them in bronze, next to a raw consumer (a new
//!   group) reading the same backlog from the same broker
//! - `mixed` load: intake over HTTP into a server with all default roles, next to the same load
//!   into an intake-only server: 500-event NDJSON requests 16 in flight, and single events from
//!   64 clients, with ack latencies and refusals (503); with the consumers stepping aside for
//!   intake (the default) and not, and how long after the load everything is in bronze
//!
//! and `sink` cost: the records wait in a `gata broker` process; a `gata serve --roles sink`
//! process drains them into bronze + silver, next to a raw consumer reading the same backlog.
//! Prints the sink's CPU-seconds per million events (from `/proc`), its peak RSS, how long after
//! its start the first commit landed, and how long one more record then takes to be committed.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use gata_contract::Event;
use gata_contract::topics;
use gata_infra::{
    broker::EmbeddedBroker,
    config::GataConfig,
    kafka::{Idempotence, KafkaClients},
    workload::Workload,
};
use gata_lakehouse::Lake;
use gata_stream_processors::{Context, run_sink};
use rdkafka::{
    Message,
    consumer::{BaseConsumer, Consumer},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use tokio_util::sync::CancellationToken;

struct Row {
    name: &'static str,
    events: usize,
    took: Duration,
    ceiling: Option<usize>,
}

fn rate(events: usize, took: Duration) -> f64 {
    events as f64 / took.as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs bench binaries too; measure only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("pipeline: a benchmark, not a test; run it with `cargo bench --bench pipeline`");
        return Ok(());
    }
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20_000);
    let named: Vec<String> = std::env::args().skip(1).filter(|a| SECTIONS.contains(&a.as_str())).collect();
    let wants = |section: &str| named.is_empty() || named.iter().any(|n| n == section);
    let events: Vec<Event> = Workload::new(42, 500).events(n, 0).into_iter().take(n).collect();
    let turns: Vec<&Event> = events.iter().filter(|e| matches!(e, Event::ChatTurn(_))).collect();
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    let bin = Path::new(env!("CARGO_BIN_EXE_gata"));
    let freshness = if wants("stages") { Some(stages(&dir, &events, &turns, &mut rows).await?) } else { None };
    if wants("backlog") {
        backlog_rows(bin, &dir, &events, &mut rows).await?;
    }
    let loads = if wants("mixed") { mixed(bin, &dir, &turns).await? } else { Vec::new() };
    let sink = if wants("sink") { Some(sink_cost(bin, dir.path(), &events).await?) } else { None };
    print_tables(&rows, &loads, freshness.as_deref());
    if let Some(sink) = sink {
        sink.print();
    }
    Ok(())
}

/// What the benchmark's arguments may name.
const SECTIONS: [&str; 4] = ["stages", "backlog", "mixed", "sink"];

/// Raw produce and consume, the sink alone and intake over HTTP, each next to its ceiling;
/// returns the freshness samples.
async fn stages(
    dir: &tempfile::TempDir,
    events: &[Event],
    turns: &[&Event],
    rows: &mut Vec<Row>,
) -> anyhow::Result<Vec<Duration>> {
    // Raw produce into an embedded broker.
    let broker = EmbeddedBroker::start(&dir.path().join("raw"), "127.0.0.1:0".parse()?).await?;
    let kafka = KafkaClients::new(broker.bootstrap());
    kafka.ensure_topics(&topics::all_topics(), 4, 1).await?;
    let producer: FutureProducer = kafka.producer(Duration::from_secs(30)).create()?;
    let started = Instant::now();
    produce_all(&producer, events, false).await?;
    rows.push(Row {
        name: "raw produce (rdkafka, idempotent, acks=all)",
        events: events.len(),
        took: started.elapsed(),
        ceiling: None,
    });

    // Raw consume of the same records.
    let took = raw_consume(&kafka, "bench-raw", events.len())?;
    rows.push(Row { name: "raw consume (rdkafka)", events: events.len(), took, ceiling: None });

    // The lake sink over the same records, exactly-once on.
    let lake = Lake::new(&format!("file://{}", dir.path().join("lake").display()), &Default::default())?;
    let registry = prometheus::Registry::new();
    let stop = CancellationToken::new();
    let cfg = GataConfig::default();
    let ctx = Context {
        group: "bench-sink".into(),
        kafka: kafka.clone(),
        limits: cfg.ingest.limits.clone(),
        registry: registry.clone(),
        stop: stop.clone(),
        foreground: None,
    };
    let started = Instant::now();
    let sink = run_sink(ctx, cfg.lake.clone(), lake);
    let landed = async {
        while bronze_rows(&registry) < events.len() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = started.elapsed();
        stop.cancel();
        took
    };
    let (sunk, took) = tokio::join!(sink, landed);
    sunk?;
    rows.push(Row {
        name: "lake sink → Delta bronze+silver (exactly-once)",
        events: events.len(),
        took,
        ceiling: Some(1),
    });
    drop(broker);

    // Intake over HTTP into a running `gata serve`.
    // Killed when dropped, so a failed measurement leaves no server behind.
    let server = gata_tests::Gata::start(Path::new(env!("CARGO_BIN_EXE_gata")), &dir.path().join("serve")).await?;
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let bodies: Vec<Vec<u8>> =
        turns.chunks(500).map(|c| c.iter().flat_map(|e| [e.to_json(), b"\n".to_vec()]).flatten().collect()).collect();
    let started = Instant::now();
    let mut inflight = tokio::task::JoinSet::new();
    for body in bodies {
        let (http, url) = (http.clone(), format!("{base}/v1/chat-turns"));
        inflight.spawn(async move {
            http.post(url).header("content-type", "application/x-ndjson").body(body).send().await?.error_for_status()
        });
        while inflight.len() >= 4 {
            inflight.join_next().await.expect("non-empty")??;
        }
    }
    while let Some(r) = inflight.join_next().await {
        r??;
    }
    rows.push(Row {
        name: "intake over HTTP (NDJSON x500, 4 in flight)",
        events: turns.len(),
        took: started.elapsed(),
        ceiling: Some(0),
    });
    let freshness = freshness(&http, &base).await?;
    drop(server);
    Ok(freshness)
}

/// A backlog waiting in the log, drained with every role running, next to a raw consumer.
async fn backlog_rows(
    bin: &Path,
    dir: &tempfile::TempDir,
    events: &[Event],
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let (raw, drained) = backlog(bin, &dir.path().join("backlog"), events, &[]).await?;
    let never = [("GATA__BACKGROUND__YIELD_TO_INTAKE", "false")];
    let (raw_again, drained_never) = backlog(bin, &dir.path().join("backlog-never"), events, &never).await?;
    let at = rows.len();
    rows.push(Row {
        name: "raw consume of a backlog (rdkafka, new group)",
        events: events.len(),
        took: raw,
        ceiling: None,
    });
    rows.push(Row {
        name: "backlog drain, all default roles → bronze",
        events: events.len(),
        took: drained,
        ceiling: Some(at),
    });
    rows.push(Row {
        name: "raw consume of a backlog, again (rdkafka, new group)",
        events: events.len(),
        took: raw_again,
        ceiling: None,
    });
    rows.push(Row {
        name: "backlog drain, all default roles, consumers never step aside → bronze",
        events: events.len(),
        took: drained_never,
        ceiling: Some(at + 2),
    });
    Ok(())
}

/// A server of the mixed load: its name, its `--roles` (every default role when none), its
/// environment.
type MixedRun = (&'static str, Option<&'static str>, &'static [(&'static str, &'static str)]);

/// Mixed load: intake while every other role runs, against intake alone.
async fn mixed(
    bin: &Path,
    dir: &tempfile::TempDir,
    turns: &[&Event],
) -> anyhow::Result<Vec<(&'static str, &'static str, Load)>> {
    let batches: Vec<Vec<u8>> =
        turns.chunks(500).map(|c| c.iter().flat_map(|e| [e.to_json(), b"\n".to_vec()]).flatten().collect()).collect();
    // A third of the chat turns (at least 5 000) as single events: at 10 000 a second, long
    // enough for the other roles to be busy while they arrive.
    let singles: Vec<Vec<u8>> = turns.iter().take((turns.len() / 3).max(5000)).map(|e| e.to_json()).collect();
    let mut loads = Vec::new();
    // The consumers stepping aside for intake's bursts (the default) and not, side by side.
    let runs: [MixedRun; 3] = [
        ("intake only", Some("intake"), &[]),
        ("all default roles", None, &[]),
        ("all default roles, consumers never step aside", None, &[("GATA__BACKGROUND__YIELD_TO_INTAKE", "false")]),
    ];
    for (run, (name, roles, env)) in runs.into_iter().enumerate() {
        for (shape, bodies, in_flight) in
            [("NDJSON x500, 16 in flight", &batches, 16), ("single events, 64 clients", &singles, 64)]
        {
            let data = dir.path().join(format!("mixed-{run}-{in_flight}"));
            let args: Vec<&str> = roles.map(|r| vec!["--roles", r]).unwrap_or_default();
            let server = gata_tests::Gata::start_with(bin, &data, gata_tests::free_port(), &args, env).await?;
            settle(server.pid()).await?;
            let cpu_before = cpu_time(server.pid())?;
            let mut load = http_load(&server.base, bodies, in_flight).await?;
            load.server_cpu = cpu_time(server.pid())? - cpu_before;
            if roles.is_none() {
                // What stepping aside costs: how long after the load everything is in bronze.
                let (api, ended) = (server.client(), Instant::now());
                while api.count("SELECT COUNT(*) AS n FROM events").await.unwrap_or(0) < load.events as u64 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                load.landed = Some(ended.elapsed());
            }
            loads.push((name, shape, load));
        }
    }
    Ok(loads)
}

/// Waits until the server at `pid` has finished starting (its roles join their groups, the DVA
/// loads its model): under 5% of a core over half a second, or 20 s at most. The load then meets
/// a server in its steady state, as in production.
async fn settle(pid: u32) -> anyhow::Result<()> {
    const WINDOW: Duration = Duration::from_millis(500);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = cpu_time(pid)?;
        tokio::time::sleep(WINDOW).await;
        if (cpu_time(pid)? - before) * 20 < WINDOW || Instant::now() >= deadline {
            return Ok(());
        }
    }
}

/// Prints the measured sections as Markdown tables.
fn print_tables(rows: &[Row], loads: &[(&str, &str, Load)], freshness: Option<&[Duration]>) {
    println!("\n| stage | events | seconds | events/s | vs ceiling |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        let vs = r.ceiling.map_or("ceiling".to_string(), |c| {
            format!(
                "{:.2}x of {}",
                rate(r.events, r.took) / rate(rows[c].events, rows[c].took),
                rows[c].name.split(' ').take(2).collect::<Vec<_>>().join(" ")
            )
        });
        println!("| {} | {} | {:.2} | {:.0} | {vs} |", r.name, r.events, r.took.as_secs_f64(), rate(r.events, r.took));
    }
    println!(
        "\n| mixed load: intake over HTTP | roles running | events | events/s | p50 / p99 ack ms | refused (503) | server CPU µs/event | vs intake only | all in bronze after the load, ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, shape, load) in loads {
        let alone = loads.iter().find(|(n, s, _)| *n == "intake only" && s == shape).map(|(_, _, l)| l);
        let vs = alone.map_or(String::new(), |a| format!("{:.2}x", load.rate() / a.rate()));
        println!(
            "| {shape} | {name} | {} | {:.0} | {:.0} / {:.0} | {} | {:.0} | {vs} | {} |",
            load.events,
            load.rate(),
            load.percentile(0.5),
            load.percentile(0.99),
            load.refused,
            load.server_cpu.as_secs_f64() * 1e6 / load.events.max(1) as f64,
            load.landed.map_or(String::new(), |d| format!("{:.0}", d.as_secs_f64() * 1000.0))
        );
    }
    let Some(freshness) = freshness else { return };
    let pct = |p: f64| freshness[((freshness.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "\n| freshness: 202 → visible in SQL, under a steady {STEADY_RATE} events/s | samples | p50 ms | p99 ms |"
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| single chat turns over HTTP, default flush policy | {} | {:.0} | {:.0} |",
        freshness.len(),
        pct(0.5),
        pct(0.99)
    );
}

/// Background load for the freshness measurement, in events per second.
const STEADY_RATE: u64 = 100;

/// Under a steady background load, the time from a 202 to the event being visible in SQL, for
/// a sample of single events (fresh ones, never sent before), sorted.
async fn freshness(http: &reqwest::Client, base: &str) -> anyhow::Result<Vec<Duration>> {
    let events = Workload::new(7, 200).events(3000, 0);
    let turns: Vec<Vec<u8>> = events.iter().filter(|e| matches!(e, Event::ChatTurn(_))).map(Event::to_json).collect();
    let (background, samples) = turns.split_at(turns.len().saturating_sub(40));
    let stop = CancellationToken::new();
    let load = {
        let (http, url, stop) = (http.clone(), format!("{base}/v1/chat-turns"), stop.clone());
        let background = background.to_vec();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / STEADY_RATE));
            for body in background {
                tokio::select! { _ = stop.cancelled() => break, _ = tick.tick() => {} }
                let _ = http.post(&url).header("content-type", "application/json").body(body).send().await;
            }
        })
    };
    let mut latencies = Vec::with_capacity(samples.len());
    for body in samples {
        let id =
            serde_json::from_slice::<serde_json::Value>(body)?["event_id"].as_str().unwrap_or_default().to_string();
        http.post(format!("{base}/v1/chat-turns"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?
            .error_for_status()?;
        let accepted = Instant::now();
        let sql = serde_json::json!({ "sql": format!("SELECT COUNT(*) AS n FROM chat_turns WHERE event_id = '{id}'") });
        loop {
            let answer: serde_json::Value = http.post(format!("{base}/v1/sql")).json(&sql).send().await?.json().await?;
            if answer["rows"][0]["n"] == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        latencies.push(accepted.elapsed());
    }
    stop.cancel();
    load.await?;
    latencies.sort();
    Ok(latencies)
}

/// Most records awaiting their acknowledgement (librdkafka's queue holds 100 000 by default).
const MAX_IN_FLIGHT: usize = 50_000;

/// Produces every event to its intake topic, keyed by contributor (with the schema header
/// intake writes when `schema_header`), and waits for every acknowledgement.
async fn produce_all(producer: &FutureProducer, events: &[Event], schema_header: bool) -> anyhow::Result<()> {
    let mut acks: std::collections::VecDeque<rdkafka::producer::DeliveryFuture> =
        std::collections::VecDeque::with_capacity(MAX_IN_FLIGHT);
    for e in events {
        let (payload, schema) = (e.to_json(), e.kind().schema_name());
        let mut rec = FutureRecord::to(topics::intake_topic(e.kind())).key(e.contributor_id()).payload(&payload);
        if schema_header {
            rec = rec.headers(
                OwnedHeaders::new().insert(Header { key: topics::SCHEMA_HEADER, value: Some(schema.as_str()) }),
            );
        }
        if acks.len() >= MAX_IN_FLIGHT
            && let Some(oldest) = acks.pop_front()
        {
            oldest.await?.map_err(|(e, _)| e)?;
        }
        acks.push_back(producer.send_result(rec).map_err(|(e, _)| e)?);
    }
    for ack in acks {
        ack.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Fills the log of an intake-only server at `data` with `events` (raw producer, with the
/// schema header intake writes), reads them back with a new consumer group, stops the server,
/// then starts one with every default role (and `env`) on the same data and waits until bronze
/// holds them all. Returns (raw consume time, drain time from the server's start).
async fn backlog(
    bin: &Path,
    data: &Path,
    events: &[Event],
    env: &[(&str, &str)],
) -> anyhow::Result<(Duration, Duration)> {
    let port = gata_tests::free_port();
    let intake = gata_tests::Gata::start_with(bin, data, port, &["--roles", "intake"], &[]).await?;
    let bootstrap = intake.kafka_bootstrap().ok_or_else(|| anyhow::anyhow!("no Kafka address printed"))?;
    let kafka = KafkaClients::connect(bootstrap, Idempotence::Auto).await?;
    let producer: FutureProducer = kafka.producer(Duration::from_secs(60)).create()?;
    produce_all(&producer, events, true).await?;
    let raw = raw_consume(&kafka, "bench-backlog-raw", events.len())?;
    drop(intake);
    let started = Instant::now();
    let server = gata_tests::Gata::start_with(bin, data, port, &[], env).await?;
    let api = server.client();
    while api.count("SELECT COUNT(*) AS n FROM events").await.unwrap_or(0) < events.len() as u64 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((raw, started.elapsed()))
}

/// Reads `n` records of the intake topics with a new consumer in `group`; returns the time taken.
fn raw_consume(kafka: &KafkaClients, group: &str, n: usize) -> anyhow::Result<Duration> {
    let consumer: BaseConsumer = kafka.consumer(group).create()?;
    let names: Vec<&str> = gata_contract::EventKind::ALL.into_iter().map(topics::intake_topic).collect();
    consumer.subscribe(&names)?;
    let started = Instant::now();
    let mut seen = 0;
    while seen < n {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            seen += usize::from(m?.payload().is_some());
        }
    }
    Ok(started.elapsed())
}

/// What an HTTP load saw.
struct Load {
    events: usize,
    took: Duration,
    /// Ack latency of every answered request, sorted.
    acks: Vec<Duration>,
    refused: usize,
    /// CPU time (user + system) the server process spent while the load ran.
    server_cpu: Duration,
    /// How long after the load every accepted event was in bronze (servers with a sink).
    landed: Option<Duration>,
}

impl Load {
    fn rate(&self) -> f64 {
        rate(self.events, self.took)
    }

    /// Counts one request's answer: (status, events, ack latency).
    fn settle(&mut self, (status, events, ack): (reqwest::StatusCode, usize, Duration)) {
        if status.as_u16() == 503 {
            self.refused += 1;
        } else {
            self.events += events;
            self.acks.push(ack);
        }
    }

    fn percentile(&self, p: f64) -> f64 {
        self.acks
            .get(((self.acks.len().saturating_sub(1)) as f64 * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// Posts every body (an NDJSON batch, or one event) to `/v1/chat-turns` of `base`, `in_flight` at
/// a time; counts the events of accepted requests and the refused (503) requests.
async fn http_load(base: &str, bodies: &[Vec<u8>], in_flight: usize) -> anyhow::Result<Load> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    let mut load = Load {
        events: 0,
        took: Duration::ZERO,
        acks: Vec::new(),
        refused: 0,
        server_cpu: Duration::ZERO,
        landed: None,
    };
    for body in bodies {
        let events = body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
        let (http, url, body) = (http.clone(), format!("{base}/v1/chat-turns"), body.clone());
        let content_type = if events > 1 { "application/x-ndjson" } else { "application/json" };
        running.spawn(async move {
            let sent = Instant::now();
            let resp = http.post(url).header("content-type", content_type).body(body).send().await?;
            let status = resp.status();
            if !status.is_success() && status.as_u16() != 503 {
                anyhow::bail!("{status}: {}", resp.text().await.unwrap_or_default());
            }
            anyhow::Ok((status, events, sent.elapsed()))
        });
        while running.len() >= in_flight {
            load.settle(running.join_next().await.expect("non-empty")??);
        }
    }
    while let Some(r) = running.join_next().await {
        load.settle(r??);
    }
    load.took = started.elapsed();
    load.acks.sort();
    Ok(load)
}

/// Rows the sink has committed to the bronze table, from its metrics.
fn bronze_rows(registry: &prometheus::Registry) -> usize {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "gata_sink_rows_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.value() == "events"))
        .map(|m| m.get_counter().get_value() as usize)
        .sum()
}

/// What the lake sink costs, in a process of its own, next to a raw consumer of the same backlog.
struct SinkCost {
    events: usize,
    bytes_per_event: f64,
    raw: Duration,
    raw_cpu: Duration,
    drained: Duration,
    cpu: Duration,
    peak_rss_kb: u64,
    first_commit: Duration,
    record_to_commit: Duration,
}

/// Targets of the sink's cost (issue 23), printed beside the measurement.
const SINK_TARGETS: &str = "target: <= 15 CPU-s per 1M events, <= 150 MB peak RSS, first commit <= 1 s";

impl SinkCost {
    fn print(&self) {
        let per_million = |cpu: Duration| cpu.as_secs_f64() * 1e6 / self.events as f64;
        println!(
            "\n| sink cost ({} events of {:.0} B, backlog in `gata broker`) | seconds | events/s | CPU-s per 1M events | peak RSS MB | first commit after start ms | one record → committed ms |",
            self.events, self.bytes_per_event
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        println!(
            "| raw consume (rdkafka, in the bench process) | {:.2} | {:.0} | {:.1} | | | |",
            self.raw.as_secs_f64(),
            rate(self.events, self.raw),
            per_million(self.raw_cpu)
        );
        println!(
            "| `gata serve --roles sink` → bronze + silver, exactly-once | {:.2} | {:.0} | {:.1} ({:.1}x raw) | {:.0} | {:.0} | {:.0} |",
            self.drained.as_secs_f64(),
            rate(self.events, self.drained),
            per_million(self.cpu),
            self.cpu.as_secs_f64() / self.raw_cpu.as_secs_f64().max(1e-9),
            self.peak_rss_kb as f64 / 1024.0,
            self.first_commit.as_secs_f64() * 1000.0,
            self.record_to_commit.as_secs_f64() * 1000.0
        );
        println!("\n{SINK_TARGETS}");
    }
}

/// Fills a `gata broker` process with `events`, reads them back with a raw consumer (its CPU
/// measured on this process), then drains them with a sink-only `gata serve` and measures it;
/// once drained, produces one more record and times its commit.
async fn sink_cost(bin: &Path, dir: &Path, events: &[Event]) -> anyhow::Result<SinkCost> {
    let broker = gata_tests::Broker::start(bin, &dir.join("sink-broker")).await?;
    let kafka = KafkaClients::connect(&broker.bootstrap, Idempotence::Auto).await?;
    kafka.ensure_topics(&topics::all_topics(), 4, 1).await?;
    let producer: FutureProducer = kafka.producer(Duration::from_secs(60)).create()?;
    produce_all(&producer, events, true).await?;
    let bytes: usize = events.iter().map(|e| e.to_json().len()).sum();
    let before = cpu_time(std::process::id())?;
    let raw = raw_consume(&kafka, "bench-sink-raw", events.len())?;
    let raw_cpu = cpu_time(std::process::id())? - before;

    let started = Instant::now();
    let args = ["--roles", "sink", "--brokers", broker.bootstrap.as_str()];
    let sink = gata_tests::Gata::start_with(bin, &dir.join("sink"), gata_tests::free_port(), &args, &[]).await?;
    let http = reqwest::Client::new();
    let mut first_commit = None;
    loop {
        let rows = sink_rows(&http, &sink.base).await?;
        if rows > 0 {
            first_commit.get_or_insert_with(|| started.elapsed());
        }
        if rows >= events.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = started.elapsed();
    let (cpu, peak_rss_kb) = (cpu_time(sink.pid())?, peak_rss_kb(sink.pid())?);

    let one = Workload::new(43, 10).events(1, 0);
    let sent = Instant::now();
    produce_all(&producer, &one[..1], true).await?;
    while sink_rows(&http, &sink.base).await? <= events.len() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(SinkCost {
        events: events.len(),
        bytes_per_event: bytes as f64 / events.len() as f64,
        raw,
        raw_cpu,
        drained,
        cpu,
        peak_rss_kb,
        first_commit: first_commit.unwrap_or(drained),
        record_to_commit: sent.elapsed(),
    })
}

/// Rows a sink process has committed to bronze, from its `/metrics`.
async fn sink_rows(http: &reqwest::Client, base: &str) -> anyhow::Result<usize> {
    let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
    Ok(gata_tests::metric(&metrics, "gata_sink_rows_total{table=\"events\"}").unwrap_or(0.0) as usize)
}

/// User + system CPU time of process `pid`, from `/proc/<pid>/stat` (in USER_HZ ticks, 100 per
/// second on Linux).
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name: state is the 1st, utime the 12th, stime the 13th.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| {
        fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or_else(|| anyhow::anyhow!("/proc/{pid}/stat: {stat}"))
    };
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// Peak resident set size of process `pid` in kB (`VmHWM` of `/proc/<pid>/status`).
fn peak_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:")?.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))
}
