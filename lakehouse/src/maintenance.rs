//! Table maintenance: checkpoints, compaction of small files, vacuum of unreferenced files.
//!
//! All three are safe next to a running sink. A checkpoint only summarises the log. Compaction
//! (optimize) rewrites small files into large ones in a commit that removes the old files and
//! adds the new ones; the sink's appends touch no existing file, so they never conflict with it,
//! and the `txn` positions are carried over untouched. Vacuum deletes only files no version
//! within the retention window references, and refuses a window shorter than
//! [`MIN_VACUUM_RETENTION`] so a reader of a recent version never loses its files.

use std::{num::NonZeroU64, time::Duration};

use deltalake::{DeltaTable, checkpoints, operations::optimize::OptimizeType};
use gata_infra::config::MaintenanceConfig;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{Lake, LakeError, Result, TableId};

/// The shortest vacuum retention accepted: readers of versions younger than this keep their
/// files.
pub const MIN_VACUUM_RETENTION: Duration = Duration::from_secs(3600);

/// What one maintenance operation did to one table.
#[derive(Debug, Clone, Serialize)]
pub struct MaintenanceReport {
    /// Table name.
    pub table: &'static str,
    /// Version after the operation.
    pub version: Option<u64>,
    /// Files written (compaction).
    pub files_added: u64,
    /// Files replaced (compaction) or deleted (vacuum).
    pub files_removed: u64,
}

impl Lake {
    /// Writes a checkpoint of `table`'s log at its current version, so readers need not replay
    /// every commit, then deletes log entries older than the table's log retention
    /// (`delta.logRetentionDuration`, 30 days by default) that the checkpoint makes redundant.
    pub async fn checkpoint(&self, table: &DeltaTable, id: TableId) -> Result<()> {
        let commit_err = |source| LakeError::Commit { table: id.name(), source };
        checkpoints::create_checkpoint(table, None).await.map_err(commit_err)?;
        checkpoints::cleanup_metadata(table, None).await.map_err(commit_err)?;
        Ok(())
    }

    /// Compacts `id`'s small files into files of about `target_bytes`; with `zorder` columns,
    /// also clusters rows by them (Z-order; one column is a sort), so queries filtering on them
    /// skip most files. Clustering rewrites every file of each partition, not only small ones.
    pub async fn optimize(
        &self,
        id: TableId,
        target_bytes: NonZeroU64,
        zorder: &[String],
    ) -> Result<MaintenanceReport> {
        let table = self.open(id).await?;
        let kind = if zorder.is_empty() { OptimizeType::Compact } else { OptimizeType::ZOrder(zorder.to_vec()) };
        let (table, metrics) = table
            .optimize()
            .with_target_size(target_bytes)
            .with_type(kind)
            .await
            .map_err(|source| LakeError::Commit { table: id.name(), source })?;
        Ok(MaintenanceReport {
            table: id.name(),
            version: table.version(),
            files_added: metrics.num_files_added,
            files_removed: metrics.num_files_removed,
        })
    }

    /// Deletes files that no version younger than `retention` references. Refuses a retention
    /// below [`MIN_VACUUM_RETENTION`].
    pub async fn vacuum(&self, id: TableId, retention: Duration) -> Result<MaintenanceReport> {
        if retention < MIN_VACUUM_RETENTION {
            return Err(LakeError::RetentionTooShort { table: id.name(), retention, minimum: MIN_VACUUM_RETENTION });
        }
        self.vacuum_unchecked(id, retention).await
    }

    async fn vacuum_unchecked(&self, id: TableId, retention: Duration) -> Result<MaintenanceReport> {
        let table = self.open(id).await?;
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let (table, metrics) = table
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .await
            .map_err(|source| LakeError::Commit { table: id.name(), source })?;
        Ok(MaintenanceReport {
            table: id.name(),
            version: table.version(),
            files_added: 0,
            files_removed: metrics.files_deleted.len() as u64,
        })
    }
}

/// Runs compaction every `optimize_interval` and vacuum every `vacuum_interval` over every
/// table until `stop` is cancelled. A failed pass is logged and retried at the next tick: a
/// maintenance hiccup never stops intake or the sink.
pub async fn run_maintenance(lake: Lake, cfg: MaintenanceConfig, stop: CancellationToken) -> Result<()> {
    let target = NonZeroU64::new(cfg.target_file_bytes).unwrap_or(NonZeroU64::MIN);
    let mut optimize = tokio::time::interval(cfg.optimize_interval);
    let mut vacuum = tokio::time::interval(cfg.vacuum_interval.max(Duration::from_secs(1)));
    optimize.tick().await;
    vacuum.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = optimize.tick() => for id in TableId::ALL {
                let zorder = cfg.zorder.get(id.name()).map(Vec::as_slice).unwrap_or_default();
                match lake.optimize(id, target, zorder).await {
                    Ok(r) if r.files_removed > 0 => tracing::info!(table = r.table, version = ?r.version, files_added = r.files_added, files_removed = r.files_removed, "compacted"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(table = id.name(), error = %e, "compaction failed; retrying next interval"),
                }
            },
            _ = vacuum.tick() => for id in TableId::ALL {
                match lake.vacuum(id, cfg.vacuum_retention).await {
                    Ok(r) if r.files_removed > 0 => tracing::info!(table = r.table, files_removed = r.files_removed, "vacuumed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(table = id.name(), error = %e, "vacuum failed; retrying next interval"),
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        Offset, TopicPartition,
        rows::{record_batch, tests::records},
    };

    #[tokio::test]
    async fn compaction_keeps_rows_and_positions_and_vacuum_removes_replaced_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::new(&format!("file://{}", dir.path().display()), &BTreeMap::new()).expect("lake");
        let recs = records(30, 0);
        let turns: Vec<_> = recs.iter().filter(|r| r.silver() == TableId::ChatTurns).collect();
        let tp = TopicPartition::new("gata.chat_turns.v1", 0);
        let mut table = lake.open(TableId::ChatTurns).await.expect("open");
        for (i, chunk) in turns.chunks(5).enumerate() {
            let batch = record_batch(TableId::ChatTurns, chunk).expect("rows");
            let positions = BTreeMap::from([(tp.clone(), Offset(i as i64))]);
            table = lake.append(table, TableId::ChatTurns, batch, &positions).await.expect("append");
        }
        let files_before = table.get_file_uris().expect("files").count();
        assert_eq!(files_before, 6);

        let report = lake
            .optimize(TableId::ChatTurns, NonZeroU64::new(64 << 20).expect("non-zero"), &[])
            .await
            .expect("optimize");
        assert_eq!((report.files_added, report.files_removed), (1, 6));
        let table = lake.open(TableId::ChatTurns).await.expect("reopen");
        assert_eq!(table.get_file_uris().expect("files").count(), 1);
        assert_eq!(lake.event_ids(&table, TableId::ChatTurns).await.expect("ids").len(), turns.len());
        let positions = lake.positions(&table, TableId::ChatTurns, [tp.clone()]).await.expect("positions");
        assert_eq!(positions.get(&tp), Some(&Offset(5)));

        lake.checkpoint(&table, TableId::ChatTurns).await.expect("checkpoint");
        let log = dir.path().join("silver/chat_turns/_delta_log");
        assert!(
            std::fs::read_dir(&log).expect("log").any(|e| e
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .contains(".checkpoint.parquet"))
        );

        assert!(
            lake.vacuum(TableId::ChatTurns, Duration::from_secs(60)).await.is_err(),
            "a 1-minute window must be refused"
        );
        let report = lake.vacuum_unchecked(TableId::ChatTurns, Duration::ZERO).await.expect("vacuum");
        assert_eq!(report.files_removed, 6);
        let table = lake.open(TableId::ChatTurns).await.expect("reopen");
        assert_eq!(lake.event_ids(&table, TableId::ChatTurns).await.expect("ids").len(), turns.len());
    }

    #[tokio::test]
    async fn zorder_clusters_by_the_configured_column_and_keeps_every_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::new(&format!("file://{}", dir.path().display()), &BTreeMap::new()).expect("lake");
        let recs = records(40, 0);
        let turns: Vec<_> = recs.iter().filter(|r| r.silver() == TableId::ChatTurns).collect();
        let mut table = lake.open(TableId::ChatTurns).await.expect("open");
        for chunk in turns.chunks(10) {
            let batch = record_batch(TableId::ChatTurns, chunk).expect("rows");
            table = lake.append(table, TableId::ChatTurns, batch, &BTreeMap::new()).await.expect("append");
        }
        let zorder = ["contributor_id".to_string()];
        let report = lake
            .optimize(TableId::ChatTurns, NonZeroU64::new(64 << 20).expect("non-zero"), &zorder)
            .await
            .expect("zorder");
        assert_eq!(report.files_removed, 4);
        let table = lake.open(TableId::ChatTurns).await.expect("reopen");
        assert_eq!(lake.event_ids(&table, TableId::ChatTurns).await.expect("ids").len(), turns.len());
        let err = lake.optimize(TableId::ChatTurns, NonZeroU64::MIN, &["no_such_column".to_string()]).await;
        assert!(err.is_err(), "clustering by a missing column must fail");
    }
}
