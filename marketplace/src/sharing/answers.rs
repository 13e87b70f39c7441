//! Materialized answers: a listing view as a caller may read it now, written once per
//! distinct answer into one Parquet file (one writer per answer), the directory kept within
//! `query.sharing_cache_bytes`.

use std::{
    collections::BTreeMap,
    path::{Path as FsPath, PathBuf},
    time::SystemTime,
};

use axum::http::StatusCode;
use futures::StreamExt as _;
use gata_infra::auth::Principal;
use gata_lakehouse::deltalake::parquet::arrow::ArrowWriter;
use gata_sql::{View, catalog::LakeTable, executor::Cap};
use sha2::{Digest, Sha256};

use super::{CACHE_TTL, ShareError, Sharing, WRITER_STRIPES, error, internal, select_all};
use crate::plain_arrow::{plain_batch, plain_schema};

/// Writes `view` as `p` reads it now (`tables` at their latest versions) to one Parquet file,
/// once per distinct answer; returns its id, size and row count.
pub(super) async fn materialize(
    s: &Sharing,
    p: &Principal,
    view: &View,
    tables: &BTreeMap<String, LakeTable>,
) -> Result<(String, u64, u64), ShareError> {
    // The answer is a function of the view's definition (grants included) and the table versions.
    let sql = select_all(view);
    let mut hasher = Sha256::new();
    hasher.update(view.sql.as_bytes());
    for (name, t) in tables {
        hasher.update(format!("{name}@{:?}", t.table.version()).as_bytes());
    }
    let id = hex::encode(hasher.finalize());
    let path = s.dir.join(format!("{id}.parquet"));
    // One writer per answer: concurrent requests for it wait and then find it written.
    let _one_writer = s.writers[stripe(&id)].lock().await;
    let (size, rows) = write_answer(s, p, &sql, &path).await?;
    Ok((id, size, rows))
}

/// The writer stripe of a (hex SHA-256) answer id: its first hex digit.
fn stripe(id: &str) -> usize {
    id.get(..1).and_then(|d| usize::from_str_radix(d, 16).ok()).unwrap_or_default() % WRITER_STRIPES
}

/// The answer at `path` (size, rows), written first unless it is already there.
async fn write_answer(s: &Sharing, p: &Principal, sql: &str, path: &FsPath) -> Result<(u64, u64), ShareError> {
    if let Some(rows) = cached_rows(path) {
        let size = std::fs::metadata(path).map_err(internal)?.len();
        return Ok((size, rows));
    }
    std::fs::create_dir_all(&s.dir).map_err(internal)?;
    let engine = &s.engine;
    let mut stream =
        engine.stream(p, sql, Vec::new(), Cap::Fail(engine.config().max_stream_rows)).await.map_err(internal)?;
    let partial = path.with_extension("parquet.partial");
    // The file carries the types the Delta schema states, never DataFusion's view types.
    let schema = plain_schema(&stream.schema());
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&partial).map_err(internal)?, schema.clone(), None)
        .map_err(internal)?;
    let (mut rows, max_bytes) = (0u64, engine.config().max_result_bytes);
    while let Some(batch) = stream.next().await {
        let batch = plain_batch(&batch.map_err(internal)?, &schema).map_err(internal)?;
        rows += batch.num_rows() as u64;
        writer.write(&batch).map_err(internal)?;
        if writer.bytes_written() as u64 + writer.in_progress_size() as u64 > max_bytes {
            drop(writer);
            let _ = std::fs::remove_file(&partial);
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "RESOURCE_LIMIT_EXCEEDED",
                format!("the table is larger than query.max_result_bytes ({max_bytes} bytes)"),
            ));
        }
    }
    writer.close().map_err(internal)?;
    std::fs::rename(&partial, path).map_err(internal)?;
    std::fs::write(path.with_extension("rows"), rows.to_string()).map_err(internal)?;
    evict(&s.dir, path, engine.config().sharing_cache_bytes);
    let size = std::fs::metadata(path).map_err(internal)?.len();
    Ok((size, rows))
}

fn cached_rows(path: &FsPath) -> Option<u64> {
    std::fs::read_to_string(path.with_extension("rows")).ok()?.parse().ok().filter(|_| path.exists())
}

/// Removes materialized answers older than [`CACHE_TTL`], then the oldest others until the
/// answers take at most `cap` bytes; `keep` (just written) stays.
fn evict(dir: &FsPath, keep: &FsPath, cap: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut answers: Vec<(SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), e.path()))
        })
        .collect();
    answers.sort();
    let mut total: u64 = answers.iter().map(|(_, size, _)| size).sum();
    for (modified, size, path) in answers {
        let expired = modified.elapsed().is_ok_and(|age| age > CACHE_TTL);
        if path != keep && (expired || total > cap) {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("rows"));
            total -= size;
        }
    }
}
