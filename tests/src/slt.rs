//! A runner for sqllogictest-style files against `POST /v1/sql`: `query` records compare the
//! rows answered with the rows written under `----`; `statement ok` / `statement error <text>`
//! check that a statement runs, or fails with a message containing the text.

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use crate::Api;

/// One record of a file.
#[derive(Debug)]
enum Record {
    Query { line: usize, columns: usize, rowsort: bool, sql: String, expected: Vec<String> },
    Ok { line: usize, sql: String },
    Error { line: usize, sql: String, contains: String },
}

fn parse(text: &str) -> anyhow::Result<Vec<Record>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let head = lines[i].trim();
        let line = i + 1;
        i += 1;
        if head.is_empty() || head.starts_with('#') {
            continue;
        }
        let mut sql = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim() != "----" {
            sql.push(lines[i]);
            i += 1;
        }
        let sql = sql.join("\n");
        if let Some(spec) = head.strip_prefix("query ") {
            let mut words = spec.split_whitespace();
            let columns = words.next().context("query needs column types")?.len();
            let rowsort = words.next() == Some("rowsort");
            anyhow::ensure!(lines.get(i).map(|l| l.trim()) == Some("----"), "line {line}: query without ----");
            i += 1;
            let mut expected = Vec::new();
            while i < lines.len() && !lines[i].trim().is_empty() {
                expected.push(lines[i].trim().to_string());
                i += 1;
            }
            records.push(Record::Query { line, columns, rowsort, sql, expected });
        } else if head == "statement ok" {
            records.push(Record::Ok { line, sql });
        } else if let Some(text) = head.strip_prefix("statement error") {
            records.push(Record::Error { line, sql, contains: text.trim().to_string() });
        } else {
            anyhow::bail!("line {line}: unknown record {head:?}");
        }
    }
    Ok(records)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs every record of `file`; returns one message per record that did not hold, and the
/// number of records run.
pub async fn run(api: &Api, file: &Path) -> anyhow::Result<(Vec<String>, usize)> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let records = parse(&text)?;
    let mut failures = Vec::new();
    for record in &records {
        match record {
            Record::Query { line, columns, rowsort, sql, expected } => {
                let (status, body) = api.sql(sql).await?;
                if status != 200 {
                    failures.push(format!("line {line}: {status} {body}"));
                    continue;
                }
                let names: Vec<&str> =
                    body["columns"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
                if names.len() != *columns {
                    failures.push(format!("line {line}: {} columns, expected {columns}", names.len()));
                    continue;
                }
                let mut got: Vec<String> = body["rows"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|row| names.iter().map(|n| cell(&row[*n])).collect::<Vec<_>>().join(" "))
                    .collect();
                let mut want = expected.clone();
                if *rowsort {
                    got.sort();
                    want.sort();
                }
                if got != want {
                    failures.push(format!("line {line}: got\n{}\nexpected\n{}", got.join("\n"), want.join("\n")));
                }
            }
            Record::Ok { line, sql } => {
                let (status, body) = api.sql(sql).await?;
                if status != 200 {
                    failures.push(format!("line {line}: {status} {body}"));
                }
            }
            Record::Error { line, sql, contains } => {
                let (status, body) = api.sql(sql).await?;
                let message = body["error"]["message"].as_str().unwrap_or("");
                if !(400..500).contains(&status) || !message.contains(contains.as_str()) {
                    failures.push(format!("line {line}: expected a 4xx containing {contains:?}, got {status} {body}"));
                }
            }
        }
    }
    Ok((failures, records.len()))
}
