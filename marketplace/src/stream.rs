//! A listing as a stream: the rows that enter it, delivered as they land, resumable from a
//! cursor with no gaps and no duplicates.
//!
//! Rows enter a listing when their score lands (a submission without a score is in no listing).
//! The stream walks the versions of `quality_scores`: a *step* from version `V` to `W` holds
//! the listing's rows whose score is in `W` and not in `V` (by score event id, so compaction
//! rewriting files changes nothing), in kind then submission id order. Versions are immutable,
//! so a step computed again is the same step: a cursor `V_W_k_id` ("in the step V→W, delivered
//! up to kind k, submission id") resumes exactly after the last row a client saw.
//!
//! Grants are checked as each row is handed out, so a revoke stops a contributor's rows at
//! once, even within a step already computed. Rows are produced only as fast as the client
//! reads them (the response body pulls them), so a slow reader holds nothing but one step.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use futures::Stream;
use gata_contract::{EventKind, ListingSpec};
use gata_lakehouse::{Lake, TableId, deltalake::datafusion::prelude::SessionContext};
use gata_sql::{Catalog, catalog::LakeTable, engine::register};
use serde_json::{Map, Value};

use gata_market::{listing_sql, silver_table};

use crate::{MarketError, Marketplace, Result};

/// How often the scores table is looked at for a new version.
const POLL: Duration = Duration::from_millis(500);
/// How long a step waits for submissions whose scores landed before them.
const ORPHAN_WAIT: Duration = Duration::from_secs(30);
/// How long a quiet stream stays silent before it says it is alive.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Where a stream is: inside the step `from`→`to`, after `(kind, id)` (nothing yet: `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Last version fully delivered (-1: none).
    pub from: i64,
    /// The version the step runs to.
    pub to: i64,
    /// Last row delivered in the step: kind index in the listing, submission id.
    pub after: Option<(usize, String)>,
}

impl Cursor {
    /// Parses `V_W_k_id` (or `V`, a step boundary).
    pub fn parse(text: &str) -> Result<Cursor> {
        let bad = || {
            MarketError::Invalid(vec![gata_contract::Violation::new("cursor", "is not a cursor this server issued")])
        };
        let mut parts = text.splitn(4, '_');
        let from: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        match (parts.next(), parts.next(), parts.next()) {
            (None, None, None) => Ok(Cursor { from, to: from, after: None }),
            (Some(to), Some(kind), Some(id)) => Ok(Cursor {
                from,
                to: to.parse().map_err(|_| bad())?,
                after: Some((kind.parse().map_err(|_| bad())?, id.to_string())),
            }),
            _ => Err(bad()),
        }
    }

    fn text(&self) -> String {
        match &self.after {
            Some((kind, id)) => format!("{}_{}_{kind}_{id}", self.from, self.to),
            None => self.to.to_string(),
        }
    }
}

/// One row handed to a subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Resume after this row with this cursor.
    pub cursor: String,
    /// The row's kind.
    pub kind: EventKind,
    /// The row, as the listing's table shows it.
    pub row: Map<String, Value>,
}

/// What the stream yields: a row, a keep-alive after a quiet while, or the reason it ends.
#[derive(Debug, Clone)]
pub enum Event {
    /// A row.
    Row(Delivery),
    /// Nothing new for a while ([`KEEPALIVE`]); the cursor where the stream is.
    Idle(String),
    /// The stream cannot go on.
    Failed(String),
}

struct State {
    market: Marketplace,
    buyer: String,
    spec: ListingSpec,
    cursor: Cursor,
    pending: VecDeque<(usize, String, Map<String, Value>)>,
    /// Whether `pending` holds the current step (false before the first, or a resumed, step
    /// is loaded).
    loaded: bool,
    step_started: Option<Instant>,
    last_sent: Instant,
}

/// Where a new subscription starts: at `cursor`, at the first score ever (`earliest`), or at
/// the scores table's current version (only what lands from now on). A cursor into history that
/// is gone is refused.
pub async fn start(catalog: &Catalog, cursor: Option<&str>, earliest: bool) -> Result<Cursor> {
    let tables = catalog.latest().await?;
    let scores = tables.get("quality_scores").ok_or_else(|| MarketError::Unavailable("no quality_scores".into()))?;
    let cursor = match cursor {
        Some(text) => Cursor::parse(text)?,
        None if earliest => Cursor { from: -1, to: -1, after: None },
        None => {
            let now = scores.table.version().map_or(-1, |v| v as i64);
            Cursor { from: now, to: now, after: None }
        }
    };
    if cursor.from >= 0 {
        catalog.at_version(scores, cursor.from as u64).await.map_err(|e| {
            MarketError::Gone(format!(
                "the cursor's version {} is no longer readable ({e}); subscribe again",
                cursor.from
            ))
        })?;
    }
    Ok(cursor)
}

/// The subscriber's stream of `spec` (a listing version `buyer` owns), from `cursor`.
pub fn subscribe(market: Marketplace, buyer: String, spec: ListingSpec, cursor: Cursor) -> impl Stream<Item = Event> {
    let state = State {
        market,
        buyer,
        spec,
        cursor,
        pending: VecDeque::new(),
        loaded: false,
        step_started: None,
        last_sent: Instant::now(),
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        loop {
            if let Some((kind, id, row)) = s.pending.pop_front() {
                s.cursor.after = Some((kind, id));
                let contributor = row.get("contributor_id").and_then(Value::as_str).unwrap_or_default().to_string();
                if !s.market.still_visible(&s.buyer, &s.spec.listing_id, &contributor) {
                    continue;
                }
                let delivery = Delivery { cursor: s.cursor.text(), kind: s.spec.kinds[kind], row };
                s.last_sent = Instant::now();
                return Some((Event::Row(delivery), Some(s)));
            }
            if s.loaded {
                // The step is delivered: the next one starts at its end.
                s.cursor = Cursor { from: s.cursor.to, to: s.cursor.to, after: None };
                s.loaded = false;
            }
            match next_step(&mut s).await {
                Ok(true) => {}
                Ok(false) if s.last_sent.elapsed() >= KEEPALIVE => {
                    s.last_sent = Instant::now();
                    return Some((Event::Idle(s.cursor.text()), Some(s)));
                }
                Ok(false) => {}
                Err(e) => return Some((Event::Failed(e.to_string()), None)),
            }
        }
    })
}

/// Computes the next step into `pending`; false when there is none yet (after a pause).
async fn next_step(s: &mut State) -> Result<bool> {
    let catalog = s.market.catalog();
    let tables = catalog.latest().await?;
    let scores = tables.get("quality_scores").ok_or_else(|| MarketError::Unavailable("no quality_scores".into()))?;
    let latest = scores.table.version().map_or(-1, |v| v as i64);
    let resuming = s.cursor.to > s.cursor.from;
    let to = if resuming { s.cursor.to } else { latest };
    if to <= s.cursor.from {
        tokio::time::sleep(POLL).await;
        return Ok(false);
    }
    let ctx = step_session(&catalog, &tables, scores, s.cursor.from, to).await?;
    let granted = s.market.read(|m| m.granted(&s.spec.listing_id)).await?;
    let orphans = orphans(&ctx, &s.spec).await?;
    if orphans > 0 && s.step_started.get_or_insert_with(Instant::now).elapsed() < ORPHAN_WAIT {
        // Scores that landed before their submissions: wait for the submissions.
        tokio::time::sleep(POLL).await;
        return Ok(false);
    }
    if orphans > 0 {
        tracing::warn!(listing = %s.spec.listing_id, orphans, "scores without their submissions; stepping past them");
    }
    s.step_started = None;
    let mut rows = Vec::new();
    for (k, kind) in s.spec.kinds.iter().enumerate() {
        let sql = format!("{} ORDER BY t.event_id", listing_sql(&s.spec, *kind, &granted));
        for row in json_rows(&ctx, &sql).await? {
            let id = row.get("event_id").and_then(Value::as_str).unwrap_or_default().to_string();
            if s.cursor.after.as_ref().is_none_or(|(ak, aid)| (k, &id) > (*ak, aid)) {
                rows.push((k, id, row));
            }
        }
    }
    s.cursor.to = to;
    s.pending = rows.into();
    s.loaded = true;
    Ok(true)
}

/// A session in which `quality_scores` holds only the scores of versions `(from, to]`, beside
/// the submission tables at their latest versions.
async fn step_session(
    catalog: &Catalog,
    tables: &std::collections::BTreeMap<String, LakeTable>,
    scores: &LakeTable,
    from: i64,
    to: i64,
) -> Result<SessionContext> {
    let ctx = SessionContext::new();
    for kind in EventKind::ALL {
        let name = silver_table(kind);
        if let Some(t) = tables.get(name) {
            register(&ctx, name, &t.table).await?;
        }
    }
    // A live step runs to the version the catalog just loaded; only a resumed one reads an
    // older version again.
    if scores.table.version() == Some(to as u64) {
        register(&ctx, "scores_new", &scores.table).await?;
    } else {
        register(&ctx, "scores_new", &catalog.at_version(scores, to as u64).await?).await?;
    }
    let old_filter = if from >= 0 {
        let old = catalog.at_version(scores, from as u64).await.map_err(|e| {
            MarketError::Gone(format!("version {from} of quality_scores is no longer readable ({e}); subscribe again"))
        })?;
        register(&ctx, "scores_old", &old).await?;
        "WHERE event_id NOT IN (SELECT event_id FROM scores_old)"
    } else {
        ""
    };
    let step = ctx.sql(&format!("SELECT * FROM scores_new {old_filter}")).await.map_err(query_err)?;
    ctx.register_table("quality_scores", step.into_view()).map_err(query_err)?;
    Ok(ctx)
}

/// Accepted scores in the step whose submission is not in its silver table yet.
async fn orphans(ctx: &SessionContext, spec: &ListingSpec) -> Result<u64> {
    let mut n = 0;
    for kind in &spec.kinds {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM quality_scores WHERE validator IS NULL AND verdict = 'accept' \
             AND subject_kind = '{}' AND subject_event_id NOT IN (SELECT event_id FROM {})",
            kind.name(),
            silver_table(*kind)
        );
        n += json_rows(ctx, &sql).await?.first().and_then(|r| r.get("n")).and_then(Value::as_u64).unwrap_or(0);
    }
    Ok(n)
}

fn query_err(e: gata_lakehouse::deltalake::datafusion::error::DataFusionError) -> MarketError {
    MarketError::Query(e.into())
}

/// The rows of `sql` as JSON objects.
async fn json_rows(ctx: &SessionContext, sql: &str) -> Result<Vec<Map<String, Value>>> {
    Lake::rows(ctx, TableId::QualityScores, sql).await.map_err(|e| MarketError::Lake(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let c = Cursor { from: 3, to: 7, after: Some((1, "0190a000-0000-7000-8000-000000000001".into())) };
        assert_eq!(Cursor::parse(&c.text()).expect("parse"), c);
        let boundary = Cursor { from: 7, to: 7, after: None };
        assert_eq!(Cursor::parse("7").expect("parse"), boundary);
        assert_eq!(boundary.text(), "7");
        assert_eq!(Cursor::parse("-1").expect("parse").from, -1);
        for junk in ["", "x", "1_2", "1_2_k_id"] {
            assert!(Cursor::parse(junk).is_err(), "{junk}");
        }
    }
}
