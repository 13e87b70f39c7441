//! `gata sql`: SQL from the command line, one-shot (`gata sql "SELECT …"`) or interactive
//! (no query: statements are read from stdin up to each `;`), against a running server
//! (`--server URL`, answers fetched as Arrow IPC and decoded as they arrive) or directly
//! against the lake. Output: aligned tables, CSV, JSON or NDJSON; `--timing` (on by default
//! when interactive) prints rows and elapsed time to stderr.

use std::{
    io::{BufRead, IsTerminal, Write},
    time::Instant,
};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use futures::{Stream, StreamExt as _};
use gata_infra::{auth::Principal, config::GataConfig};
use gata_lakehouse::deltalake::arrow::{
    buffer::Buffer, csv, ipc::reader::StreamDecoder, record_batch::RecordBatch, util::pretty::pretty_format_batches,
};
use gata_query_api::{executor::Cap, sql::SqlEngine};

/// `gata sql` options.
#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    /// The query; without it, statements are read from stdin (interactive on a terminal).
    query: Option<String>,
    /// A running gata (`http://127.0.0.1:8080`) to query instead of opening the lake.
    #[arg(long, env = "GATA_SERVER")]
    server: Option<String>,
    /// Bearer token for `--server`.
    #[arg(long, env = "GATA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Output: aligned table, CSV, JSON (an array of objects) or NDJSON.
    #[arg(long, value_enum, default_value = "table")]
    format: Output,
    /// Print row count and elapsed time to stderr after each statement.
    #[arg(long)]
    timing: bool,
    #[command(flatten)]
    pub flags: crate::Flags,
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Csv,
    Json,
    Ndjson,
}

/// Where statements run.
enum Source {
    Lake(SqlEngine),
    Server { http: reqwest::Client, url: String, token: Option<String> },
}

type Batches = std::pin::Pin<Box<dyn Stream<Item = anyhow::Result<RecordBatch>> + Send>>;

impl Source {
    /// Starts `sql`; batches arrive as they are produced.
    async fn start(&self, sql: &str) -> anyhow::Result<Batches> {
        match self {
            Source::Lake(engine) => {
                let cap = Cap::Fail(engine.config().max_stream_rows);
                let stream = engine.stream(&Principal::local_admin(), sql, Vec::new(), cap).await?;
                Ok(Box::pin(stream.map(|b| b.map_err(anyhow::Error::from))))
            }
            Source::Server { http, url, token } => {
                let mut req = http
                    .post(format!("{}/v1/sql", url.trim_end_matches('/')))
                    .header("accept", "application/vnd.apache.arrow.stream")
                    .json(&serde_json::json!({ "sql": sql }));
                if let Some(token) = token {
                    req = req.bearer_auth(token);
                }
                let resp = req.send().await.with_context(|| format!("reaching {url}"))?;
                if !resp.status().is_success() {
                    let status = resp.status();
                    let body: serde_json::Value = resp.json().await.unwrap_or_default();
                    let message = body["error"]["message"].as_str().unwrap_or("no reason given");
                    bail!("{status}: {message}");
                }
                Ok(Box::pin(decode(resp.bytes_stream())))
            }
        }
    }
}

/// Arrow IPC stream bytes, as they arrive, into record batches.
fn decode(
    bytes: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
) -> impl Stream<Item = anyhow::Result<RecordBatch>> + Send {
    futures::stream::unfold(
        (Box::pin(bytes), StreamDecoder::new(), Buffer::from(Vec::<u8>::new()), false),
        |(mut bytes, mut decoder, mut buffer, mut done)| async move {
            loop {
                if done {
                    return None;
                }
                match decoder.decode(&mut buffer) {
                    Err(e) => return Some((Err(e.into()), (bytes, decoder, buffer, true))),
                    Ok(Some(batch)) => return Some((Ok(batch), (bytes, decoder, buffer, done))),
                    Ok(None) if !buffer.is_empty() => continue,
                    Ok(None) => {}
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buffer = Buffer::from(chunk.to_vec()),
                    Some(Err(e)) => {
                        let e = anyhow::anyhow!("the answer broke off: {e}");
                        return Some((Err(e), (bytes, decoder, buffer, true)));
                    }
                    None => {
                        done = true;
                        if let Err(e) = decoder.finish() {
                            return Some((Err(e.into()), (bytes, decoder, buffer, done)));
                        }
                    }
                }
            }
        },
    )
}

pub async fn run(cfg: GataConfig, args: SqlArgs) -> anyhow::Result<()> {
    let source = match &args.server {
        Some(url) => Source::Server { http: reqwest::Client::new(), url: url.clone(), token: args.token.clone() },
        None => Source::Lake(crate::platform::lake_engine(&cfg).await?),
    };
    match &args.query {
        Some(sql) => execute(&source, sql, args.format, args.timing).await,
        None => interactive(&source, args.format).await,
    }
}

/// Reads statements from stdin up to each `;` and runs them; errors are printed and the
/// session goes on. `\q` (or end of input) quits.
async fn interactive(source: &Source, format: Output) -> anyhow::Result<()> {
    let terminal = std::io::stdin().is_terminal();
    let prompt = |pending: &str| {
        if terminal {
            eprint!("{}", if pending.trim().is_empty() { "gata> " } else { "   -> " });
            let _ = std::io::stderr().flush();
        }
    };
    let mut pending = String::new();
    let mut failed = false;
    prompt(&pending);
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        if pending.trim().is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            break;
        }
        pending.push_str(&line);
        pending.push('\n');
        while let Some(end) = pending.find(';') {
            let statement: String = pending.drain(..=end).collect();
            let statement = statement.trim().trim_end_matches(';').trim();
            if statement.is_empty() {
                continue;
            }
            if let Err(e) = execute(source, statement, format, true).await {
                eprintln!("error: {e:#}");
                failed = true;
            }
        }
        prompt(&pending);
    }
    if !pending.trim().is_empty() {
        eprintln!("error: the last statement has no closing ';' and was not run");
        failed = true;
    }
    if failed && !terminal {
        bail!("some statements failed");
    }
    Ok(())
}

/// Runs one statement and prints its answer.
async fn execute(source: &Source, sql: &str, format: Output, timing: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut batches = source.start(sql).await?;
    let mut out = std::io::stdout().lock();
    let mut rows = 0usize;
    let mut kept = Vec::new();
    let mut first = true;
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        rows += batch.num_rows();
        match format {
            // An aligned table needs every row to size its columns.
            Output::Table | Output::Json => kept.push(batch),
            Output::Csv => {
                let mut writer = csv::WriterBuilder::new().with_header(first).build(&mut out);
                writer.write(&batch)?;
            }
            Output::Ndjson => {
                let mut writer = arrow_json::LineDelimitedWriter::new(&mut out);
                writer.write(&batch)?;
                writer.finish()?;
            }
        }
        first = false;
    }
    match format {
        Output::Table => writeln!(out, "{}", pretty_format_batches(&kept)?)?,
        Output::Json => {
            let mut writer = arrow_json::ArrayWriter::new(&mut out);
            writer.write_batches(&kept.iter().collect::<Vec<_>>())?;
            writer.finish()?;
            if kept.is_empty() {
                write!(out, "[]")?;
            }
            writeln!(out)?;
        }
        Output::Csv | Output::Ndjson => {}
    }
    out.flush()?;
    if timing {
        let s = if rows == 1 { "" } else { "s" };
        eprintln!("({rows} row{s}, {:.1} ms)", started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(())
}
