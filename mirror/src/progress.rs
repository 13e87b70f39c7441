//! What has been mirrored, kept in the lake itself: the Delta table `ops/mirror` holds one row
//! per object written to (or found already at) a target, and each pass commits its rows with a
//! `txn` action `mirror:<target>:<table>` = the last table version completed, in the same
//! atomic commit. A restarted mirror resumes after that version; objects of a half-done version
//! are found at the target by checksum and not sent again.
//!
//! The table is not itself mirrored (each pass would create a version to mirror).

use std::sync::Arc;

use deltalake::{
    DeltaTable,
    arrow::{
        datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit},
        record_batch::RecordBatch,
    },
    datafusion::prelude::SessionContext,
    kernel::StructType,
    kernel::{Transaction, engine::arrow_conversion::TryIntoKernel as _, transaction::CommitProperties},
    protocol::SaveMode,
};
use gata_lakehouse::{Lake, TableId};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{MirrorError, Result};

/// Where the progress table lives under the lake root.
pub const PATH: &str = "ops/mirror";

/// One object at a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The target's URL.
    pub target: String,
    /// The lake table the object belongs to.
    pub table_name: String,
    /// The table version whose commit added it.
    pub version: i64,
    /// Its path at the target (the lake-relative path).
    pub path: String,
    /// `data`, `log` or `record`.
    pub kind: String,
    /// Size in bytes.
    pub size: i64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Greenfield's 7 integrity hashes, hex, comma-separated (Greenfield targets).
    pub integrity: Option<String>,
    /// Whether this pass sent it (false: the target held it already).
    pub uploaded: bool,
    /// When it was recorded (RFC 3339).
    pub mirrored_at: String,
}

fn schema() -> SchemaRef {
    let utf8 = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        utf8("target", false),
        utf8("table_name", false),
        Field::new("version", DataType::Int64, false),
        utf8("path", false),
        utf8("kind", false),
        Field::new("size", DataType::Int64, false),
        utf8("sha256", false),
        utf8("integrity", true),
        Field::new("uploaded", DataType::Boolean, false),
        Field::new("mirrored_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
    ]))
}

/// The progress table.
#[derive(Debug)]
pub struct Progress {
    lake: Lake,
    table: DeltaTable,
}

fn delta(what: &str) -> impl Fn(deltalake::DeltaTableError) -> MirrorError + '_ {
    move |source| MirrorError::Delta { what: what.to_string(), source: Box::new(source) }
}

/// The `txn` application id of `table`'s progress to `target`.
fn app_id(target: &Url, table: TableId) -> String {
    format!("mirror:{target}:{}", table.name())
}

impl Progress {
    /// Opens the table, creating it on first use.
    pub async fn open(lake: &Lake) -> Result<Progress> {
        let url = lake.root().join(&format!("{PATH}/")).map_err(|e| MirrorError::Config(e.to_string()))?;
        if url.scheme() == "file"
            && let Ok(path) = url.to_file_path()
        {
            std::fs::create_dir_all(path).map_err(|e| MirrorError::Config(format!("{url}: {e}")))?;
        }
        let mut table = lake.builder(&url).and_then(|b| b.build()).map_err(delta(PATH))?;
        if table.verify_deltatable_existence().await.map_err(delta(PATH))? {
            table.load().await.map_err(delta(PATH))?;
        } else {
            let kernel: StructType = schema().as_ref().try_into_kernel().map_err(|e| delta(PATH)(e.into()))?;
            let created = table
                .create()
                .with_table_name("mirror")
                .with_comment("objects the mirror role wrote to each target, and its progress per table")
                .with_columns(kernel.fields().cloned())
                .with_save_mode(SaveMode::Ignore)
                .await;
            table = match created {
                Ok(t) => t,
                Err(_) => {
                    let mut t = lake.builder(&url).and_then(|b| b.build()).map_err(delta(PATH))?;
                    t.load().await.map_err(delta(PATH))?;
                    t
                }
            };
        }
        Ok(Progress { lake: lake.clone(), table })
    }

    /// The last version of `table` completely mirrored to `target`.
    pub async fn done(&mut self, target: &Url, table: TableId) -> Result<Option<i64>> {
        self.table.update_state().await.map_err(delta(PATH))?;
        let snapshot = self.table.snapshot().map_err(delta(PATH))?.snapshot();
        snapshot.transaction_version(self.table.log_store().as_ref(), &app_id(target, table)).await.map_err(delta(PATH))
    }

    /// Records `entries` and that `table` is mirrored to `target` up to `version`, atomically.
    pub async fn record(&mut self, target: &Url, table: TableId, version: i64, entries: &[Entry]) -> Result<()> {
        let mut decoder = arrow_json::ReaderBuilder::new(schema())
            .build_decoder()
            .map_err(|e| MirrorError::Decode { path: PATH.into(), reason: e.to_string() })?;
        decoder.serialize(entries).map_err(|e| MirrorError::Decode { path: PATH.into(), reason: e.to_string() })?;
        let batch = decoder
            .flush()
            .map_err(|e| MirrorError::Decode { path: PATH.into(), reason: e.to_string() })?
            .unwrap_or_else(|| RecordBatch::new_empty(schema()));
        let txn = Transaction::new(app_id(target, table), version);
        let fresh = self.fresh()?;
        let table = std::mem::replace(&mut self.table, fresh);
        self.table = table
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(CommitProperties::default().with_application_transactions(vec![txn]))
            .await
            .map_err(delta(PATH))?;
        Ok(())
    }

    fn fresh(&self) -> Result<DeltaTable> {
        let url = self.table.table_url().clone();
        self.lake.builder(&url).and_then(|b| b.build()).map_err(delta(PATH))
    }

    /// Every entry recorded for `target`, by table, version and path.
    pub async fn entries(&mut self, target: &Url) -> Result<Vec<Entry>> {
        self.table.update_state().await.map_err(delta(PATH))?;
        let ctx = SessionContext::new();
        let query = |e: deltalake::datafusion::error::DataFusionError| MirrorError::Decode {
            path: PATH.into(),
            reason: e.to_string(),
        };
        let provider = self.table.table_provider().await.map_err(query)?;
        ctx.register_table("mirror", provider).map_err(query)?;
        let sql = format!(
            "SELECT * FROM mirror WHERE target = '{}' ORDER BY table_name, version, path",
            target.as_str().replace('\'', "''")
        );
        let batches = ctx.sql(&sql).await.map_err(query)?.collect().await.map_err(query)?;
        let mut writer = arrow_json::ArrayWriter::new(Vec::new());
        for batch in &batches {
            writer.write(batch).map_err(|e| MirrorError::Decode { path: PATH.into(), reason: e.to_string() })?;
        }
        writer.finish().map_err(|e| MirrorError::Decode { path: PATH.into(), reason: e.to_string() })?;
        let json = writer.into_inner();
        if json.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows: Vec<serde_json::Value> = serde_json::from_slice(&json)
            .map_err(|e| MirrorError::Decode { path: PATH.into(), reason: e.to_string() })?;
        // Arrow's JSON writer leaves timestamps as text already; nulls are absent keys.
        rows.iter_mut().for_each(|r| {
            if r.get("integrity").is_none() {
                r["integrity"] = serde_json::Value::Null;
            }
        });
        serde_json::from_value(serde_json::Value::Array(rows))
            .map_err(|e| MirrorError::Decode { path: PATH.into(), reason: e.to_string() })
    }
}
