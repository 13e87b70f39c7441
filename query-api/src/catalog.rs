//! The lake tables as the query service sees them: opened once, brought up to the latest
//! committed version before each query (an incremental read of the Delta log).

use std::collections::BTreeMap;

use gata_lakehouse::{Lake, LakeError, TableId, deltalake::DeltaTable};
use tokio::sync::Mutex;

use crate::Result;

/// Every lake table, kept current.
#[derive(Debug)]
pub struct Catalog {
    lake: Lake,
    tables: Mutex<BTreeMap<TableId, DeltaTable>>,
}

impl Catalog {
    /// Opens (creating when missing) every table of `lake`.
    pub async fn open(lake: Lake) -> Result<Self> {
        let mut tables = BTreeMap::new();
        for id in TableId::ALL {
            tables.insert(id, lake.open(id).await?);
        }
        Ok(Self { lake, tables: Mutex::new(tables) })
    }

    /// The lake.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Every table at its latest committed version.
    pub async fn latest(&self) -> Result<BTreeMap<TableId, DeltaTable>> {
        let mut tables = self.tables.lock().await;
        for (id, table) in tables.iter_mut() {
            table.update_state().await.map_err(|source| LakeError::Read { table: id.name(), source })?;
        }
        Ok(tables.clone())
    }
}
