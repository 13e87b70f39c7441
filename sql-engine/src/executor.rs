//! Where queries run: a Tokio runtime of their own (`query.executor_threads`), apart from the
//! one serving HTTP and Flight, so a heavy scan or a runaway join cannot starve the listeners.
//!
//! Each query is one task that plans, executes and hands record batches to its caller over a
//! channel of two batches (backpressure: a slow reader slows the query, it never piles up
//! results in memory). The task stops, dropping DataFusion's stream and so cancelling every
//! operator, when the deadline passes, the row cap is reached, an operator cancels it, or the
//! caller goes away.

use std::{
    collections::BTreeMap,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt as _};
use gata_infra::runtime::DedicatedRuntime;
use gata_lakehouse::deltalake::{
    arrow::{datatypes::SchemaRef, record_batch::RecordBatch},
    datafusion::execution::SendableRecordBatchStream,
};
use prometheus::{IntCounterVec, Opts};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{QueryError, Result};

/// What happens when an answer reaches its row cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// End the answer there (the caller asked for one row more than it shows to learn
    /// whether the result was cut).
    Truncate(u64),
    /// Fail the answer: a stream must never end looking complete when it is not.
    Fail(u64),
}

/// The bytes an answer may still take (`query.max_result_bytes`), however they are counted.
#[derive(Debug, Clone, Copy)]
pub struct ByteBudget {
    max: u64,
    used: u64,
}

impl ByteBudget {
    /// A budget of `max` bytes.
    pub fn new(max: u64) -> Self {
        Self { max, used: 0 }
    }

    /// Takes `bytes` from the budget; an error once the answer is past it.
    pub fn spend(&mut self, bytes: usize) -> Result<()> {
        self.used += bytes as u64;
        if self.used > self.max {
            return Err(QueryError::TooLarge(format!(
                "the answer is larger than query.max_result_bytes ({}); add a LIMIT",
                self.max
            )));
        }
        Ok(())
    }
}

/// A query in flight, as `GET /v1/queries` lists it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Running {
    /// Id, for `DELETE /v1/queries/{id}`.
    pub id: String,
    /// Who runs it.
    pub principal: String,
    /// The statement.
    pub sql: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Rows delivered so far.
    pub rows: u64,
    #[serde(skip)]
    #[schemars(skip)]
    cancel: CancellationToken,
}

type Registry = Arc<Mutex<BTreeMap<String, Running>>>;

/// The query runtime and its running queries.
#[derive(Debug)]
pub struct Executor {
    runtime: DedicatedRuntime,
    running: Registry,
    ends: IntCounterVec,
}

impl Executor {
    /// Starts a runtime of `threads` worker threads on a thread of its own.
    pub fn new(threads: usize) -> Result<Self> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads.max(1)).thread_name("gata-query");
        let runtime = DedicatedRuntime::start(builder, "gata-query-runtime")
            .map_err(|e| QueryError::Startup(format!("the query runtime: {e}")))?;
        let ends = IntCounterVec::new(
            Opts::new(
                "gata_query_ends_total",
                "SQL queries ended, by how: complete, row_cap, too_large, failed, cancelled, timeout, caller_gone",
            ),
            &["how"],
        )
        .map_err(|e| QueryError::Startup(format!("the query metrics: {e}")))?;
        for end in End::ALL {
            ends.with_label_values(&[end.label()]);
        }
        Ok(Self { runtime, running: Registry::default(), ends })
    }

    /// How queries ended (`gata_query_ends_total{how}`), for a metrics registry.
    pub fn ends(&self) -> IntCounterVec {
        self.ends.clone()
    }

    /// The queries running now, oldest first.
    pub fn running(&self) -> Vec<Running> {
        let mut all: Vec<Running> = lock(&self.running).values().cloned().collect();
        all.sort_by_key(|r| r.started_at);
        all
    }

    /// Cancels query `id`; false when no such query runs.
    pub fn cancel(&self, id: &str) -> bool {
        lock(&self.running).get(id).map(|r| r.cancel.cancel()).is_some()
    }

    /// Runs `start` (planning and starting execution) on the query runtime and streams its
    /// batches back, within `timeout` overall and `cap` rows. Errors before the first batch
    /// (a plan error, the timeout while planning) are returned here.
    pub async fn start<F>(
        &self,
        principal: String,
        sql: String,
        timeout: Duration,
        cap: Cap,
        start: F,
    ) -> Result<QueryStream>
    where
        F: Future<Output = Result<SendableRecordBatchStream>> + Send + 'static,
    {
        let id = uuid::Uuid::now_v7().to_string();
        let cancel = CancellationToken::new();
        let entry = Running { id: id.clone(), principal, sql, started_at: Utc::now(), rows: 0, cancel: cancel.clone() };
        lock(&self.running).insert(id.clone(), entry);
        let (batches, rx) = mpsc::channel(2);
        let (schema_tx, schema_rx) = oneshot::channel();
        let task = Task {
            id: id.clone(),
            running: self.running.clone(),
            ends: self.ends.clone(),
            cancel,
            deadline: tokio::time::Instant::now() + timeout,
            timeout,
            batches,
        };
        self.runtime.handle().spawn(task.run(start, cap, schema_tx));
        let schema = schema_rx.await.map_err(|_| QueryError::Cancelled(id.clone()))??;
        Ok(QueryStream { id, schema, rx })
    }
}

fn lock(registry: &Registry) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
    registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long an interrupted query waits for a slow caller to take the error that ends it.
const FAIL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// One query's task on the query runtime.
struct Task {
    id: String,
    running: Registry,
    ends: IntCounterVec,
    cancel: CancellationToken,
    deadline: tokio::time::Instant,
    timeout: Duration,
    batches: mpsc::Sender<Result<RecordBatch>>,
}

/// Why a query stopped early.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Cancelled,
    TimedOut,
    CallerGone,
}

/// How a query ended, as `gata_query_ends_total` counts it.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Every row was handed over.
    Complete,
    /// The answer reached its row cap and was cut there (`Cap::Truncate`).
    RowCap,
    /// The answer passed its row cap and failed (`Cap::Fail`).
    TooLarge,
    /// Planning or execution failed.
    Failed,
    Stopped(Stop),
}

impl End {
    /// Every way, so each series is exported from the start (at zero).
    const ALL: [End; 7] = [
        End::Complete,
        End::RowCap,
        End::TooLarge,
        End::Failed,
        End::Stopped(Stop::Cancelled),
        End::Stopped(Stop::TimedOut),
        End::Stopped(Stop::CallerGone),
    ];

    fn label(self) -> &'static str {
        match self {
            End::Complete => "complete",
            End::RowCap => "row_cap",
            End::TooLarge => "too_large",
            End::Failed => "failed",
            End::Stopped(Stop::Cancelled) => "cancelled",
            End::Stopped(Stop::TimedOut) => "timeout",
            End::Stopped(Stop::CallerGone) => "caller_gone",
        }
    }
}

impl Task {
    async fn run<F>(self, start: F, cap: Cap, schema_tx: oneshot::Sender<Result<SchemaRef>>)
    where
        F: Future<Output = Result<SendableRecordBatchStream>>,
    {
        let started = tokio::select! {
            s = start => Ok(s),
            stop = self.interrupted() => Err(stop),
        };
        let stream = match started {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                let _ = schema_tx.send(Err(e));
                return self.finish(End::Failed);
            }
            Err(stop) => {
                let _ = schema_tx.send(Err(self.error(stop)));
                return self.finish(End::Stopped(stop));
            }
        };
        if schema_tx.send(Ok(stream.schema())).is_err() {
            return self.finish(End::Stopped(Stop::CallerGone));
        }
        let end = self.hand_over(stream, cap).await;
        self.finish(end)
    }

    /// Hands `stream`'s batches to the caller until it ends, the cap is reached or the query
    /// must stop.
    async fn hand_over(&self, mut stream: SendableRecordBatchStream, cap: Cap) -> End {
        let (limit, fail) = match cap {
            Cap::Truncate(n) => (n, false),
            Cap::Fail(n) => (n, true),
        };
        let mut rows = 0u64;
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                stop = self.interrupted() => {
                    self.fail(self.error(stop)).await;
                    return End::Stopped(stop);
                }
            };
            let batch = match next {
                None => return End::Complete,
                Some(Err(e)) => {
                    let _ = self.deliver(Err(e.into())).await;
                    return End::Failed;
                }
                Some(Ok(batch)) => batch,
            };
            let room = limit - rows;
            if batch.num_rows() as u64 <= room {
                rows += batch.num_rows() as u64;
                self.progress(rows);
                if batch.num_rows() > 0
                    && let Err(stop) = self.deliver(Ok(batch)).await
                {
                    return End::Stopped(stop);
                }
                if rows == limit && !fail {
                    return End::RowCap;
                }
                continue;
            }
            self.progress(limit);
            if let Err(stop) = self.deliver(Ok(batch.slice(0, room as usize))).await {
                return End::Stopped(stop);
            }
            if !fail {
                return End::RowCap;
            }
            let message = format!("the answer has more than query.max_stream_rows ({limit}) rows; add a LIMIT");
            let _ = self.deliver(Err(QueryError::TooLarge(message))).await;
            return End::TooLarge;
        }
    }

    /// Resolves when the query must stop.
    async fn interrupted(&self) -> Stop {
        tokio::select! {
            _ = self.cancel.cancelled() => Stop::Cancelled,
            _ = tokio::time::sleep_until(self.deadline) => Stop::TimedOut,
            _ = self.batches.closed() => Stop::CallerGone,
        }
    }

    fn error(&self, stop: Stop) -> QueryError {
        match stop {
            Stop::Cancelled | Stop::CallerGone => QueryError::Cancelled(self.id.clone()),
            Stop::TimedOut => QueryError::Timeout(self.timeout),
        }
    }

    /// Hands `item` to the caller, waiting while it reads slowly but not past the deadline
    /// or a cancel. Why the query must stop, when it must.
    async fn deliver(&self, item: Result<RecordBatch>) -> std::result::Result<(), Stop> {
        tokio::select! {
            sent = self.batches.send(item) => sent.map_err(|_| Stop::CallerGone),
            stop = self.interrupted() => {
                if let Stop::TimedOut = stop {
                    let _ = self.batches.try_send(Err(self.error(stop)));
                }
                Err(stop)
            }
        }
    }

    /// Hands the error that ends an interrupted query to the caller. Not through [`Self::deliver`]:
    /// its interruption branch is ready at once after a cancel and could win the race, and the
    /// caller would then see the stream end as if the answer were complete.
    async fn fail(&self, error: QueryError) {
        let _ = tokio::time::timeout(FAIL_GRACE, self.batches.send(Err(error))).await;
    }

    fn progress(&self, rows: u64) {
        if let Some(r) = lock(&self.running).get_mut(&self.id) {
            r.rows = rows;
        }
    }

    fn finish(&self, end: End) {
        lock(&self.running).remove(&self.id);
        self.ends.with_label_values(&[end.label()]).inc();
    }
}

/// The batches of a running query. Dropping it cancels the query.
#[derive(Debug)]
pub struct QueryStream {
    id: String,
    schema: SchemaRef,
    rx: mpsc::Receiver<Result<RecordBatch>>,
}

impl QueryStream {
    /// The query's id in the running list.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The answer's schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
