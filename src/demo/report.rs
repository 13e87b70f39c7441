//! How the demo prints: aligned tables of SQL answers, and progress bars for its waits.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// Prints a JSON SQL answer as an aligned text table.
pub fn print_table(answer: &Value) {
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
    print_rows(&columns, &rows);
}

/// Prints `rows` under `columns`, aligned.
pub fn print_rows(columns: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| rows.iter().map(|r| r[i].chars().count()).chain([c.len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[&str]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(columns));
    println!("{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-"));
    for r in rows {
        println!("{}", line(&r.iter().map(String::as_str).collect::<Vec<_>>()));
    }
}

/// Polls `count` every 200 ms until it reaches `want` or `within` has passed, showing a progress
/// bar (on a terminal) that says what is awaited; returns the last count.
pub async fn wait_for(
    what: &str,
    want: u64,
    within: Duration,
    count: impl AsyncFn() -> anyhow::Result<u64>,
) -> anyhow::Result<u64> {
    let bar = ProgressBar::new(want).with_message(what.to_string()).with_style(
        ProgressStyle::with_template("  {msg} {bar:30} {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let deadline = Instant::now() + within;
    let mut have = count().await?;
    while have < want && Instant::now() < deadline {
        bar.set_position(have);
        tokio::time::sleep(Duration::from_millis(200)).await;
        have = count().await?;
    }
    bar.finish_and_clear();
    Ok(have)
}

/// A spinner that says what is awaited, until it is dropped or finished.
pub fn spinner(what: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(what).with_style(
        ProgressStyle::with_template("  {spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
