//! What the Flight SQL front door exports (`orderlake_telemetry::catalogue::server`): each
//! query's outcome and the status its client got, its duration and time to first batch, the rows
//! and bytes streamed, and refused sign-ins.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow_flight::error::FlightError;
use futures::Stream;
use metrics::{counter, histogram};
use orderlake_telemetry::catalogue::server as m;
use tonic::{Code, Status};

/// The `front_door` label of this protocol.
pub const FLIGHT_SQL: &str = "flight_sql";
/// The `front_door` label of the Trino protocol.
pub const TRINO: &str = "trino";

/// gRPC's canonical name of a status code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn query_ended(door: &'static str, code: Code, started: Option<Instant>) {
    ended(door, code_name(code), code == Code::Ok, started);
}

/// A query of any front door ended: `status` is its protocol's name for how (`OK`, a gRPC code,
/// a Trino error name).
pub fn ended(door: &'static str, status: &'static str, ok: bool, started: Option<Instant>) {
    let outcome = if ok { "ok" } else { "error" };
    counter!(m::QUERIES, "front_door" => door, "outcome" => outcome, "status" => status)
        .increment(1);
    if let Some(started) = started {
        histogram!(m::QUERY_DURATION, "front_door" => door, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
    }
}

/// A query refused before it streamed anything (while planning or being admitted).
pub fn refused(door: &'static str, status: &Status) {
    query_ended(door, status.code(), None);
}

/// Rows and bytes a front door sent, and the time to its first rows when `first` is set.
pub fn streamed(door: &'static str, rows: u64, bytes: u64, first: Option<Instant>) {
    if let Some(started) = first {
        histogram!(m::QUERY_FIRST_BATCH, "front_door" => door)
            .record(started.elapsed().as_secs_f64());
    }
    counter!(m::ROWS_STREAMED, "front_door" => door).increment(rows);
    counter!(m::BYTES_STREAMED, "front_door" => door).increment(bytes);
}

/// A refused sign-in (`call`: handshake) or a call without valid credentials (`call`: request).
pub fn auth_failed(call: &'static str) {
    counter!(m::AUTH_FAILURES, "call" => call).increment(1);
}

/// A query's result stream, counted as it is sent: rows, bytes, the first batch, and how it
/// ended (finished, failed with a status, or abandoned by its client: CANCELLED).
pub struct Observed<S> {
    inner: S,
    door: &'static str,
    started: Instant,
    first_batch: bool,
    ended: bool,
}

impl<S> std::fmt::Debug for Observed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("door", &self.door)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl<S> Observed<S> {
    pub fn new(inner: S, door: &'static str, started: Instant) -> Self {
        Self {
            inner,
            door,
            started,
            first_batch: true,
            ended: false,
        }
    }

    fn end(&mut self, code: Code) {
        if !self.ended {
            self.ended = true;
            query_ended(self.door, code, Some(self.started));
        }
    }
}

impl<S> Stream for Observed<S>
where
    S: Stream<Item = Result<RecordBatch, FlightError>> + Unpin,
{
    type Item = Result<RecordBatch, FlightError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.inner).poll_next(cx);
        match &next {
            Poll::Pending => {}
            Poll::Ready(Some(Ok(batch))) => {
                let door = self.door;
                if std::mem::take(&mut self.first_batch) {
                    histogram!(m::QUERY_FIRST_BATCH, "front_door" => door)
                        .record(self.started.elapsed().as_secs_f64());
                }
                counter!(m::ROWS_STREAMED, "front_door" => door).increment(batch.num_rows() as u64);
                counter!(m::BYTES_STREAMED, "front_door" => door)
                    .increment(batch.get_array_memory_size() as u64);
            }
            Poll::Ready(Some(Err(e))) => {
                let code = match e {
                    FlightError::Tonic(status) => status.code(),
                    _ => Code::Internal,
                };
                self.end(code);
            }
            Poll::Ready(None) => self.end(Code::Ok),
        }
        next
    }
}

impl<S> Drop for Observed<S> {
    fn drop(&mut self) {
        self.end(Code::Cancelled);
    }
}
