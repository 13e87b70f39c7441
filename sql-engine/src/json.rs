//! Record batches as JSON rows.

use gata_lakehouse::deltalake::arrow::{error::ArrowError, record_batch::RecordBatch};
use serde_json::{Map, Value};

/// Rows as JSON objects keyed by column name (nulls included, binary as hex).
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Map<String, Value>>, ArrowError> {
    let mut writer = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow_json::writer::JsonArray>(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    writer.write_batches(&refs)?;
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| ArrowError::JsonError(e.to_string()))
}
