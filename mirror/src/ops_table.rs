//! Small append-only Delta tables the mirror keeps in the lake (`ops/…`): rows are serde
//! structs appended with optional `txn` actions in the same commit, and read back with a filter.

use deltalake::{
    DeltaTable,
    arrow::{datatypes::SchemaRef, record_batch::RecordBatch},
    datafusion::prelude::SessionContext,
    kernel::{StructType, Transaction, engine::arrow_conversion::TryIntoKernel as _, transaction::CommitProperties},
    protocol::SaveMode,
};
use gata_lakehouse::Lake;
use serde::{Serialize, de::DeserializeOwned};

use crate::{MirrorError, Result};

/// One table under the lake root.
#[derive(Debug)]
pub struct OpsTable {
    lake: Lake,
    path: &'static str,
    schema: SchemaRef,
    table: DeltaTable,
}

/// Quotes `s` as a SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl OpsTable {
    /// Opens the table at `path` under the lake root, creating it (as `name`, described by
    /// `comment`, with `schema`) on first use.
    pub async fn open(
        lake: &Lake,
        path: &'static str,
        name: &str,
        comment: &str,
        schema: SchemaRef,
    ) -> Result<OpsTable> {
        let delta = |source| MirrorError::Delta { what: path.to_string(), source: Box::new(source) };
        let url = lake.root().join(&format!("{path}/")).map_err(|e| MirrorError::Config(e.to_string()))?;
        let kernel: StructType = schema.as_ref().try_into_kernel().map_err(|e| delta(e.into()))?;
        let (table, _) = lake
            .open_or_create(&url, |create| {
                create.with_table_name(name).with_comment(comment).with_columns(kernel.fields().cloned())
            })
            .await
            .map_err(delta)?;
        Ok(OpsTable { lake: lake.clone(), path, schema, table })
    }

    fn delta(&self) -> impl Fn(deltalake::DeltaTableError) -> MirrorError + '_ {
        move |source| MirrorError::Delta { what: self.path.to_string(), source: Box::new(source) }
    }

    fn decode(&self) -> impl Fn(String) -> MirrorError + '_ {
        move |reason| MirrorError::Decode { path: self.path.to_string(), reason }
    }

    /// The version the `txn` action `app_id` last recorded.
    pub async fn txn_version(&mut self, app_id: &str) -> Result<Option<i64>> {
        self.table.update_state().await.map_err(self.delta())?;
        let snapshot = self.table.snapshot().map_err(self.delta())?.snapshot();
        snapshot.transaction_version(self.table.log_store().as_ref(), app_id).await.map_err(self.delta())
    }

    /// Appends `rows`, and `txn` when given, in one commit.
    pub async fn append<T: Serialize>(&mut self, rows: &[T], txn: Option<Transaction>) -> Result<()> {
        let mut decoder = arrow_json::ReaderBuilder::new(self.schema.clone())
            .build_decoder()
            .map_err(|e| self.decode()(e.to_string()))?;
        decoder.serialize(rows).map_err(|e| self.decode()(e.to_string()))?;
        let batch = decoder
            .flush()
            .map_err(|e| self.decode()(e.to_string()))?
            .unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone()));
        let url = self.table.table_url().clone();
        let fresh = self.lake.builder(&url).and_then(|b| b.build()).map_err(self.delta())?;
        let table = std::mem::replace(&mut self.table, fresh);
        self.table = table
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(
                CommitProperties::default().with_application_transactions(txn.into_iter().collect()),
            )
            .await
            .map_err(self.delta())?;
        Ok(())
    }

    /// The rows matching `filter` (a SQL condition, optionally followed by `ORDER BY …`).
    pub async fn select<T: DeserializeOwned>(&mut self, filter: &str) -> Result<Vec<T>> {
        self.table.update_state().await.map_err(self.delta())?;
        let query = |e: deltalake::datafusion::error::DataFusionError| self.decode()(e.to_string());
        let ctx = SessionContext::new();
        ctx.register_table("t", self.table.table_provider().await.map_err(query)?).map_err(query)?;
        let batches =
            ctx.sql(&format!("SELECT * FROM t WHERE {filter}")).await.map_err(query)?.collect().await.map_err(query)?;
        let mut writer = arrow_json::ArrayWriter::new(Vec::new());
        for batch in &batches {
            writer.write(batch).map_err(|e| self.decode()(e.to_string()))?;
        }
        writer.finish().map_err(|e| self.decode()(e.to_string()))?;
        let json = writer.into_inner();
        if json.is_empty() {
            return Ok(Vec::new());
        }
        // Nulls are absent keys, which serde reads as `None`.
        serde_json::from_slice(&json).map_err(|e| self.decode()(e.to_string()))
    }
}
