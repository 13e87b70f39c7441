//! Verification of a mirror: every object the progress table records for a target is read back
//! from the target and re-hashed (SHA-256; for Greenfield also the 7 integrity hashes, both as
//! recomputed from the bytes and as the provider recorded them), every submission record's
//! files and row hashes are checked against what the target holds, and every anchor's records,
//! Merkle root, chain link and epoch roots are checked against the records and the lake.

use gata_lakehouse::TableId;
use sha2::{Digest, Sha256};

use crate::{
    Result,
    anchor::{self, Anchor, EpochRoot},
    progress::Entry,
    records::{SubmissionRecord, submissions_in},
    target::Target,
};

/// What a verification found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Objects checked.
    pub objects: u64,
    /// Submission records checked.
    pub records: u64,
    /// Submissions whose row hash was recomputed.
    pub submissions: u64,
    /// Anchors checked.
    pub anchors: u64,
    /// Every difference, one line each.
    pub problems: Vec<String>,
}

/// Re-hashes at `target` everything `entries` records; anchors' epoch roots are checked against
/// `epochs` (the lake's).
pub async fn verify(target: &Target, entries: &[Entry], epochs: &[EpochRoot]) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    for entry in entries {
        report.objects += 1;
        let Some(bytes) = target.get(&entry.path).await? else {
            report.problems.push(format!("{}: missing at the target", entry.path));
            continue;
        };
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != entry.sha256 || bytes.len() as i64 != entry.size {
            report.problems.push(format!(
                "{}: sha256 {sha} ({} bytes), recorded {} ({} bytes)",
                entry.path,
                bytes.len(),
                entry.sha256,
                entry.size
            ));
            continue;
        }
        if let Some(recorded) = &entry.integrity {
            let computed = target
                .checksums(&bytes)
                .await?
                .integrity
                .map(|h| h.hashes.iter().map(hex::encode).collect::<Vec<_>>().join(","));
            let held = target
                .recorded_integrity(&entry.path)
                .await?
                .map(|h| h.iter().map(hex::encode).collect::<Vec<_>>().join(","));
            if computed.as_ref() != Some(recorded) || held.as_ref() != Some(recorded) {
                report.problems.push(format!("{}: Greenfield integrity hashes differ from the record", entry.path));
            }
        }
        if entry.kind == "record" {
            check_record(target, entry, &bytes, entries, &mut report).await?;
        }
        if entry.kind == anchor::KIND {
            check_anchor(entry, &bytes, entries, epochs, &mut report);
        }
    }
    Ok(report)
}

fn check_anchor(entry: &Entry, bytes: &[u8], entries: &[Entry], epochs: &[EpochRoot], report: &mut VerifyReport) {
    report.anchors += 1;
    let mut problem = |what: String| report.problems.push(format!("{}: {what}", entry.path));
    let anchor: Anchor = match serde_json::from_slice(bytes) {
        Ok(a) => a,
        Err(e) => return problem(format!("not an anchor: {e}")),
    };
    for record in &anchor.records {
        let held = entries.iter().find(|e| e.kind == "record" && e.path == record.path);
        if held.map(|e| &e.sha256) != Some(&record.sha256) {
            problem(format!("record {} is not mirrored with sha256 {}", record.path, record.sha256));
        }
    }
    if anchor::records_root(&anchor.records) != anchor.records_root {
        problem("the records do not hash to records_root".into());
    }
    let previous = entries.iter().find(|e| e.kind == anchor::KIND && e.version == anchor.sequence - 1);
    if previous.map(|e| &e.sha256) != anchor.previous_sha256.as_ref() {
        problem("previous_sha256 is not the previous anchor's hash".into());
    }
    for epoch in &anchor.epochs {
        if !epochs.contains(epoch) {
            problem(format!("epoch {} ({}) root {} is not the lake's", epoch.epoch, epoch.policy_version, epoch.root));
        }
    }
}

async fn check_record(
    target: &Target,
    entry: &Entry,
    bytes: &[u8],
    entries: &[Entry],
    report: &mut VerifyReport,
) -> Result<()> {
    report.records += 1;
    let record: SubmissionRecord = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => {
            report.problems.push(format!("{}: not a submission record: {e}", entry.path));
            return Ok(());
        }
    };
    let Some(table) = TableId::ALL.into_iter().find(|t| t.name() == record.table) else {
        report.problems.push(format!("{}: unknown table {}", entry.path, record.table));
        return Ok(());
    };
    let mut recomputed = Vec::new();
    for file in &record.files {
        let recorded = entries.iter().find(|e| e.path == file.path);
        if recorded.map(|e| &e.sha256) != Some(&file.sha256) {
            report
                .problems
                .push(format!("{}: file {} is not mirrored with sha256 {}", entry.path, file.path, file.sha256));
            continue;
        }
        if let Some(data) = target.get(&file.path).await? {
            match submissions_in(table, &file.path, &data) {
                Ok(rows) => recomputed.extend(rows),
                Err(e) => report.problems.push(format!("{}: file {} does not read: {e}", entry.path, file.path)),
            }
        }
    }
    for submission in &record.submissions {
        report.submissions += 1;
        let found = recomputed.iter().find(|s| s.event_id == submission.event_id);
        match found {
            Some(s)
                if s.content_sha256 == submission.content_sha256 && s.contributor_id == submission.contributor_id => {}
            Some(_) => {
                report.problems.push(format!("{}: submission {} differs from its row", entry.path, submission.event_id))
            }
            None => report
                .problems
                .push(format!("{}: submission {} is in none of the files", entry.path, submission.event_id)),
        }
    }
    if recomputed.len() != record.submissions.len() {
        report.problems.push(format!(
            "{}: the files hold {} submissions, the record lists {}",
            entry.path,
            recomputed.len(),
            record.submissions.len()
        ));
    }
    Ok(())
}
