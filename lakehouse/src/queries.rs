//! Queries over the lake's tables that several processors share: a DataFusion session over
//! chosen tables, rows read back as Rust values, submissions' receipt times, the unscored ones,
//! and the marketplace log.

use chrono::{DateTime, Utc};
use deltalake::{arrow::record_batch::RecordBatch, datafusion::prelude::SessionContext};
use serde::{Deserialize, de::DeserializeOwned};

use crate::{Lake, LakeError, Result, TableId};

/// One marketplace event as the lake holds it.
#[derive(Debug, Clone, Deserialize)]
pub struct MarketRecord {
    /// When the platform received it, microseconds.
    pub received_us: i64,
    /// The event's JSON.
    pub payload: String,
}

/// Every submission's event id and receipt time, from the three silver submission tables.
pub const SUBMISSIONS: &str = "SELECT event_id, received_at FROM chat_turns \
     UNION ALL SELECT event_id, received_at FROM preferences \
     UNION ALL SELECT event_id, received_at FROM image_text_pairs";

impl Lake {
    /// A DataFusion session with `tables` registered under their names, at their latest versions.
    pub async fn session(&self, tables: &[TableId]) -> Result<SessionContext> {
        let ctx = SessionContext::new();
        self.register(&ctx, tables).await?;
        Ok(ctx)
    }

    /// Registers `tables` with `ctx`, each under its name.
    pub(crate) async fn register(&self, ctx: &SessionContext, tables: &[TableId]) -> Result<()> {
        for id in tables {
            let table = self.open(*id).await?;
            let scan_err = |source| LakeError::Scan { table: id.name(), source };
            let provider = table.table_provider().await.map_err(scan_err)?;
            ctx.register_table(id.name(), provider).map_err(scan_err)?;
        }
        Ok(())
    }

    /// Runs `sql` on `ctx` and reads every row as a `R` (through Arrow's JSON writer); `table`
    /// names the table in errors.
    pub async fn rows<R: DeserializeOwned>(ctx: &SessionContext, table: TableId, sql: &str) -> Result<Vec<R>> {
        let scan_err = |source| LakeError::Scan { table: table.name(), source };
        let batches = ctx.sql(sql).await.map_err(scan_err)?.collect().await.map_err(scan_err)?;
        let mut writer = arrow_json::ArrayWriter::new(Vec::new());
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        writer.write_batches(&refs).map_err(|source| LakeError::Rows { table: table.name(), source })?;
        writer.finish().map_err(|source| LakeError::Rows { table: table.name(), source })?;
        let json = writer.into_inner();
        if json.is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_slice(&json).map_err(|e| LakeError::Decode { table: table.name(), reason: e.to_string() })
    }

    /// When the first scored submission was received, if any was.
    pub async fn first_scored_receipt(&self) -> Result<Option<DateTime<Utc>>> {
        self.earliest_receipt(&format!(
            "SELECT CAST(MIN(sub.received_at) AS BIGINT) AS first FROM quality_scores s \
             JOIN ({SUBMISSIONS}) sub ON s.subject_event_id = sub.event_id"
        ))
        .await
    }

    /// When the first submission (scored or not) received at or after `from` was received.
    pub async fn first_receipt(&self, from: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        self.earliest_receipt(&format!(
            "SELECT CAST(MIN(sub.received_at) AS BIGINT) AS first FROM ({SUBMISSIONS}) sub \
             WHERE sub.received_at >= TIMESTAMP '{}'",
            from.to_rfc3339()
        ))
        .await
    }

    /// The receipt time `sql` answers as `first` (microseconds), over the submission tables
    /// and the scores.
    async fn earliest_receipt(&self, sql: &str) -> Result<Option<DateTime<Utc>>> {
        #[derive(Deserialize)]
        struct First {
            first: Option<i64>,
        }
        use TableId::*;
        let ctx = self.session(&[QualityScores, ChatTurns, Preferences, ImageTextPairs]).await?;
        let rows: Vec<First> = Self::rows(&ctx, QualityScores, sql).await?;
        Ok(rows.first().and_then(|r| r.first).and_then(DateTime::from_timestamp_micros))
    }

    /// How many submissions received in `[from, to)` have no score yet.
    pub async fn unscored(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<u64> {
        #[derive(Deserialize)]
        struct Count {
            n: i64,
        }
        use TableId::*;
        let ctx = self.session(&[QualityScores, ChatTurns, Preferences, ImageTextPairs]).await?;
        let sql = format!(
            "SELECT COUNT(*) AS n FROM ({SUBMISSIONS}) sub \
             WHERE sub.received_at >= TIMESTAMP '{}' AND sub.received_at < TIMESTAMP '{}' \
               AND sub.event_id NOT IN (SELECT subject_event_id FROM quality_scores)",
            from.to_rfc3339(),
            to.to_rfc3339()
        );
        let rows: Vec<Count> = Self::rows(&ctx, QualityScores, &sql).await?;
        Ok(rows.first().map_or(0, |r| r.n.max(0) as u64))
    }

    /// Every marketplace event in the lake, in log order within each partition (partition,
    /// then offset), with its receipt time.
    pub async fn market_log(&self) -> Result<Vec<MarketRecord>> {
        let ctx = self.session(&[TableId::MarketEvents]).await?;
        let sql = "SELECT CAST(received_at AS BIGINT) AS received_us, payload FROM market_events \
                   ORDER BY kafka_partition, kafka_offset";
        Self::rows(&ctx, TableId::MarketEvents, sql).await
    }
}
