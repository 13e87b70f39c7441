//! What has been mirrored, kept in the lake itself: the Delta table `ops/mirror` holds one row
//! per object written to (or found already at) a target, and each pass commits its rows with a
//! `txn` action `mirror:<target>:<table>` = the last table version completed, in the same
//! atomic commit. A restarted mirror resumes after that version; objects of a half-done version
//! are found at the target by checksum and not sent again.
//!
//! The table is not itself mirrored (each pass would create a version to mirror).

use std::sync::Arc;

use deltalake::{
    arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit},
    kernel::Transaction,
};
use gata_lakehouse::{Lake, TableId};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    Result,
    ops_table::{OpsTable, literal},
};

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
    /// `data`, `log`, `record` or `anchor`.
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
    table: OpsTable,
}

/// The `txn` application id of `table`'s progress to `target`.
fn app_id(target: &Url, table: TableId) -> String {
    format!("mirror:{target}:{}", table.name())
}

impl Progress {
    /// Opens the table, creating it on first use.
    pub async fn open(lake: &Lake) -> Result<Progress> {
        let comment = "objects the mirror role wrote to each target, and its progress per table";
        Ok(Progress { table: OpsTable::open(lake, PATH, "mirror", comment, schema()).await? })
    }

    /// The last version of `table` completely mirrored to `target`.
    pub async fn done(&mut self, target: &Url, table: TableId) -> Result<Option<i64>> {
        self.table.txn_version(&app_id(target, table)).await
    }

    /// Records `entries` and that `table` is mirrored to `target` up to `version`, atomically.
    pub async fn record(&mut self, target: &Url, table: TableId, version: i64, entries: &[Entry]) -> Result<()> {
        self.table.append(entries, Some(Transaction::new(app_id(target, table), version))).await
    }

    /// Records an anchor written to its target (anchors are not table versions: no `txn`).
    pub async fn record_anchor(&mut self, entry: &Entry) -> Result<()> {
        self.table.append(std::slice::from_ref(entry), None).await
    }

    /// Every entry recorded for `target`, by table, version and path.
    pub async fn entries(&mut self, target: &Url) -> Result<Vec<Entry>> {
        self.table.select(&format!("target = {} ORDER BY table_name, version, path", literal(target.as_str()))).await
    }
}
