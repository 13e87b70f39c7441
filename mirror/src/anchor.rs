//! Anchor records: one small document that commits to everything recorded so far — the SHA-256
//! of every submission record at the target, under one RFC 6962 Merkle root, and the Merkle
//! root of every closed rewards epoch — chained to the anchor before it by its hash.
//!
//! The mirror writes a new anchor (`anchors/<sequence>.json`) after a pass that added records
//! or closed epochs. Putting one anchor's hash on a chain commits to the whole history before
//! it; on a Greenfield target the anchor is itself an object, whose integrity hashes the chain
//! records when the provider seals it. `gata greenfield verify` re-hashes the records an anchor
//! lists, recomputes its root and compares its epoch roots with the lake's payouts.

use std::collections::BTreeMap;

use gata_rewards::merkle;
use serde::{Deserialize, Serialize};

use crate::progress::Entry;

/// The anchor document's schema id.
pub const SCHEMA: &str = "gata.anchor.v1";

/// The `kind` of anchor entries in the progress table (their `table_name` too).
pub const KIND: &str = "anchor";

/// A submission record an anchor commits to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    /// Its path at the target.
    pub path: String,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// A closed rewards epoch's payout root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRoot {
    /// The epoch's index.
    pub epoch: i64,
    /// The policy version that paid it.
    pub policy_version: String,
    /// Merkle root of its payouts, hex.
    pub root: String,
}

/// An anchor document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// [`SCHEMA`].
    pub schema: String,
    /// 1 for the first anchor, then one more each time.
    pub sequence: i64,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// SHA-256 of the previous anchor's bytes, hex (none for the first).
    pub previous_sha256: Option<String>,
    /// Every submission record at the target, by path.
    pub records: Vec<RecordRef>,
    /// RFC 6962 root over the records, each leaf `path "\n" sha256`, hex.
    pub records_root: String,
    /// Every closed epoch's root, by epoch and policy version.
    pub epochs: Vec<EpochRoot>,
}

impl Anchor {
    /// Where anchor `sequence` lives at the target.
    pub fn path(sequence: i64) -> String {
        format!("anchors/{sequence:010}.json")
    }
}

/// The RFC 6962 root over `records`, hex.
pub fn records_root(records: &[RecordRef]) -> String {
    let leaves: Vec<merkle::Hash> =
        records.iter().map(|r| merkle::leaf_hash(format!("{}\n{}", r.path, r.sha256).as_bytes())).collect();
    hex::encode(merkle::root(&leaves))
}

/// The submission records among `entries`, by path.
pub fn records_in(entries: &[Entry]) -> Vec<RecordRef> {
    let by_path: BTreeMap<&str, &str> =
        entries.iter().filter(|e| e.kind == "record").map(|e| (e.path.as_str(), e.sha256.as_str())).collect();
    by_path.into_iter().map(|(path, sha256)| RecordRef { path: path.into(), sha256: sha256.into() }).collect()
}

/// The next anchor over `entries` and `epochs`, or `None` when it would commit to what
/// `previous` (the last anchor and the SHA-256 of its bytes) already does.
pub fn next(entries: &[Entry], mut epochs: Vec<EpochRoot>, previous: Option<(&Anchor, String)>) -> Option<Anchor> {
    let records = records_in(entries);
    epochs.sort_by(|a, b| (a.epoch, &a.policy_version).cmp(&(b.epoch, &b.policy_version)));
    if records.is_empty() && epochs.is_empty() {
        return None;
    }
    let records_root = records_root(&records);
    if let Some((last, _)) = &previous
        && last.records_root == records_root
        && last.epochs == epochs
    {
        return None;
    }
    Some(Anchor {
        schema: SCHEMA.to_string(),
        sequence: previous.as_ref().map_or(1, |(last, _)| last.sequence + 1),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        previous_sha256: previous.map(|(_, sha)| sha),
        records,
        records_root,
        epochs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: &str, sha: &str) -> Entry {
        Entry {
            target: "file:///m/".into(),
            table_name: "chat_turns".into(),
            version: 1,
            path: path.into(),
            kind: kind.into(),
            size: 1,
            sha256: sha.into(),
            integrity: None,
            uploaded: true,
            mirrored_at: "2026-11-25T00:00:00Z".into(),
        }
    }

    #[test]
    fn anchors_chain_and_change_only_with_what_they_commit_to() {
        let entries = vec![entry("records/chat_turns/1.json", "record", "aa"), entry("silver/x.parquet", "data", "bb")];
        let epoch = EpochRoot { epoch: 7, policy_version: "v1".into(), root: "cc".into() };
        let first = next(&entries, vec![epoch.clone()], None).unwrap();
        assert_eq!((first.sequence, first.records.len()), (1, 1));
        let leaf = merkle::leaf_hash(b"records/chat_turns/1.json\naa");
        assert_eq!(first.records_root, hex::encode(leaf));
        assert!(next(&entries, vec![epoch.clone()], Some((&first, "ff".into()))).is_none());
        let more = [entries.clone(), vec![entry("records/chat_turns/2.json", "record", "dd")]].concat();
        let second = next(&more, vec![epoch], Some((&first, "ff".into()))).unwrap();
        assert_eq!((second.sequence, second.previous_sha256.as_deref()), (2, Some("ff")));
        assert_ne!(second.records_root, first.records_root);
        assert!(next(&[], Vec::new(), None).is_none());
    }
}
