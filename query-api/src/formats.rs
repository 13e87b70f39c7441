//! Answer formats, picked by the `Accept` header, and the encoders that turn a query's batches
//! into bytes as they arrive. Every format but JSON streams: each batch is encoded and sent
//! on its own (Parquet: a row group whenever the buffered one reaches 64 MiB), so an answer
//! is never held whole in memory. A query that fails before its first batch is sent answers
//! with its error status; an answer past `query.max_result_bytes` (or a query failing mid-way)
//! ends the body with an error, so the client sees a broken transfer instead of a short
//! answer that looks complete.

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use gata_lakehouse::deltalake::{
    arrow::{csv, datatypes::SchemaRef, error::ArrowError, ipc::writer::StreamWriter, record_batch::RecordBatch},
    parquet::{
        arrow::ArrowWriter,
        basic::{Compression, ZstdLevel},
        file::properties::WriterProperties,
    },
};

use crate::{
    QueryError, Result,
    executor::{ByteBudget, QueryStream},
};

/// A format an answer can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON document: rows, columns, counts (`application/json`). Not streamed.
    Json,
    /// One JSON object per line (`application/x-ndjson`).
    Ndjson,
    /// Comma-separated values with a header line (`text/csv`).
    Csv,
    /// The Arrow IPC stream format (`application/vnd.apache.arrow.stream`).
    Arrow,
    /// A Parquet file (`application/vnd.apache.parquet`).
    Parquet,
}

impl Format {
    /// Every format, in the order offered when the client accepts anything.
    pub const ALL: [Format; 5] = [Format::Json, Format::Ndjson, Format::Csv, Format::Arrow, Format::Parquet];

    /// The media type written in `Content-Type`.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    fn matches(self, media: &str) -> bool {
        match self {
            Format::Json => media == "application/json",
            Format::Ndjson => matches!(media, "application/x-ndjson" | "application/ndjson" | "application/jsonl"),
            Format::Csv => media == "text/csv",
            Format::Arrow => matches!(media, "application/vnd.apache.arrow.stream" | "application/vnd.apache.arrow"),
            Format::Parquet => matches!(media, "application/vnd.apache.parquet" | "application/parquet"),
        }
    }

    /// The format an `Accept` header asks for: the acceptable media range with the highest
    /// `q` (ties: the order given); none or `*/*` is JSON.
    pub fn negotiate(accept: Option<&str>) -> Result<Format> {
        let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else { return Ok(Format::Json) };
        let mut ranges: Vec<(f32, usize, String)> = accept
            .split(',')
            .enumerate()
            .filter_map(|(i, range)| {
                let mut parts = range.split(';');
                let media = parts.next()?.trim().to_ascii_lowercase();
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                (q > 0.0).then_some((q, i, media))
            })
            .collect();
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, media) in &ranges {
            if media == "*/*" || media == "application/*" {
                return Ok(Format::Json);
            }
            if media == "text/*" {
                return Ok(Format::Csv);
            }
            if let Some(f) = Format::ALL.into_iter().find(|f| f.matches(media)) {
                return Ok(f);
            }
        }
        Err(QueryError::NotAcceptable(accept.to_string()))
    }
}

/// Turns batches into one format's bytes.
trait Encoder: Send {
    /// What comes before the first batch.
    fn begin(&mut self) -> Result<Vec<u8>, ArrowError>;
    /// One batch.
    fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError>;
    /// What comes after the last batch.
    fn end(&mut self) -> Result<Vec<u8>, ArrowError>;
}

struct Ndjson;

impl Encoder for Ndjson {
    fn begin(&mut self) -> Result<Vec<u8>, ArrowError> {
        Ok(Vec::new())
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        let mut writer = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow_json::writer::LineDelimited>(Vec::new());
        writer.write(batch)?;
        writer.finish()?;
        Ok(writer.into_inner())
    }

    fn end(&mut self) -> Result<Vec<u8>, ArrowError> {
        Ok(Vec::new())
    }
}

struct Csv {
    schema: SchemaRef,
}

impl Csv {
    fn write(batch: &RecordBatch, header: bool) -> Result<Vec<u8>, ArrowError> {
        let mut writer = csv::WriterBuilder::new().with_header(header).build(Vec::new());
        writer.write(batch)?;
        Ok(writer.into_inner())
    }
}

impl Encoder for Csv {
    fn begin(&mut self) -> Result<Vec<u8>, ArrowError> {
        Self::write(&RecordBatch::new_empty(self.schema.clone()), true)
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        Self::write(batch, false)
    }

    fn end(&mut self) -> Result<Vec<u8>, ArrowError> {
        Ok(Vec::new())
    }
}

struct Arrow {
    writer: StreamWriter<Vec<u8>>,
}

impl Encoder for Arrow {
    fn begin(&mut self) -> Result<Vec<u8>, ArrowError> {
        Ok(std::mem::take(self.writer.get_mut()))
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        self.writer.write(batch)?;
        Ok(std::mem::take(self.writer.get_mut()))
    }

    fn end(&mut self) -> Result<Vec<u8>, ArrowError> {
        self.writer.finish()?;
        Ok(std::mem::take(self.writer.get_mut()))
    }
}

/// Buffered row group size at which a Parquet answer writes the row group out.
const PARQUET_FLUSH_BYTES: usize = 64 << 20;

struct Parquet {
    writer: ArrowWriter<Vec<u8>>,
}

impl Encoder for Parquet {
    fn begin(&mut self) -> Result<Vec<u8>, ArrowError> {
        Ok(std::mem::take(self.writer.inner_mut()))
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        self.writer.write(batch)?;
        if self.writer.in_progress_size() >= PARQUET_FLUSH_BYTES {
            self.writer.flush()?;
        }
        Ok(std::mem::take(self.writer.inner_mut()))
    }

    fn end(&mut self) -> Result<Vec<u8>, ArrowError> {
        self.writer.finish()?;
        Ok(std::mem::take(self.writer.inner_mut()))
    }
}

fn encoder(format: Format, schema: SchemaRef) -> Result<Box<dyn Encoder>, ArrowError> {
    Ok(match format {
        Format::Ndjson | Format::Json => Box::new(Ndjson),
        Format::Csv => Box::new(Csv { schema }),
        Format::Arrow => Box::new(Arrow { writer: StreamWriter::try_new(Vec::new(), &schema)? }),
        Format::Parquet => {
            let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
            Box::new(Parquet {
                writer: ArrowWriter::try_new(Vec::new(), schema, Some(props)).map_err(ArrowError::from)?,
            })
        }
    })
}

/// An answer being encoded.
struct Body {
    input: Option<QueryStream>,
    encoder: Box<dyn Encoder>,
    head: Option<Vec<u8>>,
    budget: ByteBudget,
}

impl Body {
    /// The next chunk of the body; `None` once it is complete or has failed.
    async fn next(&mut self) -> Option<Result<Bytes>> {
        if let Some(head) = self.head.take() {
            return Some(Ok(Bytes::from(head)));
        }
        let input = self.input.as_mut()?;
        let query = input.id().to_string();
        let chunk = match input.next().await {
            Some(Ok(batch)) => self.encoder.batch(&batch).map_err(QueryError::Encode),
            Some(Err(e)) => Err(e),
            None => {
                self.input = None;
                self.encoder.end().map_err(QueryError::Encode)
            }
        };
        let chunk = chunk.and_then(|chunk| {
            self.budget.spend(chunk.len())?;
            Ok(Bytes::from(chunk))
        });
        if let Err(e) = &chunk {
            tracing::warn!(%query, error = %e, "aborting the answer");
            self.input = None;
        }
        Some(chunk)
    }
}

/// `stream` encoded as `format`, at most `max_bytes` long. The first batch is encoded before
/// this returns, so a query that fails before its first rows (an error, a first batch already
/// past a cap) answers with its error status instead of a broken transfer; an `Err` item ends
/// the body abnormally.
pub async fn encode(
    stream: QueryStream,
    format: Format,
    max_bytes: u64,
) -> Result<impl Stream<Item = Result<Bytes>> + Send> {
    let mut encoder = encoder(format, stream.schema()).map_err(QueryError::Encode)?;
    let head = Some(encoder.begin().map_err(QueryError::Encode)?);
    let mut body = Body { input: Some(stream), encoder, head, budget: ByteBudget::new(max_bytes) };
    let mut first = Vec::new();
    while body.input.is_some() && first.len() < 2 {
        match body.next().await {
            Some(chunk) => first.push(Ok(chunk?)),
            None => break,
        }
    }
    let rest = futures::stream::unfold(body, |mut body| async move { body.next().await.map(|chunk| (chunk, body)) });
    Ok(futures::stream::iter(first).chain(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_pick_formats() {
        let pick = |a: Option<&str>| Format::negotiate(a).expect("acceptable");
        assert_eq!(pick(None), Format::Json);
        assert_eq!(pick(Some("*/*")), Format::Json);
        assert_eq!(pick(Some("text/csv")), Format::Csv);
        assert_eq!(pick(Some("application/x-ndjson")), Format::Ndjson);
        assert_eq!(pick(Some("application/vnd.apache.arrow.stream")), Format::Arrow);
        assert_eq!(pick(Some("application/vnd.apache.parquet")), Format::Parquet);
        assert_eq!(pick(Some("text/csv;q=0.5, application/vnd.apache.parquet")), Format::Parquet);
        assert_eq!(pick(Some("image/png, text/csv;q=0.1")), Format::Csv);
        assert_eq!(pick(Some("application/xml;q=1, */*;q=0.1")), Format::Json);
        assert!(matches!(Format::negotiate(Some("image/png")), Err(QueryError::NotAcceptable(_))));
        assert!(matches!(Format::negotiate(Some("text/csv;q=0")), Err(QueryError::NotAcceptable(_))));
    }
}
