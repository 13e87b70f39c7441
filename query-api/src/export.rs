//! Training exports of accepted preference data, streamed from the lake.
//!
//! A preference is exported when it and the chat turn it judges both have an `accept` verdict
//! of the chosen scorer version and scores of at least `min_quality`. The turn is the one with
//! the preference's `turn_id` from the same contributor. Rows are read in `(occurred_at,
//! event_id)` order batch by batch and written as they come, one JSON object per line:
//!
//! - `dpo`: TRL's standard preference format, `{"prompt", "chosen", "rejected"}`, one line per
//!   (chosen, rejected) pair; "all bad" judgements have no chosen answer and are skipped.
//! - `arena`: the Chatbot Arena pairwise format (`question_id`, `model_a`, `model_b`, `winner`,
//!   `judge`, `conversation_a`, `conversation_b`, `turn`, `anony`, `language`, `tstamp`), one
//!   line per pair; the chosen answer's side alternates by a hash of the pair so position
//!   carries no signal; "all bad" gives every pair of answers as `tie (bothbad)`.
//! - `jsonl`: one line per preference with the prompt, every answer, the judgement and both
//!   scores.

use std::io::Write;

use futures::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{QueryError, Result, json::rows, sql::SqlEngine};

/// Output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// TRL DPO: prompt / chosen / rejected.
    Dpo,
    /// Chatbot Arena pairwise battles.
    Arena,
    /// Everything, one preference per line.
    Jsonl,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "dpo" => Ok(Self::Dpo),
            "arena" => Ok(Self::Arena),
            "jsonl" => Ok(Self::Jsonl),
            other => Err(format!("unknown format {other:?}; formats: dpo, arena, jsonl")),
        }
    }
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    /// Output format.
    pub format: ExportFormat,
    /// Lowest score (of the preference and of its turn) exported, in [0, 1].
    pub min_quality: f64,
    /// Scores of this scorer version decide.
    pub scorer_version: String,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ExportStats {
    /// Preferences read.
    pub preferences: u64,
    /// Lines written.
    pub records: u64,
}

impl ExportSpec {
    fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.min_quality) {
            return Err(QueryError::BadRequest(format!("min quality {} is not in [0, 1]", self.min_quality)));
        }
        if self.scorer_version.is_empty() || !self.scorer_version.bytes().all(|b| b.is_ascii_graphic() && b != b'\'') {
            return Err(QueryError::BadRequest(format!("{:?} is not a scorer version", self.scorer_version)));
        }
        Ok(())
    }

    /// The accepted preferences with their turns (no ordering: also used to count).
    fn selection(&self) -> String {
        let (version, min) = (&self.scorer_version, self.min_quality);
        format!(
            "WITH s AS (SELECT subject_event_id, score, verdict FROM quality_scores WHERE scorer_version = '{version}') \
             SELECT p.event_id, p.contributor_id, p.turn_id, p.occurred_at, p.chosen_response_id, \
             p.rejected_response_ids, p.all_bad, p.rating, p.reason, t.prompt, t.responses, \
             ts.score AS turn_score, ps.score AS preference_score \
             FROM preferences p \
             JOIN chat_turns t ON t.turn_id = p.turn_id AND t.contributor_id = p.contributor_id \
             JOIN s ps ON ps.subject_event_id = p.event_id \
             JOIN s ts ON ts.subject_event_id = t.event_id \
             WHERE ps.verdict = 'accept' AND ts.verdict = 'accept' AND ps.score >= {min} AND ts.score >= {min}"
        )
    }
}

/// How many preferences `spec` selects.
pub async fn count(engine: &SqlEngine, spec: &ExportSpec) -> Result<u64> {
    spec.check()?;
    let ctx = engine.session(&gata_infra::auth::Principal::local_admin()).await?;
    let batches = ctx.sql(&format!("SELECT COUNT(*) AS n FROM ({})", spec.selection())).await?.collect().await?;
    let rows = rows(&batches).map_err(|e| QueryError::Engine(Box::new(e.into())))?;
    Ok(rows.first().and_then(|r| r.get("n")).and_then(Value::as_u64).unwrap_or(0))
}

/// Streams the selection of `spec` to `out`, calling `progress` with the preferences read so
/// far after each batch.
pub async fn export(
    engine: &SqlEngine,
    spec: &ExportSpec,
    out: &mut impl Write,
    mut progress: impl FnMut(u64),
) -> Result<ExportStats> {
    spec.check()?;
    let ctx = engine.session(&gata_infra::auth::Principal::local_admin()).await?;
    let sql = format!("SELECT * FROM ({}) ORDER BY occurred_at, event_id", spec.selection());
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
    let mut stats = ExportStats::default();
    while let Some(batch) = stream.next().await {
        for row in rows(&[batch?]).map_err(|e| QueryError::Engine(Box::new(e.into())))? {
            stats.preferences += 1;
            for record in records(spec.format, &row, &spec.scorer_version) {
                serde_json::to_writer(&mut *out, &record).map_err(|e| QueryError::Io(e.into()))?;
                out.write_all(b"\n").map_err(QueryError::Io)?;
                stats.records += 1;
            }
        }
        progress(stats.preferences);
    }
    out.flush().map_err(QueryError::Io)?;
    Ok(stats)
}

/// An answer of the turn.
struct Answer<'a> {
    id: &'a str,
    model: &'a str,
    text: &'a str,
}

fn answers(row: &Map<String, Value>) -> Vec<Answer<'_>> {
    row.get("responses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some(Answer {
                id: r.get("response_id")?.as_str()?,
                model: r.get("model")?.as_str()?,
                text: r.get("text")?.as_str()?,
            })
        })
        .collect()
}

fn text<'a>(row: &'a Map<String, Value>, key: &str) -> &'a str {
    row.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The (winner, loser) pairs of a preference: chosen against each rejected answer, or every
/// pair of answers (no winner) when all were bad.
fn pairs<'a>(row: &Map<String, Value>, answers: &'a [Answer<'a>]) -> Vec<(&'a Answer<'a>, &'a Answer<'a>, bool)> {
    let find = |id: &str| answers.iter().find(|a| a.id == id);
    if row.get("all_bad").and_then(Value::as_bool).unwrap_or(false) {
        let mut out = Vec::new();
        for (i, a) in answers.iter().enumerate() {
            out.extend(answers[i + 1..].iter().map(|b| (a, b, false)));
        }
        return out;
    }
    let Some(chosen) = row.get("chosen_response_id").and_then(Value::as_str).and_then(find) else { return Vec::new() };
    row.get("rejected_response_ids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().and_then(find))
        .map(|rejected| (chosen, rejected, true))
        .collect()
}

/// FNV-1a, to alternate sides deterministically.
fn side_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn records(format: ExportFormat, row: &Map<String, Value>, scorer_version: &str) -> Vec<Value> {
    let answers = answers(row);
    let prompt = text(row, "prompt");
    match format {
        ExportFormat::Dpo => pairs(row, &answers)
            .into_iter()
            .filter(|(_, _, decided)| *decided)
            .map(|(chosen, rejected, _)| json!({ "prompt": prompt, "chosen": chosen.text, "rejected": rejected.text }))
            .collect(),
        ExportFormat::Arena => {
            let id = text(row, "event_id");
            pairs(row, &answers)
                .into_iter()
                .map(|(first, second, decided)| {
                    let swap = side_hash(&format!("{id}/{}/{}", first.id, second.id)) & 1 == 1;
                    let (a, b) = if swap { (second, first) } else { (first, second) };
                    let winner = match (decided, swap) {
                        (false, _) => "tie (bothbad)",
                        (true, false) => "model_a",
                        (true, true) => "model_b",
                    };
                    let conversation = |answer: &Answer<'_>| {
                        json!([{ "role": "user", "content": prompt }, { "role": "assistant", "content": answer.text }])
                    };
                    json!({
                        "question_id": format!("{id}/{}-{}", a.id, b.id),
                        "model_a": a.model,
                        "model_b": b.model,
                        "winner": winner,
                        "judge": text(row, "contributor_id"),
                        "conversation_a": conversation(a),
                        "conversation_b": conversation(b),
                        "turn": 1,
                        "anony": true,
                        "language": Value::Null,
                        "tstamp": row.get("occurred_at").cloned().unwrap_or(Value::Null),
                    })
                })
                .collect()
        }
        ExportFormat::Jsonl => vec![json!({
            "preference_id": text(row, "event_id"),
            "turn_id": text(row, "turn_id"),
            "contributor_id": text(row, "contributor_id"),
            "occurred_at": row.get("occurred_at"),
            "prompt": prompt,
            "responses": answers.iter().map(|a| json!({ "response_id": a.id, "model": a.model, "text": a.text })).collect::<Vec<_>>(),
            "chosen_response_id": row.get("chosen_response_id"),
            "rejected_response_ids": row.get("rejected_response_ids"),
            "all_bad": row.get("all_bad"),
            "rating": row.get("rating"),
            "reason": row.get("reason"),
            "scores": { "turn": row.get("turn_score"), "preference": row.get("preference_score"), "scorer_version": scorer_version },
        })],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(all_bad: bool) -> Map<String, Value> {
        json!({
            "event_id": "p1", "contributor_id": "c1", "turn_id": "t1", "occurred_at": "2026-11-20T08:00:00Z",
            "prompt": "Why is the sky blue?",
            "responses": [
                {"response_id": "a", "model": "m1", "text": "Rayleigh scattering."},
                {"response_id": "b", "model": "m2", "text": "Because."},
                {"response_id": "c", "model": "m3", "text": "Oxygen is blue."},
            ],
            "chosen_response_id": if all_bad { Value::Null } else { json!("a") },
            "rejected_response_ids": if all_bad { json!([]) } else { json!(["b", "c"]) },
            "all_bad": all_bad, "rating": 4, "reason": null, "turn_score": 0.9, "preference_score": 1.0,
        })
        .as_object()
        .expect("object")
        .clone()
    }

    #[test]
    fn dpo_pairs_the_chosen_answer_with_each_rejected_one() {
        let out = records(ExportFormat::Dpo, &row(false), "v");
        assert_eq!(
            out,
            [
                json!({"prompt": "Why is the sky blue?", "chosen": "Rayleigh scattering.", "rejected": "Because."}),
                json!({"prompt": "Why is the sky blue?", "chosen": "Rayleigh scattering.", "rejected": "Oxygen is blue."}),
            ]
        );
        assert!(records(ExportFormat::Dpo, &row(true), "v").is_empty(), "no chosen answer, no DPO pair");
    }

    #[test]
    fn arena_battles_name_the_winner_on_either_side() {
        for r in records(ExportFormat::Arena, &row(false), "v") {
            let winner = r["winner"].as_str().expect("winner");
            let side = if winner == "model_a" { "conversation_a" } else { "conversation_b" };
            assert_eq!(r[side][1]["content"], "Rayleigh scattering.", "{r}");
            assert_eq!(r[side][0]["content"], "Why is the sky blue?");
        }
        let ties = records(ExportFormat::Arena, &row(true), "v");
        assert_eq!(ties.len(), 3);
        assert!(ties.iter().all(|r| r["winner"] == "tie (bothbad)"));
    }

    #[test]
    fn bad_specs_are_refused() {
        let spec = |min_quality, version: &str| ExportSpec {
            format: ExportFormat::Jsonl,
            min_quality,
            scorer_version: version.into(),
        };
        assert!(spec(0.5, "text-1.0.0").check().is_ok());
        assert!(spec(1.5, "text-1.0.0").check().is_err());
        assert!(spec(f64::NAN, "text-1.0.0").check().is_err());
        assert!(spec(0.5, "x' OR '1'='1").check().is_err());
    }
}
