//! `gata demo`: serve, load a realistic generated workload through the public HTTP API, wait
//! until the lake shows all of it, then print what landed and how to query it.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use futures::StreamExt as _;
use gata_infra::{
    config::GataConfig,
    contract::{Event, EventKind},
    workload::Workload,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

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
}

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

pub async fn run(cfg: GataConfig, args: DemoArgs, stop: CancellationToken) -> anyhow::Result<()> {
    if cfg.auth.enabled() && args.token.is_none() {
        bail!("auth.principals are configured: pass an operator's token with --token or GATA_TOKEN");
    }
    let token = args.token.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut server = tokio::spawn(platform::serve(cfg, stop.clone(), move |ready| {
        ready.print();
        let _ = ready_tx.send(ready.clone());
    }));
    let ready = tokio::select! {
        ready = ready_rx => ready.context("the platform stopped before it was ready")?,
        result = &mut server => { result??; bail!("the platform stopped before it was ready") }
    };
    let api = Api { http: reqwest::Client::new(), base: format!("http://{}", ready.http), token };
    let loaded = load(&api, &args).await;
    if let Err(e) = &loaded {
        eprintln!("demo load failed: {e:#}");
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
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.post(format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
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
}

/// The DVA's scores among `quality_scores`.
const IMAGE_SCORES: &str = "subject_kind = 'image_text_pair'";

async fn load(api: &Api, args: &DemoArgs) -> anyhow::Result<()> {
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
    let mut workload = Workload::new(seed, args.contributors);
    let events = workload.events(args.turns, args.images);
    println!(
        "\nLoading {} events from {} contributors (seed {seed}) through the HTTP API…",
        events.len(),
        args.contributors
    );
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
    let deadline = Instant::now() + Duration::from_secs(120);
    for ((kind, table), had) in tables.into_iter().zip(before) {
        let want = had + events.iter().filter(|e| e.kind() == kind).count() as u64;
        loop {
            let n = api.count(table).await?;
            if n >= want {
                break;
            }
            if Instant::now() > deadline {
                bail!("{table} holds {n} rows; expected {want} after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    println!("Accepted in {accepted_in:.2?}; queryable in the lake after {:.2?}.", started.elapsed());
    let scored = events.iter().filter(|e| gata_stream_processors::scoring::SCORED_KINDS.contains(&e.kind())).count();
    let want = scores_before + scored as u64;
    while api.count("quality_scores").await? < want {
        if Instant::now() > deadline {
            bail!("quality_scores holds fewer than {want} rows after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("Every chat turn and preference scored after {:.2?}.", started.elapsed());
    let images = events.iter().filter(|e| e.kind() == EventKind::ImageTextPair).count() as u64;
    let want = image_scores_before + images;
    let dva_deadline = Instant::now() + Duration::from_secs(60);
    let mut have = api.count_where("quality_scores", IMAGE_SCORES).await?;
    while have < want && Instant::now() < dva_deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        have = api.count_where("quality_scores", IMAGE_SCORES).await?;
    }
    if have >= want {
        println!("Every image-text pair scored by the DVA after {:.2?}.", started.elapsed());
    } else {
        println!(
            "The DVA scored {} of {images} image-text pairs within 60 s (is it disabled? see the log).",
            have - image_scores_before
        );
    }
    for (title, sql) in SAMPLES {
        println!("\n== {title}\n{sql}\n");
        print_table(&api.sql(sql).await?);
    }
    if api.token.is_none() {
        marketplace(api, &events).await?;
    }
    let base = &api.base;
    println!("\nTry it yourself:");
    println!("  curl -s {base}/v1/tables");
    println!(
        "  curl -s -X POST {base}/v1/sql -H 'content-type: application/json' -d '{{\"sql\": \"SELECT model, COUNT(*) FROM (SELECT unnest(responses)[''model''] AS model FROM chat_turns) GROUP BY 1\"}}'"
    );
    println!(
        "  curl -s -X POST {base}/v1/chat-turns -H 'content-type: application/json' --data-binary @../shared/examples/chat_turn.json"
    );
    println!("  curl -s {base}/metrics | grep gata_");
    println!("  open {base}/review   (the DVA review page: images, captions, scores)");
    if api.token.is_none() {
        println!("  open {base}/market   (the marketplace page: listings, samples, purchases, grants)");
        println!("  curl -sN '{base}/v1/marketplace/listings/{DEMO_LISTING}/stream?buyer={DEMO_BUYER}&from=earliest'");
        println!("  curl -s {base}/delta-sharing/shares   (Delta Sharing endpoint: {base}/delta-sharing)");
    }
    Ok(())
}

/// The listing the demo publishes and buys.
const DEMO_LISTING: &str = "demo_chat";
/// Who buys it.
const DEMO_BUYER: &str = "demo_buyer";

/// The marketplace part of the demo (open local mode, where the local admin acts for whoever a
/// request names): a listing of good chat data, two in three contributors granting it, a
/// purchase and its revenue split, and the listing read back in SQL.
async fn marketplace(api: &Api, events: &[Event]) -> anyhow::Result<()> {
    let call = |path: &'static str, body: Value| async move {
        let resp = api.post(path).json(&body).send().await?;
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{path} answered {status}: {answer}");
        }
        anyhow::Ok(answer)
    };
    let listings: Value = api.http.get(format!("{}/v1/marketplace/listings", api.base)).send().await?.json().await?;
    let version = listings["listings"]
        .as_array()
        .and_then(|all| all.iter().find(|l| l["listing"]["listing_id"] == DEMO_LISTING))
        .and_then(|l| l["listing"]["version"].as_u64())
        .unwrap_or(0)
        + 1;
    let price = 10_000_000_000u64;
    call(
        "/v1/marketplace/listings",
        json!({"listing_id": DEMO_LISTING, "version": version, "title": "Accepted multi-model chats",
            "kinds": ["chat_turn", "preference"], "min_score": 0.5, "price": price,
            "terms": "research and evaluation use; no redistribution"}),
    )
    .await?;
    let mut people: Vec<&str> = events.iter().map(Event::contributor_id).collect();
    people.sort_unstable();
    people.dedup();
    let granting: Vec<&str> = people.iter().enumerate().filter(|(i, _)| i % 3 != 2).map(|(_, p)| *p).collect();
    let grants = futures::stream::iter(
        granting
            .iter()
            .map(|who| call("/v1/marketplace/grants", json!({"contributor_id": who, "listing_id": DEMO_LISTING}))),
    )
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    grants.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let bought = call(
        "/v1/marketplace/purchases",
        json!({"listing_id": DEMO_LISTING, "buyer": DEMO_BUYER, "payment_ref": "demo-invoice-1"}),
    )
    .await?;
    let mut shares: Vec<(&str, u64, u64)> = bought["shares"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|s| Some((s["contributor_id"].as_str()?, s["accepted"].as_u64()?, s["amount"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    shares.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
    let paid: u64 = shares.iter().map(|s| s.2).sum();
    println!(
        "\n== Marketplace\nListing {DEMO_LISTING} v{version} published; {} of {} contributors granted it; \
         {DEMO_BUYER} bought it for {price} base units, split over {} contributors (sum {paid}):",
        granting.len(),
        people.len(),
        shares.len()
    );
    for (who, rows, amount) in shares.iter().take(3) {
        println!("  {who}: {rows} accepted rows -> {amount}");
    }
    let sql = format!(
        "SELECT COUNT(*) AS turns, COUNT(DISTINCT contributor_id) AS contributors FROM {DEMO_LISTING}.chat_turns"
    );
    println!("\n{sql}\n");
    print_table(&api.sql(&sql).await?);
    Ok(())
}

/// Prints a JSON SQL answer as an aligned text table.
fn print_table(answer: &Value) {
    let columns: Vec<&str> =
        answer["columns"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    let rows: Vec<Vec<String>> = answer["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            columns
                .iter()
                .map(|c| match &r[*c] {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| rows.iter().map(|r| r[i].len()).chain([c.len()]).max().unwrap_or(0))
        .collect();
    let line =
        |cells: Vec<&str>| cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join(" | ");
    println!("{}", line(columns.clone()));
    println!("{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-"));
    for r in &rows {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
}
