//! Submission records: for every commit of a submission table (chat turns, preferences,
//! image-text pairs) — one batch of submissions — who submitted what, when and how, written
//! next to the mirrored data as `records/<table>/<version>.json`:
//!
//! - the commit (table, version, commit time) and its data files with their SHA-256;
//! - per submission: event id, contributor, the principal that submitted it and its author's
//!   signature (when signed: anyone can recover the signer from the row), kind, when it
//!   occurred and was received, the
//!   SHA-256 of its row (the row as one line of Arrow's JSON writer: every column of the silver
//!   table, partition columns aside), and the quality scores recorded for it when the record
//!   was made.
//!
//! `gata greenfield verify` re-reads the files, recomputes every hash and compares.

use bytes::Bytes;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use gata_lakehouse::{Lake, TableId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{MirrorError, Result};

/// The record format's name.
pub const SCHEMA: &str = "gata.submission_record.v1";

/// The tables whose commits are submission batches.
pub const SUBMISSION_TABLES: [TableId; 3] = [TableId::ChatTurns, TableId::Preferences, TableId::ImageTextPairs];

/// A data file of the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Lake-relative path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// A score recorded for a submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRef {
    /// The scorer (or DVA model) version.
    pub scorer_version: String,
    /// The score.
    pub score: f64,
    /// `accept` or `reject`.
    pub verdict: String,
}

/// One submission of the batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    /// The event id.
    pub event_id: String,
    /// Whose submission it is.
    pub contributor_id: String,
    /// The principal that submitted it, as intake recorded it (absent before provenance was
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
    /// Its author's EIP-712 signature, when it was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// `chat_turn`, `preference` or `image_text_pair`.
    pub kind: String,
    /// When the contributor says it happened.
    pub occurred_at: String,
    /// When the platform received it.
    pub received_at: String,
    /// SHA-256 of its row, hex.
    pub content_sha256: String,
    /// Its scores so far.
    pub scores: Vec<ScoreRef>,
}

/// Who submitted what, when and how, for one commit of a submission table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmissionRecord {
    /// [`SCHEMA`].
    pub schema: String,
    /// The table.
    pub table: String,
    /// The table version of the commit.
    pub version: i64,
    /// The commit's time (Unix milliseconds), when the commit says.
    pub committed_at: Option<i64>,
    /// The data files the commit added.
    pub files: Vec<FileRef>,
    /// The submissions in them.
    pub submissions: Vec<Submission>,
}

impl SubmissionRecord {
    /// Where the record of `table` at `version` is written.
    pub fn path(table: TableId, version: i64) -> String {
        format!("records/{}/{version:020}.json", table.name())
    }
}

fn kind_of(table: TableId) -> &'static str {
    match table {
        TableId::Preferences => "preference",
        TableId::ImageTextPairs => "image_text_pair",
        _ => "chat_turn",
    }
}

/// The submissions in one Parquet data file of `table`, without scores.
pub fn submissions_in(table: TableId, path: &str, bytes: &Bytes) -> Result<Vec<Submission>> {
    let bad = |reason: String| MirrorError::Decode { path: path.to_string(), reason };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        .and_then(|b| b.build())
        .map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
        writer.write(&batch).map_err(|e| bad(e.to_string()))?;
        writer.finish().map_err(|e| bad(e.to_string()))?;
        for line in writer.into_inner().split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let row: serde_json::Value = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
            let optional = |key: &str| row.get(key).and_then(|v| v.as_str()).map(str::to_string);
            let text = |key: &str| optional(key).unwrap_or_default();
            out.push(Submission {
                event_id: text("event_id"),
                contributor_id: text("contributor_id"),
                submitted_by: optional("submitted_by"),
                signature: optional("signature"),
                kind: kind_of(table).to_string(),
                occurred_at: text("occurred_at"),
                received_at: text("received_at"),
                content_sha256: hex::encode(Sha256::digest(line)),
                scores: Vec::new(),
            });
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct ScoreRow {
    subject_event_id: String,
    scorer_version: String,
    score: f64,
    verdict: String,
}

/// Adds the scores the lake holds for `submissions`.
pub async fn add_scores(lake: &Lake, submissions: &mut [Submission]) -> Result<()> {
    if submissions.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = submissions.iter().map(|s| format!("'{}'", s.event_id.replace('\'', "''"))).collect();
    let ctx = lake.session(&[TableId::QualityScores]).await?;
    let sql = format!(
        "SELECT subject_event_id, scorer_version, score, verdict FROM quality_scores \
         WHERE subject_event_id IN ({}) ORDER BY subject_event_id, scorer_version",
        ids.join(",")
    );
    let rows: Vec<ScoreRow> = Lake::rows(&ctx, TableId::QualityScores, &sql).await?;
    for submission in submissions.iter_mut() {
        submission.scores = rows
            .iter()
            .filter(|r| r.subject_event_id == submission.event_id)
            .map(|r| ScoreRef { scorer_version: r.scorer_version.clone(), score: r.score, verdict: r.verdict.clone() })
            .collect();
    }
    Ok(())
}
