//! The lake's tables as the query service sees them: every Delta table under the lake root
//! (`<layer>/<name>/_delta_log`), discovered by listing and rediscovered every
//! `query.discover_interval`, each brought up to its latest committed version before a query
//! (an incremental read of the Delta log). The platform's own tables are created at start so
//! they are queryable while still empty; any other Delta table written under the root (by a
//! later processor, Spark, Python `deltalake`) appears by its directory name.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use gata_lakehouse::{
    Lake, TableId,
    deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, ObjectStore, Path as StorePath},
};
use tokio::sync::Mutex;
use url::Url;

use crate::Result;

/// One table of the lake.
#[derive(Debug, Clone)]
pub struct LakeTable {
    /// SQL name.
    pub name: String,
    /// Where it lives.
    pub url: Url,
    /// What it holds (the platform's description, else the Delta table's).
    pub description: Option<String>,
    /// The table at the version last loaded.
    pub table: DeltaTable,
}

/// Every lake table, kept current.
#[derive(Debug)]
pub struct Catalog {
    lake: Lake,
    discover_interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tables: BTreeMap<String, LakeTable>,
    discovered_at: Option<Instant>,
}

impl Catalog {
    /// Opens (creating when missing) the platform's tables of `lake`; other tables are found
    /// by listing the root at most every `discover_interval`.
    pub async fn open(lake: Lake, discover_interval: Duration) -> Result<Self> {
        let mut tables = BTreeMap::new();
        for id in TableId::ALL {
            let table = lake.open(id).await?;
            let entry = LakeTable {
                name: id.name().to_string(),
                url: lake.table_url(id),
                description: Some(id.description().to_string()),
                table,
            };
            tables.insert(entry.name.clone(), entry);
        }
        Ok(Self { lake, discover_interval, state: Mutex::new(State { tables, discovered_at: None }) })
    }

    /// The lake.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Every table at its latest committed version, by SQL name.
    pub async fn latest(&self) -> Result<BTreeMap<String, LakeTable>> {
        let mut state = self.state.lock().await;
        if state.discovered_at.is_none_or(|at| at.elapsed() >= self.discover_interval) {
            self.discover(&mut state.tables).await?;
            state.discovered_at = Some(Instant::now());
        }
        // All at once: each refresh is a listing of the table's log and waits on the store.
        futures::future::try_join_all(state.tables.values_mut().map(|entry| async move {
            entry.table.update_state().await.map_err(|source| read_err(&entry.name, source))
        }))
        .await?;
        Ok(state.tables.clone())
    }

    /// `table` as of `version`.
    pub async fn at_version(&self, table: &LakeTable, version: u64) -> Result<DeltaTable> {
        let mut snapshot = self.unloaded(table)?;
        snapshot.load_version(version).await.map_err(|source| read_err(&table.name, source))?;
        Ok(snapshot)
    }

    /// `table` as it was at `when`: the last version committed at or before it.
    pub async fn at_timestamp(&self, table: &LakeTable, when: DateTime<Utc>) -> Result<DeltaTable> {
        let mut snapshot = self.unloaded(table)?;
        snapshot.load_with_datetime(when).await.map_err(|source| read_err(&table.name, source))?;
        Ok(snapshot)
    }

    fn unloaded(&self, table: &LakeTable) -> Result<DeltaTable> {
        self.lake.builder(&table.url).and_then(DeltaTableBuilder::build).map_err(|source| read_err(&table.name, source))
    }

    /// Adds the Delta tables under the root that are not known yet: directories two levels
    /// down holding a `_delta_log`. A name already taken (two layers with one table name)
    /// becomes `<layer>_<name>`.
    async fn discover(&self, tables: &mut BTreeMap<String, LakeTable>) -> Result<()> {
        let root = self.lake.root().clone();
        let store = self
            .lake
            .builder(&root)
            .and_then(DeltaTableBuilder::build)
            .map_err(|source| read_err("(lake root)", source))?
            .object_store();
        let list = |prefix: Option<StorePath>| {
            let store = store.clone();
            async move {
                store
                    .list_with_delimiter(prefix.as_ref())
                    .await
                    .map_err(|e| read_err("(lake root)", DeltaTableError::ObjectStore { source: e }))
            }
        };
        let known: std::collections::HashSet<Url> = tables.values().map(|t| t.url.clone()).collect();
        for layer in list(None).await?.common_prefixes {
            for dir in list(Some(layer.clone())).await?.common_prefixes {
                let Some(name) = dir.filename().map(str::to_string) else { continue };
                let Ok(url) = root.join(&format!("{dir}/")) else { continue };
                if known.contains(&url) || name.starts_with('_') || name.starts_with('.') {
                    continue;
                }
                if list(Some(dir.clone().join("_delta_log"))).await?.objects.is_empty() {
                    continue;
                }
                let name = if tables.contains_key(&name) {
                    format!("{}_{name}", layer.filename().unwrap_or("lake"))
                } else {
                    name
                };
                let mut table =
                    self.lake.builder(&url).and_then(DeltaTableBuilder::build).map_err(|e| read_err(&name, e))?;
                if let Err(e) = table.load().await {
                    tracing::warn!(table = %name, error = %e, "skipping a directory that is not a readable Delta table");
                    continue;
                }
                let description = table.snapshot().ok().and_then(|s| s.metadata().description().map(str::to_string));
                tracing::info!(table = %name, %url, "discovered a lake table");
                tables.insert(name.clone(), LakeTable { name, url, description, table });
            }
        }
        Ok(())
    }
}

fn read_err(table: &str, source: DeltaTableError) -> crate::QueryError {
    crate::QueryError::Table { table: table.to_string(), source: Box::new(source) }
}
