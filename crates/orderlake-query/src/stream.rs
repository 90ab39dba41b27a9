//! A running query's batches as its client receives them: stopped by the query's deadline, its
//! cancellation or its result limit, with Arrow's view types replaced by their plain forms.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt as _};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::activity::RunningGuard;
use crate::error::{QueryError, Result};
use crate::limits::{QueryLimits, RunPermit};
use crate::storage_watch::StorageWatch;

/// A running query's batches, stopped by its deadline, its cancellation or its result limit.
pub struct QueryStream {
    pub(crate) schema: SchemaRef,
    pub(crate) needs_cast: bool,
    pub(crate) inner: Option<SendableRecordBatchStream>,
    pub(crate) deadline: Pin<Box<tokio::time::Sleep>>,
    pub(crate) cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    pub(crate) limits: QueryLimits,
    /// Whether storage is answering: a query out of time under silent storage is told so.
    pub(crate) storage: Arc<StorageWatch>,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) started: Instant,
    // The slot is freed before the query leaves the running list: whoever sees the list empty
    // can run again.
    pub(crate) _permit: RunPermit,
    pub(crate) guard: RunningGuard,
    /// The query's span (its id and user), entered while its batches are computed.
    pub(crate) span: tracing::Span,
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
            .field("query_id", &self.guard.id)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl QueryStream {
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn stop(&mut self, outcome: &'static str) {
        if self.inner.take().is_some() {
            self.guard.ended(outcome, self.rows);
            let _entered = self.span.clone().entered();
            tracing::info!(
                rows = self.rows,
                bytes = self.bytes,
                elapsed_ms = self.started.elapsed().as_millis() as u64,
                outcome,
                "query ended"
            );
        }
    }

    fn over_limit(&self) -> Option<QueryError> {
        let l = &self.limits;
        (self.rows > l.max_result_rows || self.bytes > l.max_result_bytes).then(|| {
            QueryError::ResourcesExhausted {
                message: format!(
                    "the result exceeds the server's limit of {} rows or {} bytes; add a LIMIT \
                     or narrow the query",
                    l.max_result_rows, l.max_result_bytes
                ),
            }
        })
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.inner.is_none() {
            return Poll::Ready(None);
        }
        let span = self.span.clone();
        let _entered = span.enter();
        if self.cancelled.as_mut().poll(cx).is_ready() {
            self.stop("cancelled");
            let query_id = self.guard.id.clone();
            return Poll::Ready(Some(Err(QueryError::Cancelled { query_id })));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let e = out_of_time(&self.limits, &self.storage);
            self.stop(outcome(&e));
            return Poll::Ready(Some(Err(e)));
        }
        let next = match self.inner.as_mut() {
            // A panic while computing the batch ends this query, not the connection.
            Some(inner) => match catch_unwind(AssertUnwindSafe(|| inner.poll_next_unpin(cx))) {
                Ok(next) => next,
                Err(panic) => {
                    self.stop("failed");
                    return Poll::Ready(Some(Err(QueryError::panicked(panic.as_ref()))));
                }
            },
            None => return Poll::Ready(None),
        };
        match next {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.stop("finished");
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.stop("failed");
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(batch))) => {
                let batch = if self.needs_cast {
                    match cast_batch(&batch, &self.schema) {
                        Ok(b) => b,
                        Err(e) => {
                            self.stop("failed");
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                } else {
                    batch
                };
                self.rows += batch.num_rows() as u64;
                self.bytes += batch.get_array_memory_size() as u64;
                if let Some(e) = self.over_limit() {
                    self.stop("result too large");
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(batch)))
            }
        }
    }
}

impl Drop for QueryStream {
    fn drop(&mut self) {
        self.stop("abandoned by the client");
    }
}

/// Replaces Arrow's view types (`Utf8View`, `BinaryView`) by their plain forms, at any depth:
/// not every client reads views.
pub fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Fields = schema.fields().iter().map(plain_field).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn plain_field(f: &FieldRef) -> FieldRef {
    Arc::new(
        Field::new(f.name(), plain_type(f.data_type()), f.is_nullable())
            .with_metadata(f.metadata().clone()),
    )
}

fn plain_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(plain_field(f)),
        DataType::LargeList(f) => DataType::LargeList(plain_field(f)),
        DataType::ListView(f) => DataType::List(plain_field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(plain_field(f), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(plain_field).collect()),
        DataType::Map(f, sorted) => DataType::Map(plain_field(f), *sorted),
        other => other.clone(),
    }
}

fn cast_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// What a query that reached its time limit is told: that the archive's storage stopped
/// answering under it (silent for half its limit, or 10 s if that is shorter), or that it ran
/// out of time.
pub(crate) fn out_of_time(limits: &QueryLimits, storage: &StorageWatch) -> QueryError {
    let silent = (limits.timeout / 2).min(Duration::from_secs(10));
    match storage.stalled(silent) {
        Some(stall) => QueryError::Unavailable {
            message: format!(
                "{stall}; the query was stopped at its {}s time limit: retry once storage \
                 answers again",
                limits.timeout.as_secs_f64()
            ),
        },
        None => QueryError::Timeout {
            timeout: limits.timeout,
        },
    }
}

/// How a query that failed with `e` before its end is recorded (`system.runtime.queries`).
pub(crate) fn outcome(e: &QueryError) -> &'static str {
    match e {
        QueryError::Cancelled { .. } => "cancelled",
        QueryError::Timeout { .. } => "timeout",
        QueryError::Unavailable { .. } => "storage unavailable",
        _ => "failed",
    }
}
