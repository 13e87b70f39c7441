//! The log as the bronze table mirrors it, read back in the order the platform received it: a
//! stream of record batches whose sort holds a bounded amount of memory and spills sorted runs
//! to temporary files beyond it, so a log of any size is read in the same memory.

use chrono::DateTime;
use deltalake::{
    arrow::{
        array::{AsArray, RecordBatch},
        compute::cast,
        datatypes::{DataType, Int32Type, Int64Type},
    },
    datafusion::{
        execution::runtime_env::RuntimeEnvBuilder,
        prelude::{SessionConfig, SessionContext},
    },
};
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use gata_contract::LogRecord;

use crate::{Lake, LakeError, Offset, Result, TableId, TopicPartition};

/// Bronze records in receipt order (then topic, partition, offset), batch by batch.
pub type LogStream = BoxStream<'static, Result<Vec<LogRecord>>>;

/// The memory an ordered read of the log sorts in by default (`gata replay --sort-memory`).
pub const DEFAULT_SORT_MEMORY: u64 = 256 << 20;

impl Lake {
    /// How many records the bronze table holds, and a stream of them in receipt order. The sort
    /// behind the stream holds at most `sort_memory` bytes (at least 32 MiB are needed) and
    /// spills to the system's temporary directory beyond.
    pub async fn receipt_ordered_log(&self, sort_memory: u64) -> Result<(u64, LogStream)> {
        let scan_err = |source| LakeError::Scan { table: TableId::Events.name(), source };
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(usize::try_from(sort_memory).unwrap_or(usize::MAX), 1.0)
            .build_arc()
            .map_err(scan_err)?;
        // One sorter: each would hold its own merge reservation out of the same memory.
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new().with_target_partitions(1), runtime);
        self.register(&ctx, &[TableId::Events]).await?;
        let counted =
            ctx.sql("SELECT COUNT(*) FROM events").await.map_err(scan_err)?.collect().await.map_err(scan_err)?;
        let records =
            counted.first().and_then(|b| b.column(0).as_primitive_opt::<Int64Type>().map(|c| c.value(0))).unwrap_or(0);
        let sql = "SELECT kafka_topic, kafka_partition, kafka_offset, CAST(received_at AS BIGINT) AS received_us, payload \
                   FROM events ORDER BY received_at, kafka_topic, kafka_partition, kafka_offset";
        let batches = ctx.sql(sql).await.map_err(scan_err)?.execute_stream().await.map_err(scan_err)?;
        let stream = batches.map_err(scan_err).and_then(|batch| async move { log_records(&batch) });
        Ok((u64::try_from(records).unwrap_or(0), stream.boxed()))
    }
}

/// The rows of a batch of the ordered read as records.
fn log_records(batch: &RecordBatch) -> Result<Vec<LogRecord>> {
    let rows_err = |source| LakeError::Rows { table: TableId::Events.name(), source };
    let column = |i: usize, to: &DataType| cast(batch.column(i), to).map_err(rows_err);
    let (topics, payloads) = (column(0, &DataType::Utf8)?, column(4, &DataType::Utf8)?);
    let (partitions, offsets, received) =
        (column(1, &DataType::Int32)?, column(2, &DataType::Int64)?, column(3, &DataType::Int64)?);
    let (topics, payloads) = (topics.as_string::<i32>(), payloads.as_string::<i32>());
    let partitions = partitions.as_primitive::<Int32Type>();
    let (offsets, received) = (offsets.as_primitive::<Int64Type>(), received.as_primitive::<Int64Type>());
    Ok((0..batch.num_rows())
        .map(|i| LogRecord {
            source: TopicPartition::new(topics.value(i), partitions.value(i)),
            offset: Offset(offsets.value(i)),
            // Microseconds a Delta timestamp column holds are always in chrono's range.
            received_at: DateTime::from_timestamp_micros(received.value(i)).unwrap_or_default(),
            payload: payloads.value(i).as_bytes().to_vec(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{TimeDelta, Utc};
    use gata_contract::{
        Limits,
        topics::{Feed, intake_topic},
    };
    use gata_infra::workload::Workload;

    use super::*;
    use crate::{LakeRecord, rows::record_batch};

    #[tokio::test]
    async fn a_log_larger_than_the_sort_memory_comes_back_whole_in_receipt_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::new(&format!("file://{}", dir.path().display()), &BTreeMap::new()).expect("lake");
        let start = Utc::now();
        // Three partitions whose receipt times interleave out of offset order.
        let records: Vec<LakeRecord> = Workload::new(5, 200)
            .events(60_000, 0)
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let at = start + TimeDelta::milliseconds((i as i64 * 7_919) % 50_000);
                let source = TopicPartition::new(intake_topic(e.kind()), (i % 3) as i32);
                let offset = Offset((i / 3) as i64);
                let record = LogRecord { source, offset, received_at: at, payload: e.to_json() };
                LakeRecord::decode(Feed::Intake(e.kind()), record, &Limits::default())
                    .expect("workload events are valid")
            })
            .collect();
        let bytes: usize = records.iter().map(|r| r.record.payload.len()).sum();
        let mut table = lake.open(TableId::Events).await.expect("open");
        for chunk in records.chunks(20_000) {
            let refs: Vec<&LakeRecord> = chunk.iter().collect();
            let batch = record_batch(TableId::Events, &refs).expect("rows");
            table = lake.append(table, TableId::Events, batch, &BTreeMap::new()).await.expect("append");
        }
        let sort_memory = 32 << 20;
        assert!(bytes as u64 > sort_memory * 3 / 2, "the payloads alone ({bytes} B) do not fit the sort's memory");

        let (count, stream) = lake.receipt_ordered_log(sort_memory).await.expect("ordered log");
        let read: Vec<LogRecord> = stream.try_collect::<Vec<_>>().await.expect("read").into_iter().flatten().collect();
        assert_eq!((count as usize, read.len()), (records.len(), records.len()));
        assert!(read.windows(2).all(|w| w[0].replay_order() <= w[1].replay_order()), "receipt order");
        let mut want: Vec<(TopicPartition, Offset, Vec<u8>)> =
            records.iter().map(|r| (r.record.source.clone(), r.record.offset, r.record.payload.clone())).collect();
        let mut got: Vec<(TopicPartition, Offset, Vec<u8>)> =
            read.into_iter().map(|r| (r.source, r.offset, r.payload)).collect();
        want.sort();
        got.sort();
        assert!(want == got, "every record once, payload intact");
    }
}
