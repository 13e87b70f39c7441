//! The mirror role: follows the Delta commits of every lake table and copies each committed
//! version to the target — the data files the commit adds, then (for submission tables) the
//! batch's submission record, then the commit file itself, so a reader of the mirror never
//! meets a commit whose files are missing. Every object is checked at the target first: the
//! same bytes are skipped (idempotent, so a crash mid-version costs nothing but the checks),
//! other bytes under the same name stop the pass (nothing is overwritten). Paths are the lake's:
//! the mirror of a table is itself a readable Delta table.

use std::collections::BTreeMap;

use bytes::Bytes;
use deltalake::logstore::ObjectStoreRef;
use gata_infra::config::MirrorConfig;
use gata_lakehouse::{Lake, TableId};
use percent_encoding::percent_decode_str;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

use gata_greenfield::{ChainClient, chain::MSGS_PER_TX, tags::MsgSetTag, tx::Msg};
use sha2::Digest as _;

use crate::{
    GrantReport, GrantSync, MirrorError, Result,
    anchor::{self, Anchor, EpochRoot},
    progress::{Entry, Progress},
    rate::RateLimit,
    records::{SUBMISSION_TABLES, SubmissionRecord, add_scores, submissions_in},
    target::{Presence, Target},
};

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Objects sent.
    pub uploaded: u64,
    /// Objects found already at the target.
    pub present: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Table versions completed, by table.
    pub versions: BTreeMap<String, i64>,
    /// Files a commit names that were gone from the lake (vacuumed before they were mirrored).
    pub missing: u64,
    /// Marketplace access sent to Greenfield (when the mirror syncs grants).
    pub grants: GrantReport,
    /// The sequence of the anchor this pass wrote, if it wrote one.
    pub anchor: Option<i64>,
    /// Whether some table has committed versions this pass left for the next.
    pub behind: bool,
    /// Objects tagged on chain (Greenfield targets with a chain client).
    pub tagged: u64,
}

#[derive(Clone)]
struct Metrics {
    objects: IntCounterVec,
    bytes: IntCounterVec,
    version: IntGaugeVec,
}

impl Metrics {
    fn new(registry: &Registry) -> Result<Metrics> {
        let register = |e: prometheus::Error| MirrorError::Config(format!("metrics: {e}"));
        let objects = IntCounterVec::new(
            Opts::new(
                "gata_mirror_objects_total",
                "Objects the mirror handled, by outcome (uploaded, present, missing)",
            ),
            &["outcome"],
        )
        .map_err(register)?;
        let bytes = IntCounterVec::new(Opts::new("gata_mirror_bytes_total", "Bytes the mirror sent"), &["target"])
            .map_err(register)?;
        let version = IntGaugeVec::new(
            Opts::new("gata_mirror_version", "Last table version completely mirrored, by table"),
            &["table"],
        )
        .map_err(register)?;
        for c in [
            Box::new(objects.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(bytes.clone()),
            Box::new(version.clone()),
        ] {
            // Registering twice (a second mirror in one process) keeps the first registration.
            let _ = registry.register(c);
        }
        Ok(Metrics { objects, bytes, version })
    }
}

fn delta_error(table: TableId) -> impl Fn(deltalake::DeltaTableError) -> MirrorError {
    move |source| MirrorError::Delta { what: table.name().to_string(), source: Box::new(source) }
}

/// A mirror of one lake to one target.
pub struct Mirror {
    lake: Lake,
    source: ObjectStoreRef,
    target: Target,
    progress: Progress,
    rate: RateLimit,
    /// Pacing: `interval`, `versions_per_pass`, `rate_limit_bytes_per_second` (`[mirror]`).
    cfg: MirrorConfig,
    metrics: Metrics,
    grants: Option<GrantSync>,
    /// Tags mirrored objects on chain (Greenfield targets).
    chain: Option<ChainClient>,
    /// Tags of the objects of the versions being mirrored, sent before their progress is
    /// recorded (setting tags again after a crash changes nothing).
    tags: Vec<MsgSetTag>,
    /// Whether versions were mirrored since the last anchor check (and before the first one).
    unanchored: bool,
}

impl Mirror {
    /// A mirror of `lake` to `target`, resuming from the progress the lake records.
    pub async fn new(lake: Lake, target: Target, cfg: MirrorConfig, registry: &Registry) -> Result<Mirror> {
        let source = lake
            .builder(lake.root())
            .and_then(|b| b.build_storage())
            .map_err(|source| MirrorError::Delta { what: format!("lake {}", lake.root()), source: Box::new(source) })?
            .object_store(None);
        let progress = Progress::open(&lake).await?;
        Ok(Mirror {
            rate: RateLimit::new(cfg.rate_limit_bytes_per_second),
            metrics: Metrics::new(registry)?,
            lake,
            source,
            target,
            progress,
            cfg,
            grants: None,
            chain: None,
            tags: Vec::new(),
            unanchored: true,
        })
    }

    /// Also tags every object sent to a Greenfield target on chain with what it is: its table
    /// and version, its SHA-256 and submission record (data files), its schema and submission
    /// count (records).
    pub fn with_chain(mut self, chain: ChainClient) -> Mirror {
        self.chain = Some(chain);
        self
    }

    /// Also keeps the bucket's object policies in line with the marketplace after each pass
    /// (Greenfield targets).
    pub fn with_grants(mut self, grants: GrantSync) -> Mirror {
        self.grants = Some(grants);
        self
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The progress table (what `verify` reads).
    pub fn progress(&mut self) -> &mut Progress {
        &mut self.progress
    }

    /// Runs passes every `interval` until `stop`; a failed pass is logged and retried next time.
    pub async fn run(mut self, stop: CancellationToken) {
        tracing::info!(target = %self.target.url(), "mirror started");
        loop {
            match self.pass().await {
                Ok(report) if report.uploaded > 0 || report.missing > 0 || report.grants != GrantReport::default() => {
                    tracing::info!(uploaded = report.uploaded, present = report.present, bytes = report.bytes, missing = report.missing, versions = ?report.versions, granted = report.grants.granted, revoked = report.grants.revoked, "mirror pass");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "mirror pass failed; retrying next interval"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.cfg.interval) => {}
            }
        }
    }

    /// Mirrors, for every table, the committed versions after its recorded progress (at most
    /// `versions_per_pass` of them).
    pub async fn pass(&mut self) -> Result<PassReport> {
        let mut report = PassReport::default();
        for table in TableId::ALL {
            self.mirror_table(table, &mut report).await?;
        }
        // Anchors commit to caught-up states only, not to each step of a catch-up.
        self.unanchored |= !report.versions.is_empty();
        let anchor_due = self.unanchored && !report.behind;
        if anchor_due || self.grants.is_some() {
            let entries = self.progress.entries(self.target.url()).await?;
            if anchor_due {
                self.anchor(&entries, &mut report).await?;
                self.unanchored = false;
            }
            if let Some(grants) = self.grants.as_mut() {
                report.grants = grants.sync(&self.target, &entries).await?;
            }
        }
        Ok(report)
    }

    /// The payout root of every closed rewards epoch in the lake.
    pub async fn epoch_roots(&self) -> Result<Vec<EpochRoot>> {
        if self.existing(TableId::Rewards).await?.is_none() {
            return Ok(Vec::new());
        }
        let epochs = gata_ledger::recorded_rewards(&self.lake, None).await?;
        Ok(epochs
            .into_iter()
            .map(|e| EpochRoot { epoch: e.epoch.index, policy_version: e.policy_version, root: hex::encode(e.root) })
            .collect())
    }

    /// Writes the next anchor when the records or epochs changed since the last one.
    async fn anchor(&mut self, entries: &[Entry], report: &mut PassReport) -> Result<()> {
        let epochs = self.epoch_roots().await?;
        let previous = match entries.iter().filter(|e| e.kind == anchor::KIND).max_by_key(|e| e.version) {
            None => None,
            Some(last) => {
                let decode = |reason: String| MirrorError::Decode { path: last.path.clone(), reason };
                let bytes = self.target.get(&last.path).await?.ok_or_else(|| decode("not at the target".into()))?;
                let anchor: Anchor = serde_json::from_slice(&bytes).map_err(|e| decode(e.to_string()))?;
                Some((anchor, hex::encode(sha2::Sha256::digest(&bytes))))
            }
        };
        let Some(next) = anchor::next(entries, epochs, previous.as_ref().map(|(a, sha)| (a, sha.clone()))) else {
            return Ok(());
        };
        let bytes = Bytes::from(serde_json::to_vec_pretty(&next).expect("anchors serialize"));
        let path = Anchor::path(next.sequence);
        let entry = self.put(anchor::KIND, next.sequence, &path, bytes, anchor::KIND, report).await?;
        self.progress.record_anchor(&entry).await?;
        report.anchor = Some(next.sequence);
        Ok(())
    }

    /// `table`, not yet loaded, or `None` when it does not exist (yet).
    async fn existing(&self, table: TableId) -> Result<Option<deltalake::DeltaTable>> {
        let unloaded =
            self.lake.builder(&self.lake.table_url(table)).and_then(|b| b.build()).map_err(delta_error(table))?;
        Ok(unloaded.verify_deltatable_existence().await.map_err(delta_error(table))?.then_some(unloaded))
    }

    async fn mirror_table(&mut self, table: TableId, report: &mut PassReport) -> Result<()> {
        let Some(mut delta) = self.existing(table).await? else { return Ok(()) };
        delta.load().await.map_err(delta_error(table))?;
        let Some(latest) = delta.version().map(|v| v as i64) else { return Ok(()) };
        let target_url = self.target.url().clone();
        let done = self.progress.done(&target_url, table).await?;
        let first = done.map_or(0, |d| d + 1);
        if first > latest {
            return Ok(());
        }
        let last = latest.min(first + self.cfg.versions_per_pass.max(1) - 1);
        report.behind |= last < latest;
        let mut entries = Vec::new();
        self.tags.clear();
        for version in first..=last {
            self.mirror_version(table, version, &mut entries, report).await?;
        }
        self.send_tags(report).await?;
        self.progress.record(&target_url, table, last, &entries).await?;
        self.metrics.version.with_label_values(&[table.name()]).set(last);
        report.versions.insert(table.name().to_string(), last);
        Ok(())
    }

    async fn mirror_version(
        &mut self,
        table: TableId,
        version: i64,
        entries: &mut Vec<Entry>,
        report: &mut PassReport,
    ) -> Result<()> {
        let start = entries.len();
        let commit_path = format!("{}/_delta_log/{version:020}.json", table.path());
        let Some(commit) = self.read_source(&commit_path).await? else {
            tracing::warn!(
                table = table.name(),
                version,
                "commit file is gone from the lake (log cleanup); not mirrored"
            );
            report.missing += 1;
            self.metrics.objects.with_label_values(&["missing"]).inc();
            return Ok(());
        };
        let mut committed_at = None;
        let mut added = Vec::new();
        for line in commit.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| MirrorError::Decode { path: commit_path.clone(), reason: e.to_string() })?;
            if let Some(path) = action.pointer("/add/path").and_then(|p| p.as_str()) {
                added.push(percent_decode_str(path).decode_utf8_lossy().into_owned());
            }
            if let Some(ts) = action.pointer("/commitInfo/timestamp").and_then(|t| t.as_i64()) {
                committed_at = Some(ts);
            }
        }
        let mut files = Vec::new();
        let mut submissions = Vec::new();
        for relative in added {
            let path = format!("{}/{relative}", table.path());
            let Some(bytes) = self.read_source(&path).await? else {
                tracing::warn!(table = table.name(), version, %path, "data file is gone from the lake (vacuumed); not mirrored");
                report.missing += 1;
                self.metrics.objects.with_label_values(&["missing"]).inc();
                continue;
            };
            if SUBMISSION_TABLES.contains(&table) {
                submissions.extend(submissions_in(table, &path, &bytes)?);
            }
            let entry = self.put(table.name(), version, &path, bytes, "data", report).await?;
            files.push(crate::records::FileRef { path, size: entry.size as u64, sha256: entry.sha256.clone() });
            entries.push(entry);
        }
        if !submissions.is_empty() {
            add_scores(&self.lake, &mut submissions).await?;
            let record = SubmissionRecord {
                schema: crate::records::SCHEMA.to_string(),
                table: table.name().to_string(),
                version,
                committed_at,
                files,
                submissions,
            };
            let bytes = Bytes::from(serde_json::to_vec_pretty(&record).expect("records serialize"));
            entries.push(
                self.put(table.name(), version, &SubmissionRecord::path(table, version), bytes, "record", report)
                    .await?,
            );
        }
        entries.push(self.put(table.name(), version, &commit_path, commit, "log", report).await?);
        self.tag(&entries[start..]);
        Ok(())
    }

    /// Queues the tags of one version's objects (Greenfield targets with a chain client).
    fn tag(&mut self, version_entries: &[Entry]) {
        let Some(chain) = &self.chain else { return };
        let operator = chain.account().address().to_string();
        let record = version_entries.iter().find(|e| e.kind == "record").map(|e| e.path.clone());
        for e in version_entries {
            let mut pairs = vec![("gata-table", e.table_name.clone()), ("gata-version", e.version.to_string())];
            match e.kind.as_str() {
                "data" => {
                    pairs.push(("gata-sha256", e.sha256.clone()));
                    pairs.extend(record.clone().map(|r| ("gata-record", r)));
                }
                "record" => pairs.push(("gata-schema", crate::records::SCHEMA.to_string())),
                _ => {}
            }
            let Some((bucket, object)) = self.target.greenfield_object(&e.path) else { return };
            let resource = gata_greenfield::policy::object_grn(bucket, &object);
            self.tags.push(MsgSetTag::new(operator.clone(), resource, &pairs));
        }
    }

    /// Sends the queued tags, several per transaction.
    async fn send_tags(&mut self, report: &mut PassReport) -> Result<()> {
        let Some(chain) = &self.chain else { return Ok(()) };
        for batch in self.tags.chunks(MSGS_PER_TX) {
            let msgs: Vec<&dyn Msg> = batch.iter().map(|m| m as &dyn Msg).collect();
            chain.submit(&msgs, "gata mirror: object metadata").await?;
            report.tagged += batch.len() as u64;
        }
        self.tags.clear();
        Ok(())
    }

    async fn read_source(&self, path: &str) -> Result<Option<Bytes>> {
        crate::target::read(&self.source, path).await
    }

    /// Sends `bytes` to `path` unless the target holds them already; a record or anchor found
    /// with other bytes (made by a pass that crashed before recording its progress) is kept as
    /// it is.
    async fn put(
        &mut self,
        table_name: &str,
        version: i64,
        path: &str,
        bytes: Bytes,
        kind: &str,
        report: &mut PassReport,
    ) -> Result<Entry> {
        let mut checksums = self.target.checksums(&bytes).await?;
        let mut size = bytes.len();
        let uploaded = match self.target.presence(path, &checksums).await? {
            Presence::Same => false,
            Presence::Absent => {
                self.rate.acquire(bytes.len() as u64).await;
                let content_type =
                    if path.ends_with(".json") { "application/json" } else { "application/octet-stream" };
                self.target.put(path, bytes, content_type).await?;
                true
            }
            Presence::Different(_) if kind == "record" || kind == anchor::KIND => {
                let held = self.target.get(path).await?.unwrap_or_default();
                checksums = self.target.checksums(&held).await?;
                size = held.len();
                false
            }
            Presence::Different(found) => {
                return Err(MirrorError::Conflict {
                    path: path.to_string(),
                    found,
                    expected: hex::encode(checksums.sha256),
                });
            }
        };
        if uploaded {
            report.uploaded += 1;
            report.bytes += size as u64;
            self.metrics.objects.with_label_values(&["uploaded"]).inc();
            self.metrics.bytes.with_label_values(&[self.target.url().scheme()]).inc_by(size as u64);
        } else {
            report.present += 1;
            self.metrics.objects.with_label_values(&["present"]).inc();
        }
        Ok(Entry {
            target: self.target.url().to_string(),
            table_name: table_name.to_string(),
            version,
            path: path.to_string(),
            kind: kind.to_string(),
            size: size as i64,
            sha256: hex::encode(checksums.sha256),
            integrity: checksums.integrity.map(|h| h.hashes.iter().map(hex::encode).collect::<Vec<_>>().join(",")),
            uploaded,
            mirrored_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        })
    }
}
