//! The contributor view: `GET /v1/contributors/{id}/scores` — a contributor's own scores, with
//! the reasons behind every verdict and a summary, newest first — and
//! `GET /v1/contributors/{id}/rewards` — its payouts per closed epoch with the scored
//! submissions behind each amount.
//!
//! Query parameters: `limit` (1 to 500, default 50), `offset` (default 0), `verdict`
//! (`accept` or `reject`), `kind` (`chat_turn` or `preference`). Each score names the
//! submission it judges and, for a chat turn, the start of its prompt.

use gata_contract::Limits;
use gata_infra::auth::Principal;
use gata_lakehouse::deltalake::datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{QueryError, Result, sql::SqlEngine};

/// Most scores one page returns.
pub const MAX_LIMIT: usize = 500;
/// Most scores a page may skip.
pub const MAX_OFFSET: usize = 1_000_000;
/// Characters of a prompt shown beside its score.
const EXCERPT_CHARS: usize = 160;

/// The query parameters of the contributor view.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoresQuery {
    /// Page size.
    #[schemars(range(min = 1, max = MAX_LIMIT))]
    pub limit: Option<usize>,
    /// Scores to skip.
    #[schemars(range(max = MAX_OFFSET))]
    pub offset: Option<usize>,
    /// Only this verdict.
    #[schemars(extend("enum" = ["accept", "reject"]))]
    pub verdict: Option<String>,
    /// Only this submission kind.
    #[schemars(extend("enum" = ["chat_turn", "preference", "image_text_pair"]))]
    pub kind: Option<String>,
}

/// A contributor's page of scores.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ContributorScores {
    /// Whose.
    pub contributor_id: String,
    /// Totals over every score of the contributor (not just this page), per scorer version.
    pub summary: Vec<Map<String, Value>>,
    /// This page, newest first.
    pub scores: Vec<Value>,
    /// The page asked for.
    pub limit: usize,
    /// Scores skipped.
    pub offset: usize,
}

/// A contributor id as the contract allows it ([`Limits::check_id`]).
fn check_id(id: &str) -> Result<()> {
    if Limits::default().check_id("contributor_id", id).is_ok() {
        Ok(())
    } else {
        Err(QueryError::BadRequest(format!("{id:?} is not a contributor id")))
    }
}

fn one_of(param: &str, value: Option<&str>, allowed: &[&str]) -> Result<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) if allowed.contains(&v) => Ok(Some(v.to_string())),
        Some(v) => Err(QueryError::BadRequest(format!("{param}={v:?}; expected one of {allowed:?}"))),
    }
}

/// Reads one page of `contributor`'s scores.
pub async fn scores(engine: &SqlEngine, contributor: &str, query: &ScoresQuery) -> Result<ContributorScores> {
    check_id(contributor)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(QueryError::BadRequest(format!("limit={limit}; expected 1 to {MAX_LIMIT}")));
    }
    let offset = query.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(QueryError::BadRequest(format!("offset={offset}; expected at most {MAX_OFFSET}")));
    }
    // Values travel as parameters ($1 …), never inside the SQL text.
    let mut params = vec![ScalarValue::Utf8(Some(contributor.to_string()))];
    let mut filter = "s.contributor_id = $1".to_string();
    if let Some(verdict) = one_of("verdict", query.verdict.as_deref(), &["accept", "reject"])? {
        params.push(ScalarValue::Utf8(Some(verdict)));
        filter.push_str(&format!(" AND s.verdict = ${}", params.len()));
    }
    if let Some(kind) = one_of("kind", query.kind.as_deref(), &["chat_turn", "preference", "image_text_pair"])? {
        params.push(ScalarValue::Utf8(Some(kind)));
        filter.push_str(&format!(" AND s.subject_kind = ${}", params.len()));
    }
    let system = Principal::local_admin();
    let page = engine
        .run(
            &system,
            &format!(
                "SELECT s.subject_event_id, s.subject_kind, s.scorer_version, s.score, s.verdict, \
                 s.realism, s.originality, s.diversity, s.behaviour, s.reasons, s.language, \
                 s.occurred_at, s.scored_at, substr(t.prompt, 1, {EXCERPT_CHARS}) AS prompt, p.turn_id \
                 FROM quality_scores s \
                 LEFT JOIN chat_turns t ON t.event_id = s.subject_event_id \
                 LEFT JOIN preferences p ON p.event_id = s.subject_event_id \
                 WHERE {filter} ORDER BY s.scored_at DESC, s.subject_event_id LIMIT {limit} OFFSET {offset}"
            ),
            params,
        )
        .await?;
    let summary = engine
        .run(
            &system,
            "SELECT scorer_version, COUNT(*) AS submissions, \
             SUM(CASE WHEN verdict = 'accept' THEN 1 ELSE 0 END) AS accepted, \
             SUM(CASE WHEN verdict = 'reject' THEN 1 ELSE 0 END) AS rejected, \
             ROUND(AVG(score), 4) AS mean_score \
             FROM quality_scores s WHERE s.contributor_id = $1 GROUP BY 1 ORDER BY 1",
            vec![ScalarValue::Utf8(Some(contributor.to_string()))],
        )
        .await?;
    Ok(ContributorScores {
        contributor_id: contributor.to_string(),
        summary: summary.rows,
        scores: page.rows.into_iter().map(shape).collect(),
        limit,
        offset,
    })
}

/// A contributor's payouts, one per closed epoch, oldest first.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ContributorRewards {
    /// Whose (a contributor or a DVA worker id).
    pub contributor_id: String,
    /// Sum of the amounts, in token base units.
    pub total: i64,
    /// Per epoch: amount, cap and penalty, the payee address, Merkle leaf and root, the lines (submission, kind,
    /// score in basis points, verdict, tier, amount) and the sale shares behind it.
    pub epochs: Vec<Map<String, Value>>,
}

/// Reads every recorded payout of `contributor`.
pub async fn rewards(engine: &SqlEngine, contributor: &str) -> Result<ContributorRewards> {
    check_id(contributor)?;
    let epochs = engine
        .run(
            &Principal::local_admin(),
            "SELECT epoch, epoch_start, epoch_end, policy_version, amount, gross, cap_cut, flagged, penalty, \
             validation, leaf_index, leaf_count, leaf_hash, epoch_root, payee, lines, sales \
             FROM rewards WHERE account = $1 ORDER BY epoch, policy_version",
            vec![ScalarValue::Utf8(Some(contributor.to_string()))],
        )
        .await?;
    let total = epochs.rows.iter().filter_map(|r| r.get("amount").and_then(Value::as_i64)).sum();
    Ok(ContributorRewards { contributor_id: contributor.to_string(), total, epochs: epochs.rows })
}

/// One score row as the contributor reads it: sub-scores grouped, absent fields dropped.
fn shape(mut row: Map<String, Value>) -> Value {
    let mut sub = Map::new();
    for name in ["realism", "originality", "diversity", "behaviour"] {
        if let Some(v) = row.remove(name).filter(|v| !v.is_null()) {
            sub.insert(name.to_string(), v);
        }
    }
    row.retain(|_, v| !v.is_null());
    row.insert("sub_scores".into(), Value::Object(sub));
    json!(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_filters_are_checked_before_any_sql() {
        check_id("ctr_01").expect("plain id");
        for bad in ["", "a b", "x'; DROP TABLE t; --", "é", &"x".repeat(129)] {
            assert!(matches!(check_id(bad), Err(QueryError::BadRequest(_))), "{bad:?}");
        }
        assert_eq!(one_of("verdict", Some("reject"), &["accept", "reject"]).expect("ok"), Some("reject".into()));
        assert!(one_of("verdict", Some("maybe"), &["accept", "reject"]).is_err());
    }

    #[test]
    fn rows_are_shaped_for_people() {
        let row = json!({"score": 0.4, "realism": 0.9, "behaviour": null, "prompt": null, "turn_id": "t1"});
        let shaped = shape(row.as_object().expect("object").clone());
        assert_eq!(shaped, json!({"score": 0.4, "turn_id": "t1", "sub_scores": {"realism": 0.9}}));
    }
}
