//! Opening the lake's tables and appending to them with exactly-once bookkeeping.
//!
//! [`Lake::append`] writes one record batch and, in the same Delta commit, one `txn` action per
//! topic-partition the batch covers (see [`gata_contract::offsets`]). Delta commits are atomic: either
//! the rows and the new positions are both visible, or neither is. A writer that crashes
//! mid-commit leaves at most orphaned Parquet files that no commit references (vacuum removes
//! them). Concurrent writers to one table are serialized by Delta's optimistic concurrency:
//! appends for different partitions do not conflict and are retried by delta-rs on a version
//! race; two for one partition carry the same `txn` application id, and the later one is
//! refused. A writer learns what others committed with [`Lake::catch_up`] and
//! [`Lake::event_ids_since`].

use std::collections::{BTreeMap, HashMap, HashSet};

pub use deltalake::kernel::Transaction;
use deltalake::{
    DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty,
    arrow::{array::AsArray, compute::cast, datatypes::DataType, record_batch::RecordBatch},
    datafusion::prelude::{ParquetReadOptions, SessionContext},
    kernel::{StructField, StructType, engine::arrow_conversion::TryIntoKernel as _, transaction::CommitProperties},
    operations::create::CreateBuilder,
    protocol::SaveMode,
};
use url::Url;

use crate::{LakeError, Offset, Result, TableId, TopicPartition};

/// The lake root and how to reach its tables.
#[derive(Clone)]
pub struct Lake {
    root: Url,
    options: HashMap<String, String>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake").field("root", &self.root.as_str()).field("options", &self.options.keys()).finish()
    }
}

/// Makes `s3://` (and `s3a://`) lake URLs known to delta-rs, once per process.
fn register_object_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| deltalake::aws::register_handlers(None));
}

impl Lake {
    /// A lake rooted at `uri` (`file:///abs/path`, `s3://bucket/prefix`, `memory:///`), reached
    /// with object-store `options` (endpoint, region, credentials; `AWS_*` environment variables
    /// are read too). A local root is created.
    pub fn new(uri: &str, options: &BTreeMap<String, String>) -> Result<Lake> {
        register_object_stores();
        let bad = |reason: String| LakeError::Location { uri: uri.to_string(), reason };
        let mut root = Url::parse(uri).map_err(|e| bad(e.to_string()))?;
        if root.scheme() == "file" {
            let path = root.to_file_path().map_err(|_| bad("not an absolute local path".into()))?;
            std::fs::create_dir_all(&path).map_err(|e| bad(e.to_string()))?;
        }
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        Ok(Lake { root, options: options.iter().map(|(k, v)| (k.clone(), v.clone())).collect() })
    }

    /// The lake root.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Where `table` lives.
    pub fn table_url(&self, table: TableId) -> Url {
        self.root.join(&format!("{}/", table.path())).expect("table paths are relative URL paths")
    }

    /// Opens `table`, creating it empty (schema, partitioning) when it does not exist yet.
    /// Safe to race with another process doing the same.
    pub async fn open(&self, table: TableId) -> Result<DeltaTable> {
        let open_err = |source| LakeError::Open { table: table.name(), source };
        let schema: StructType = table.schema().as_ref().try_into_kernel().map_err(|e| open_err(e.into()))?;
        let (opened, existed) = self
            .open_or_create(&self.table_url(table), |create| {
                let create = match table.stats_columns() {
                    Some(columns) => {
                        create.with_configuration_property(TableProperty::DataSkippingStatsColumns, Some(columns))
                    }
                    None => create,
                };
                create
                    .with_table_name(table.name())
                    .with_comment(table.description())
                    .with_columns(schema.fields().cloned())
                    .with_partition_columns(table.partition_columns().iter().copied())
            })
            .await
            .map_err(open_err)?;
        if existed { self.evolve(opened, table).await } else { Ok(opened) }
    }

    /// The table at `url`, loaded when it exists (`true`), or else created by `create` (a
    /// create builder given its name, schema and properties); a table another process created
    /// between the check and the commit is loaded. The directory of a `file://` table is made
    /// first.
    pub async fn open_or_create(
        &self,
        url: &Url,
        create: impl FnOnce(CreateBuilder) -> CreateBuilder,
    ) -> Result<(DeltaTable, bool), DeltaTableError> {
        if url.scheme() == "file" {
            let path = url.to_file_path().map_err(|_| DeltaTableError::InvalidTableLocation(url.to_string()))?;
            std::fs::create_dir_all(&path).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        }
        let unloaded = self.unloaded(url)?;
        if unloaded.verify_deltatable_existence().await? {
            return Ok((self.load(url).await?, true));
        }
        match create(unloaded.create()).with_save_mode(SaveMode::Ignore).await {
            Ok(t) => Ok((t, false)),
            // Another process created it between our check and our commit.
            Err(_) => Ok((self.load(url).await?, false)),
        }
    }

    /// Adds the columns `id`'s schema has and the table lacks: a field added to a v1 event (an
    /// optional one: the new column is nullable, older rows read as null) reaches the table at
    /// the next start, in a commit of its own. A column the schema now allows to be null loses
    /// its `NOT NULL` the same way. Columns are never removed or retyped here.
    async fn evolve(&self, mut table: DeltaTable, id: TableId) -> Result<DeltaTable> {
        let open_err = |source| LakeError::Open { table: id.name(), source };
        let current = table.snapshot().map_err(open_err)?.schema();
        let wanted: StructType = id.schema().as_ref().try_into_kernel().map_err(|e| open_err(e.into()))?;
        let relaxed: Vec<String> = wanted
            .fields()
            .filter(|f| f.is_nullable() && current.field(f.name()).is_some_and(|c| !c.is_nullable()))
            .map(|f| f.name().clone())
            .collect();
        for column in relaxed {
            tracing::info!(table = id.name(), %column, "column may now be null; dropping its NOT NULL");
            table = table
                .drop_column_not_null()
                .with_column(column)
                .await
                .map_err(|source| LakeError::Commit { table: id.name(), source })?;
        }
        let current = table.snapshot().map_err(open_err)?.schema();
        let missing: Vec<_> = wanted
            .fields()
            .filter(|f| current.field(f.name()).is_none())
            .map(|f| StructField::new(f.name().clone(), f.data_type().clone(), true))
            .collect();
        if missing.is_empty() {
            return Ok(table);
        }
        let names: Vec<&str> = missing.iter().map(|f| f.name().as_str()).collect();
        tracing::info!(table = id.name(), columns = ?names, "adding new columns");
        table
            .add_columns()
            .with_fields(missing.clone())
            .await
            .map_err(|source| LakeError::Commit { table: id.name(), source })
    }

    /// A handle on the table at `url`, with this lake's options, not yet read.
    fn unloaded(&self, url: &Url) -> Result<DeltaTable, DeltaTableError> {
        self.builder(url)?.build()
    }

    /// A builder for the table at `url` (under this lake's root) with the lake's storage
    /// options: for reading a table at a version or a timestamp, or listing the root.
    pub fn builder(&self, url: &Url) -> Result<DeltaTableBuilder, DeltaTableError> {
        Ok(DeltaTableBuilder::from_url(url.clone())?.with_storage_options(self.options.clone()))
    }

    /// The table at `url`, at its latest version.
    async fn load(&self, url: &Url) -> Result<DeltaTable, DeltaTableError> {
        let mut table = self.unloaded(url)?;
        table.load().await?;
        Ok(table)
    }

    /// Appends `batch` to `table` and records `positions` (the last offset covered per
    /// topic-partition) in the same commit. Returns the table at its new version.
    pub async fn append(
        &self,
        table: DeltaTable,
        id: TableId,
        batch: RecordBatch,
        positions: &BTreeMap<TopicPartition, Offset>,
    ) -> Result<DeltaTable> {
        let txns = positions.iter().map(|(tp, off)| Transaction::new(tp.txn_app_id(), off.0)).collect();
        self.append_with(table, id, batch, txns).await
    }

    /// Appends `batch` to `table` with the `txns` (application id, version) in the same commit.
    /// The commit runs no post-commit hooks: delta-rs would otherwise list the whole log for
    /// expired entries after every commit and checkpoint on its own schedule; writers call
    /// [`Lake::checkpoint`] instead, which also cleans up expired log entries.
    pub async fn append_with(
        &self,
        table: DeltaTable,
        id: TableId,
        batch: RecordBatch,
        txns: Vec<Transaction>,
    ) -> Result<DeltaTable> {
        table
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(
                CommitProperties::default()
                    .with_application_transactions(txns)
                    .with_create_checkpoint(false)
                    .with_cleanup_expired_logs(Some(false)),
            )
            .await
            .map_err(|source| LakeError::Commit { table: id.name(), source })
    }

    /// The version `table` has recorded for transaction application `app_id` (absent: none).
    pub async fn transaction_version(&self, table: &DeltaTable, id: TableId, app_id: &str) -> Result<Option<i64>> {
        let read_err = |source| LakeError::Read { table: id.name(), source };
        let snapshot = table.snapshot().map_err(read_err)?.snapshot();
        snapshot.transaction_version(table.log_store().as_ref(), app_id).await.map_err(read_err)
    }

    /// The last offset `table` has recorded for each of `partitions` (absent: never written).
    pub async fn positions(
        &self,
        table: &DeltaTable,
        id: TableId,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Offset>> {
        let mut out = BTreeMap::new();
        for tp in partitions {
            if let Some(v) = self.transaction_version(table, id, &tp.txn_app_id()).await? {
                out.insert(tp, Offset(v));
            }
        }
        Ok(out)
    }

    /// Every `event_id` in `table` (what a deduplicating writer must not write again), held as
    /// 16-byte UUIDs: a million rows take tens of megabytes, not a hundred.
    pub async fn event_ids(&self, table: &DeltaTable, id: TableId) -> Result<HashSet<uuid::Uuid>> {
        self.uuids(table, id, "SELECT event_id FROM t").await
    }

    /// Brings `table` to its latest version; whether it moved (another writer committed).
    pub async fn catch_up(&self, table: &mut DeltaTable, id: TableId) -> Result<bool> {
        let before = table.version();
        table.update_incremental(None).await.map_err(|source| LakeError::Read { table: id.name(), source })?;
        Ok(table.version() != before)
    }

    /// The `event_id`s of the rows that the commits after version `after` (none: every commit)
    /// of `table`, up to its version, added. Only data changes count: a compaction rewrites rows already there. When a
    /// commit's log entry is gone (cleaned up after a checkpoint), every id in the table.
    pub async fn event_ids_since(
        &self,
        table: &DeltaTable,
        id: TableId,
        after: Option<u64>,
    ) -> Result<HashSet<uuid::Uuid>> {
        let read_err = |source| LakeError::Read { table: id.name(), source };
        let (Some(latest), first) = (table.version(), after.map_or(0, |v| v + 1)) else {
            return Ok(HashSet::new());
        };
        let mut added = Vec::new();
        for version in first..=latest {
            let Some(entry) = table.log_store().read_commit_entry(version).await.map_err(read_err)? else {
                return self.event_ids(table, id).await;
            };
            added.extend(data_files_added(&entry).map_err(|reason| LakeError::Decode { table: id.name(), reason })?);
        }
        if added.is_empty() {
            return Ok(HashSet::new());
        }
        let scan_err = |source| LakeError::Scan { table: id.name(), source };
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).map_err(read_err)?;
        let root = table.log_store().root_url().as_str().trim_end_matches('/').to_string();
        let files: Vec<String> = added.iter().map(|path| format!("{root}/{path}")).collect();
        let frame = ctx.read_parquet(files, ParquetReadOptions::default()).await.map_err(scan_err)?;
        let batches = frame.select_columns(&["event_id"]).map_err(scan_err)?.collect().await.map_err(scan_err)?;
        uuid_column(batches, id)
    }

    /// The submissions `scorer_version` has scores for in the `quality_scores` table.
    pub async fn scored_subjects(&self, scorer_version: &str) -> Result<HashSet<uuid::Uuid>> {
        let id = TableId::QualityScores;
        let table = self.open(id).await?;
        let version = scorer_version.replace('\'', "''");
        self.uuids(&table, id, &format!("SELECT subject_event_id FROM t WHERE scorer_version = '{version}'")).await
    }

    /// The UUIDs in the one string column `sql` selects from `table` (registered as `t`). Every
    /// stored id was a UUID when it was written (the contracts check it).
    async fn uuids(&self, table: &DeltaTable, id: TableId, sql: &str) -> Result<HashSet<uuid::Uuid>> {
        let scan_err = |source| LakeError::Scan { table: id.name(), source };
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).map_err(|source| LakeError::Read { table: id.name(), source })?;
        let provider = table.table_provider().await.map_err(scan_err)?;
        ctx.register_table("t", provider).map_err(scan_err)?;
        let batches = ctx.sql(sql).await.map_err(scan_err)?.collect().await.map_err(scan_err)?;
        uuid_column(batches, id)
    }
}

/// The UUIDs in the first column of `batches` (read from `id`).
fn uuid_column(batches: Vec<RecordBatch>, id: TableId) -> Result<HashSet<uuid::Uuid>> {
    let mut values = HashSet::new();
    for batch in batches {
        let col =
            cast(batch.column(0), &DataType::Utf8).map_err(|source| LakeError::Rows { table: id.name(), source })?;
        let col = col.as_string::<i32>();
        values.extend(col.iter().flatten().filter_map(|v| uuid::Uuid::parse_str(v).ok()));
    }
    Ok(values)
}

/// The paths (relative to the table, URL-encoded) of the files one commit entry (newline-
/// delimited JSON actions) adds with new data.
fn data_files_added(entry: &[u8]) -> std::result::Result<Vec<String>, String> {
    let mut paths = Vec::new();
    for line in entry.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
        let action: serde_json::Value = serde_json::from_slice(line).map_err(|e| format!("commit entry: {e}"))?;
        let Some(add) = action.get("add") else { continue };
        if add.get("dataChange").and_then(serde_json::Value::as_bool) == Some(false) {
            continue;
        }
        match add.get("path").and_then(serde_json::Value::as_str) {
            Some(path) => paths.push(path.to_string()),
            None => return Err("an add action without a path".into()),
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LakeRecord;
    use crate::rows::{record_batch, tests::records};

    fn lake(dir: &tempfile::TempDir) -> Lake {
        Lake::new(&format!("file://{}", dir.path().display()), &BTreeMap::new()).expect("lake")
    }

    #[tokio::test]
    async fn tables_are_created_once_and_reopened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = lake(&dir);
        for id in TableId::ALL {
            let t = lake.open(id).await.expect("create");
            assert_eq!(t.version(), Some(0));
            let again = lake.open(id).await.expect("reopen");
            assert_eq!(again.version(), Some(0));
        }
        assert!(dir.path().join("bronze/events/_delta_log/00000000000000000000.json").exists());
    }

    #[tokio::test]
    async fn rows_and_offsets_commit_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = lake(&dir);
        let recs = records(6, 2);
        let refs: Vec<_> = recs.iter().filter(|r| r.silver() == TableId::ChatTurns).collect();
        let batch = record_batch(TableId::ChatTurns, &refs).expect("rows");
        let tp = refs[0].record.source.clone();
        let positions = BTreeMap::from([(tp.clone(), Offset(41))]);
        let table = lake.open(TableId::ChatTurns).await.expect("open");
        let table = lake.append(table, TableId::ChatTurns, batch, &positions).await.expect("append");
        assert_eq!(table.version(), Some(1));

        let reopened = lake.open(TableId::ChatTurns).await.expect("reopen");
        let got = lake
            .positions(&reopened, TableId::ChatTurns, [tp.clone(), TopicPartition::new("other", 0)])
            .await
            .expect("positions");
        assert_eq!(got, BTreeMap::from([(tp, Offset(41))]));
        let ids = lake.event_ids(&reopened, TableId::ChatTurns).await.expect("ids");
        let expected: HashSet<uuid::Uuid> = refs.iter().map(|r| r.event_id()).collect();
        assert_eq!(ids, expected);
    }

    #[tokio::test]
    async fn a_stale_handle_catches_up_and_learns_the_ids_the_later_commits_added() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = lake(&dir);
        let id = TableId::ChatTurns;
        let recs = records(30, 0);
        let turns: Vec<_> = recs.iter().filter(|r| r.silver() == id).collect();
        let thirds: Vec<&[&LakeRecord]> = turns.chunks(turns.len().div_ceil(3)).collect();
        let ids = |rows: &[&LakeRecord]| rows.iter().map(|r| r.event_id()).collect::<HashSet<_>>();
        let tp = thirds[0][0].record.source.clone();
        let append = |table, rows, at| {
            let (lake, batch) = (&lake, record_batch(id, rows).expect("rows"));
            let positions = BTreeMap::from([(tp.clone(), Offset(at))]);
            async move { lake.append(table, id, batch, &positions).await }
        };
        let stale = append(lake.open(id).await.expect("open"), thirds[0], 10).await.expect("first");
        assert_eq!(stale.version(), Some(1));
        // Another writer: a second batch, a compaction (rewrites, adds no data), a third batch.
        append(lake.open(id).await.expect("open"), thirds[1], 20).await.expect("second");
        let target = std::num::NonZeroU64::new(1 << 30).expect("non-zero");
        let compacted = lake.optimize(id, target, &[]).await.expect("optimize");
        assert!(compacted.files_added > 0, "{compacted:?}");
        append(lake.open(id).await.expect("open"), thirds[2], 30).await.expect("third");

        let mut caught_up = stale.clone();
        assert!(lake.catch_up(&mut caught_up, id).await.expect("catch up"));
        assert_eq!(caught_up.version(), Some(4));
        assert!(!lake.catch_up(&mut caught_up, id).await.expect("again"), "nothing newer");
        assert_eq!(lake.positions(&caught_up, id, [tp.clone()]).await.expect("positions")[&tp], Offset(30));
        let later: HashSet<_> = ids(thirds[1]).union(&ids(thirds[2])).copied().collect();
        assert_eq!(lake.event_ids_since(&caught_up, id, Some(1)).await.expect("since 1"), later);
        assert_eq!(lake.event_ids_since(&caught_up, id, Some(3)).await.expect("since 3"), ids(thirds[2]));
        assert!(lake.event_ids_since(&caught_up, id, Some(4)).await.expect("since 4").is_empty());
        let all = lake.event_ids_since(&caught_up, id, None).await.expect("since none");
        assert_eq!(all, ids(&turns));
        assert_eq!(all, lake.event_ids(&caught_up, id).await.expect("all"));
    }

    #[tokio::test]
    async fn a_batch_with_no_rows_still_moves_the_positions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = lake(&dir);
        let tp = TopicPartition::new("gata.chat_turns.v1", 3);
        let table = lake.open(TableId::ChatTurns).await.expect("open");
        let empty = RecordBatch::new_empty(TableId::ChatTurns.schema());
        let table = lake
            .append(table, TableId::ChatTurns, empty, &BTreeMap::from([(tp.clone(), Offset(9))]))
            .await
            .expect("append");
        let got = lake.positions(&table, TableId::ChatTurns, [tp.clone()]).await.expect("positions");
        assert_eq!(got.get(&tp), Some(&Offset(9)));
        assert!(lake.event_ids(&table, TableId::ChatTurns).await.expect("ids").is_empty());
    }

    #[tokio::test]
    async fn a_table_from_an_older_contract_gains_the_new_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = lake(&dir);
        let recs = records(8, 0);
        let turns: Vec<_> = recs.iter().filter(|r| r.silver() == TableId::ChatTurns).collect();
        let (old, new) = turns.split_at(turns.len() / 2);
        // The table as an older version of the contract made it: no `client` column.
        let full = record_batch(TableId::ChatTurns, old).expect("rows");
        let keep: Vec<usize> = (0..full.num_columns()).filter(|i| full.schema().field(*i).name() != "client").collect();
        let old_batch = full.project(&keep).expect("projection");
        let old_schema: StructType = old_batch.schema().as_ref().try_into_kernel().expect("kernel schema");
        let url = lake.table_url(TableId::ChatTurns);
        std::fs::create_dir_all(url.to_file_path().expect("path")).expect("dir");
        let table = DeltaTable::try_from_url(url).await.expect("handle");
        let table = table
            .create()
            .with_columns(old_schema.fields().cloned())
            .with_partition_columns(["day"])
            .await
            .expect("old table");
        table.write(vec![old_batch]).with_save_mode(SaveMode::Append).await.expect("old rows");

        let table = lake.open(TableId::ChatTurns).await.expect("open evolves");
        assert!(table.snapshot().expect("snapshot").schema().field("client").is_some());
        let batch = record_batch(TableId::ChatTurns, new).expect("rows");
        let table = lake.append(table, TableId::ChatTurns, batch, &BTreeMap::new()).await.expect("new rows");
        assert_eq!(lake.event_ids(&table, TableId::ChatTurns).await.expect("ids").len(), turns.len());
    }

    #[tokio::test]
    async fn a_column_that_may_now_be_null_loses_its_not_null() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = lake(&dir);
        // image_text_pairs as it was before images could come by URL: the image columns NOT NULL.
        let strict: Vec<_> = TableId::ImageTextPairs
            .schema()
            .fields()
            .iter()
            .filter(|f| f.name() != "image_url")
            .map(|f| f.as_ref().clone().with_nullable(f.is_nullable() && f.name() != "image_sha256"))
            .collect();
        let strict = deltalake::arrow::datatypes::Schema::new(strict);
        let old_schema: StructType = (&strict).try_into_kernel().expect("kernel schema");
        let url = lake.table_url(TableId::ImageTextPairs);
        std::fs::create_dir_all(url.to_file_path().expect("path")).expect("dir");
        DeltaTable::try_from_url(url)
            .await
            .expect("handle")
            .create()
            .with_columns(old_schema.fields().cloned())
            .with_partition_columns(["day"])
            .await
            .expect("old table");

        let table = lake.open(TableId::ImageTextPairs).await.expect("open evolves");
        let schema = table.snapshot().expect("snapshot").schema();
        assert!(schema.field("image_sha256").expect("column").is_nullable());
        assert!(schema.field("image_url").is_some());
    }
}
