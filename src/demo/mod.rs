//! `gata demo`: serve, load a realistic generated workload through the public HTTP API, wait
//! until the lake shows all of it, then report what each kind of user sees: the analyst's SQL,
//! the DVA's verdicts, the marketplace, and the operator's closed epochs, proof and replay.
//! The terminal shows the report; logs go to a file under the data directory.

mod audit;
mod market;
mod report;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use gata_contract::{Event, EventKind};
use gata_infra::{config::GataConfig, workload::Workload};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use self::{
    audit::shown,
    market::{DEMO_BUYER, DEMO_LISTING},
    report::{print_table, wait_for},
};
use crate::{Flags, platform};

/// Events per NDJSON request.
const BATCH: usize = 200;

/// `gata demo` options.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub flags: Flags,
    /// Exit once the workload has landed instead of serving until Ctrl-C.
    #[arg(long)]
    once: bool,
    /// Chat turns to generate (most get a preference).
    #[arg(long, default_value_t = 600)]
    turns: usize,
    /// Image-text pairs to generate.
    #[arg(long, default_value_t = 150)]
    images: usize,
    /// Contributors in the crowd (about 1 in 12 bots and spammers).
    #[arg(long, default_value_t = 120)]
    contributors: usize,
    /// Seed of the workload (default: from the clock, so reruns add new data).
    #[arg(long)]
    seed: Option<u64>,
    /// Bearer token of an operator or admin, when `auth.principals` are configured.
    #[arg(long, env = "GATA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the logs here instead of writing them to `<data_dir>/gata-demo.log`.
    #[arg(long)]
    pub verbose: bool,
}

/// An example submission, as a client sends it (`examples/chat_turn.json`).
const EXAMPLE_CHAT_TURN: &str = include_str!("../../examples/chat_turn.json");

/// Queries shown after the load, with what they answer.
const SAMPLES: [(&str, &str); 5] = [
    (
        "What landed",
        "SELECT 'chat_turns' AS table_name, COUNT(*) AS row_count FROM chat_turns UNION ALL SELECT 'preferences', COUNT(*) FROM preferences UNION ALL SELECT 'image_text_pairs', COUNT(*) FROM image_text_pairs UNION ALL SELECT 'events (bronze)', COUNT(*) FROM events ORDER BY table_name",
    ),
    (
        "Which model wins preferences",
        "SELECT r['model'] AS model, COUNT(*) AS wins FROM (SELECT p.chosen_response_id, unnest(t.responses) AS r FROM preferences p JOIN chat_turns t ON p.turn_id = t.turn_id) WHERE r['response_id'] = chosen_response_id GROUP BY 1 ORDER BY wins DESC",
    ),
    (
        "Most repetitive contributors (bots ask one prompt over and over)",
        "SELECT contributor_id, COUNT(*) AS turns, COUNT(DISTINCT prompt) AS distinct_prompts FROM chat_turns GROUP BY 1 ORDER BY distinct_prompts * 1.0 / turns ASC, turns DESC LIMIT 5",
    ),
    (
        "Quality verdicts of the scoring processor",
        "SELECT subject_kind, verdict, COUNT(*) AS submissions, ROUND(AVG(score), 3) AS mean_score FROM quality_scores GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    (
        "Why submissions were rejected",
        "SELECT r['code'] AS reason, COUNT(*) AS submissions FROM (SELECT unnest(reasons) AS r FROM quality_scores WHERE verdict = 'reject') GROUP BY 1 ORDER BY submissions DESC, reason LIMIT 8",
    ),
];

pub async fn run(mut cfg: GataConfig, args: DemoArgs, stop: CancellationToken) -> anyhow::Result<()> {
    if cfg.auth.enabled() && args.token.is_none() {
        bail!("auth.principals are configured: pass an operator's token with --token or GATA_TOKEN");
    }
    if !args.verbose {
        let log = cfg.data_dir.join("gata-demo.log");
        gata_infra::telemetry::init_logging_to_file(gata_infra::telemetry::DEFAULT_FILTER, &log)
            .with_context(|| format!("opening the log file {}", log.display()))?;
        println!("Logs go to {} (--verbose prints them here).", shown(&log));
    }
    audit::short_epochs(&mut cfg);
    // Purchases are paid on a loopback chain unless a chain is configured.
    let chain = match cfg.payments.chain_rpc {
        None => Some(market::DemoChain::start(&mut cfg.payments).await?),
        Some(_) => None,
    };
    let token = args.token.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut server = tokio::spawn(platform::serve(cfg.clone(), stop.clone(), move |ready| {
        ready.print();
        let _ = ready_tx.send(ready.clone());
    }));
    let ready = tokio::select! {
        ready = ready_rx => match ready {
            Ok(ready) => ready,
            // The server dropped the sender as it failed: its own error says why (a port in use).
            Err(_) => {
                (&mut server).await??;
                bail!("the platform stopped before it was ready")
            }
        },
        result = &mut server => { result??; bail!("the platform stopped before it was ready") }
    };
    // Pooled connections are dropped before the server's idle keep-alive limit closes them, so
    // a request never goes out on a connection that is being closed.
    let http = reqwest::Client::builder()
        .pool_idle_timeout(cfg.http.header_read_timeout / 2)
        .build()
        .context("building the demo's HTTP client")?;
    let api = Api { http, base: format!("http://{}", ready.http), token };
    let loaded = load(&api, &cfg, &args, chain.as_ref()).await;
    if let Err(e) = &loaded {
        eprintln!("demo failed: {e:#}");
    }
    if args.once || loaded.is_err() {
        stop.cancel();
    } else {
        println!("\nServing until Ctrl-C.");
    }
    server.await??;
    loaded
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    /// A request to `path`, with the bearer token when there is one.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    async fn sql(&self, sql: &str) -> anyhow::Result<Value> {
        let resp = self.post("/v1/sql").json(&json!({ "sql": sql })).send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            bail!("SQL {status}: {body}");
        }
        Ok(body)
    }

    async fn count(&self, table: &str) -> anyhow::Result<u64> {
        self.count_where(table, "TRUE").await
    }

    async fn count_where(&self, table: &str, filter: &str) -> anyhow::Result<u64> {
        let body = self.sql(&format!("SELECT COUNT(*) AS n FROM {table} WHERE {filter}")).await?;
        body["rows"][0]["n"].as_u64().context("count answer has no number")
    }

    /// The labels of metric `name` on `/metrics` (`engine="tract",…`), if it is there.
    async fn metric_labels(&self, name: &str) -> Option<String> {
        let page = self.request(reqwest::Method::GET, "/metrics").send().await.ok()?.text().await.ok()?;
        let line = page.lines().find(|l| l.starts_with(&format!("{name}{{")))?;
        Some(line.split_once('{')?.1.split_once('}')?.0.to_string())
    }
}

/// The DVA's scores among `quality_scores`.
const IMAGE_SCORES: &str = "subject_kind = 'image_text_pair'";

async fn load(api: &Api, cfg: &GataConfig, args: &DemoArgs, chain: Option<&market::DemoChain>) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    let tables = [
        (EventKind::ChatTurn, "chat_turns"),
        (EventKind::Preference, "preferences"),
        (EventKind::ImageTextPair, "image_text_pairs"),
    ];
    let mut before = Vec::new();
    for (_, table) in tables {
        before.push(api.count(table).await?);
    }
    let scores_before = api.count("quality_scores").await?;
    let image_scores_before = api.count_where("quality_scores", IMAGE_SCORES).await?;
    // Stamped in the past, however many events: intake refuses times in the future.
    let start = chrono::Utc::now() - Workload::max_span(args.turns, args.images) - chrono::Duration::minutes(1);
    let mut workload = Workload::new(seed, args.contributors).starting_at(start);
    let events = workload.events(args.turns, args.images);
    println!(
        "\nLoading {} events from {} contributors (seed {seed}) through the HTTP API…",
        events.len(),
        args.contributors
    );
    let since = chrono::Utc::now();
    let started = Instant::now();
    for (kind, route) in [
        (EventKind::ChatTurn, "/v1/chat-turns"),
        (EventKind::Preference, "/v1/preferences"),
        (EventKind::ImageTextPair, "/v1/image-text-pairs"),
    ] {
        let of_kind: Vec<&Event> = events.iter().filter(|e| e.kind() == kind).collect();
        for chunk in of_kind.chunks(BATCH) {
            let body: Vec<u8> = chunk.iter().flat_map(|e| [e.to_json(), b"\n".to_vec()]).flatten().collect();
            let resp = api.post(route).header("content-type", "application/x-ndjson").body(body).send().await?;
            if !resp.status().is_success() {
                bail!("{route} answered {}: {}", resp.status(), resp.text().await.unwrap_or_default());
            }
        }
    }
    let accepted_in = started.elapsed();
    for ((kind, table), had) in tables.into_iter().zip(before) {
        let want = had + events.iter().filter(|e| e.kind() == kind).count() as u64;
        let what = format!("landing in {table}");
        let n = wait_for(&what, want, Duration::from_secs(120), async || api.count(table).await).await?;
        if n < want {
            bail!("{table} holds {n} rows; expected {want} after 120 s");
        }
    }
    println!("Accepted in {accepted_in:.2?}; queryable in the lake after {:.2?}.", started.elapsed());
    let scored = events.iter().filter(|e| gata_stream_processors::scoring::SCORED_KINDS.contains(&e.kind())).count();
    let want = scores_before + scored as u64;
    let what = "text scoring";
    if wait_for(what, want, Duration::from_secs(120), async || api.count("quality_scores").await).await? < want {
        bail!("quality_scores holds fewer than {want} rows after 120 s");
    }
    println!("Every chat turn and preference scored after {:.2?}.", started.elapsed());
    let images = events.iter().filter(|e| e.kind() == EventKind::ImageTextPair).count() as u64;
    let want = image_scores_before + images;
    let count = async || api.count_where("quality_scores", IMAGE_SCORES).await;
    let have = wait_for("DVA scoring image-text pairs", want, Duration::from_secs(180), count).await?;
    if have < want {
        bail!("the DVA scored {} of {images} image-text pairs within 180 s (see the log)", have - image_scores_before);
    }
    println!("Every image-text pair scored by the DVA after {:.2?}.", started.elapsed());
    for (title, sql) in SAMPLES {
        println!("\n== {title}\n{sql}\n");
        print_table(&api.sql(sql).await?);
    }
    dva_verdicts(api).await?;
    // The last paid action (the purchase, or without the marketplace the load) starts at
    // `paid_from`: an epoch at or after it holds something to pay, so one will be recorded.
    let paid_from = if api.token.is_none() {
        let before_purchase = chrono::Utc::now();
        market::marketplace(api, &events, chain.map(|c| (c, cfg.payments.chain_id))).await?;
        before_purchase
    } else {
        since
    };
    let lake = crate::resolve::lake(cfg)?;
    audit::audit(cfg, &lake, since, paid_from).await?;
    try_it(api, cfg)
}

/// The DVA's verdicts on the image-text pairs, and its best and worst agreements.
async fn dva_verdicts(api: &Api) -> anyhow::Result<()> {
    let engine = api.metric_labels("gata_dva_engine_info").await.unwrap_or_else(|| "unknown".into());
    println!("\n== DVA: image-caption agreement (scored on {engine})\n");
    print_table(
        &api.sql(
            "SELECT verdict, COUNT(*) AS pairs, ROUND(MIN(score), 3) AS min_score, ROUND(AVG(score), 3) AS mean_score, \
             ROUND(MAX(score), 3) AS max_score FROM quality_scores WHERE subject_kind = 'image_text_pair' \
             GROUP BY verdict ORDER BY verdict",
        )
        .await?,
    );
    for (title, order) in [("Best", "DESC"), ("Worst", "ASC")] {
        println!("\n{title} agreements:");
        print_table(
            &api.sql(&format!(
                "SELECT p.caption, ROUND(s.score, 3) AS agreement, s.verdict FROM quality_scores s \
                 JOIN image_text_pairs p ON p.event_id = s.subject_event_id \
                 WHERE s.subject_kind = 'image_text_pair' ORDER BY s.score {order}, p.event_id LIMIT 3"
            ))
            .await?,
        );
    }
    println!("Look at every pair with its image and score on the review page: {}/review", api.base);
    Ok(())
}

/// Prints commands that reproduce what the demo showed, each of which works as printed.
fn try_it(api: &Api, cfg: &GataConfig) -> anyhow::Result<()> {
    let base = &api.base;
    let example = cfg.data_dir.join("chat_turn.json");
    std::fs::write(&example, EXAMPLE_CHAT_TURN).with_context(|| format!("writing {}", example.display()))?;
    let data_dir = shown(&cfg.data_dir);
    println!("\nTry it yourself (while the demo serves):");
    println!("  curl -s {base}/v1/tables");
    println!(
        "  curl -s -X POST {base}/v1/sql -H 'content-type: application/json' -d '{{\"sql\": \"SELECT model, COUNT(*) FROM (SELECT unnest(responses)[''model''] AS model FROM chat_turns) GROUP BY 1\"}}'"
    );
    println!(
        "  curl -s -X POST {base}/v1/chat-turns -H 'content-type: application/json' --data-binary @{}",
        shown(&example)
    );
    println!("  curl -s {base}/metrics | grep gata_dva");
    println!("  open {base}/review   (the DVA review page: images, captions, scores)");
    println!("  open {base}/review/label   (label pairs by keyboard: a accept, r reject, s skip)");
    if api.token.is_none() {
        println!("  open {base}/market   (the marketplace page: listings, samples, purchases, grants)");
        println!("  curl -sN '{base}/v1/marketplace/listings/{DEMO_LISTING}/stream?buyer={DEMO_BUYER}&from=earliest'");
        println!("  curl -s {base}/delta-sharing/shares   (Delta Sharing endpoint: {base}/delta-sharing)");
    }
    println!("And as an operator, on the data directory (the demo pays under the built-in `demo` policy):");
    println!("  GATA__REWARDS__POLICY=demo cargo run -- rewards epochs --data-dir {data_dir}");
    println!("  cargo run -- rewards verify {data_dir}/proof-*.json");
    println!("  GATA__REWARDS__POLICY=demo cargo run -- replay --data-dir {data_dir}   (with the demo stopped)");
    println!(
        "  cargo run -- dva train --set models/tiny-clip/labelled --out {data_dir}/dva-head   (the DVA's head, from labels)"
    );
    Ok(())
}
