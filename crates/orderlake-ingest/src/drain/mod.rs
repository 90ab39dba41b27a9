//! The drain loop: Kafka → row buffer → flushes → exactly-once commits.
//!
//! A dedicated OS thread owns the consumer: it polls, decodes and buffers, so Parquet encoding and
//! object-store latency never stall polling (and with it group membership). Flushes go to a writer
//! task that commits them one at a time, in order. Partition assignment reads the ledger from the
//! table and assigns with explicit offsets, so Kafka's group offsets never decide where we start.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use orderlake_archive::SourcePartition;
use tracing::Instrument as _;

mod context;
mod ingest_loop;
mod meters;
mod position;

use crate::error::{IngestError, Result};
use crate::mapping::MappingSet;
use crate::rowbuf::ArchiveRowBuffer;
use crate::writer::{ArchiveWriter, Flush, FlushOutcome, LedgerAdvance};
use context::DrainContext;
use ingest_loop::IngestLoop;
use meters::{FlushSummary, Meters};
use position::Position;

/// Where a partition the table has never seen starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// Everything the drain loop needs to know.
#[derive(Debug, Clone)]
pub struct DrainSettings {
    pub brokers: String,
    pub group: String,
    pub topics: Vec<String>,
    pub start_from: StartFrom,
    pub flush_rows: usize,
    pub flush_bytes: usize,
    pub flush_interval: Duration,
    /// Budget for buffered rows across all partitions and dates; consumption pauses above it.
    pub memory_budget_bytes: usize,
    pub max_decode_bytes: usize,
    pub until_caught_up: bool,
    /// Commit archived offsets to the Kafka group too (advisory, for lag tools).
    pub commit_to_group: bool,
    /// How long a graceful stop may take to flush and commit.
    pub shutdown_grace: Duration,
    /// Extra librdkafka properties.
    pub kafka: BTreeMap<String, String>,
    /// Where the loop reports whether a broker answers (condition `broker`).
    pub readiness: orderlake_telemetry::Readiness,
    /// Writer schemas of records framed for a schema registry (none: archived raw, with the
    /// reason).
    pub schema_registry: Option<Arc<crate::registry::SchemaRegistry>>,
}

/// What a drain did, for logs and `--until-caught-up` callers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    pub rows_committed: u64,
    pub undecoded_rows: u64,
    pub flushes_committed: u64,
    pub flushes_fenced: u64,
    pub rebalances: u64,
}

/// Cooperative stop signal shared with the signal handler.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// The underlying flag, for code that polls it directly.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

/// Flushes handed to the writer and not yet answered.
#[derive(Debug, Default)]
struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

impl InFlight {
    fn add(&self) {
        *self.count.lock().expect("in-flight lock") += 1;
    }
    fn done(&self) {
        let mut n = self.count.lock().expect("in-flight lock");
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.idle.notify_all();
        }
    }
    fn is_idle(&self) -> bool {
        *self.count.lock().expect("in-flight lock") == 0
    }
    /// Waits until the writer has answered every flush; false on timeout.
    fn wait_idle(&self, timeout: Duration) -> bool {
        let n = self.count.lock().expect("in-flight lock");
        let (n, _) = self
            .idle
            .wait_timeout_while(n, timeout, |n| *n > 0)
            .expect("in-flight lock");
        *n == 0
    }
}

struct Job {
    generation: u64,
    flush: Flush,
    undecoded: u64,
    summary: FlushSummary,
}

struct JobResult {
    generation: u64,
    rows: u64,
    undecoded: u64,
    advances: Vec<LedgerAdvance>,
    summary: FlushSummary,
    outcome: Result<Option<FlushOutcome>>,
}

/// State shared between the poll loop and the rebalance callbacks (both on the ingest thread).
struct DrainState {
    buffer: ArchiveRowBuffer,
    buffer_undecoded: u64,
    buffer_started: Option<Instant>,
    positions: BTreeMap<SourcePartition, Position>,
    generation: u64,
    report: DrainReport,
    meters: Meters,
}

impl DrainState {
    /// Drops the buffered rows: they were never committed, so Kafka delivers them again.
    fn discard_buffer(&mut self) {
        let _ = self.buffer.finish();
        self.buffer_undecoded = 0;
        self.buffer_started = None;
        for pos in self.positions.values_mut() {
            pos.clear_buffered();
        }
    }

    /// A flush the writer committed (or found committed by an earlier attempt).
    fn count_committed(&mut self, r: &JobResult) {
        self.report.rows_committed += r.rows;
        self.report.undecoded_rows += r.undecoded;
        self.report.flushes_committed += 1;
        self.meters.archived(&r.summary);
    }

    fn paused(&self) -> usize {
        self.positions.values().filter(|p| p.is_paused()).count()
    }
}

/// The span every log line of a flush carries: the offsets it archives, per topic and partition
/// (`topic[partition]:first..last`).
fn flush_span(advances: &[LedgerAdvance]) -> tracing::Span {
    let offsets: Vec<String> = advances
        .iter()
        .map(|a| {
            let first = a.after.map_or(0, |o| o + 1);
            format!("{}:{first}..{}", a.partition, a.through)
        })
        .collect();
    tracing::info_span!("flush", offsets = %offsets.join(" "))
}

/// Runs the archiver until stopped (or, with `until_caught_up`, until every assigned partition is
/// archived to its end).
pub async fn drain(
    settings: DrainSettings,
    mappings: MappingSet,
    writer: ArchiveWriter,
    stop: StopSignal,
) -> Result<DrainReport> {
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let (job_tx, mut job_rx) = tokio::sync::mpsc::channel::<Job>(1);
    let (result_tx, result_rx) = mpsc::channel::<JobResult>();
    let in_flight = Arc::new(InFlight::default());
    let writer_generation = Arc::new(AtomicU64::new(0));

    let writer_task = {
        let writer = Arc::clone(&writer);
        let in_flight = Arc::clone(&in_flight);
        let generation = Arc::clone(&writer_generation);
        tokio::spawn(async move {
            while let Some(job) = job_rx.recv().await {
                let rows = job.flush.batch.num_rows() as u64;
                let outcome = if job.generation < generation.load(Ordering::SeqCst) {
                    meters::flush_outcome("stale", None);
                    Ok(None)
                } else {
                    let started = Instant::now();
                    let span = flush_span(&job.flush.advances);
                    let outcome = writer
                        .lock()
                        .await
                        .commit(&job.flush)
                        .instrument(span)
                        .await;
                    if let Ok(o) = &outcome {
                        meters::flush_outcome(o.label(), Some(started.elapsed()));
                    }
                    outcome.map(Some)
                };
                let _ = result_tx.send(JobResult {
                    generation: job.generation,
                    rows,
                    undecoded: job.undecoded,
                    advances: job.flush.advances,
                    summary: job.summary,
                    outcome,
                });
                in_flight.done();
            }
        })
    };

    let runtime = tokio::runtime::Handle::current();
    let ingest = std::thread::Builder::new()
        .name("orderlake-ingest".into())
        .spawn(move || {
            let context = DrainContext {
                runtime,
                writer,
                jobs: job_tx,
                in_flight,
                writer_generation,
                state: Mutex::new(DrainState {
                    buffer: ArchiveRowBuffer::new(),
                    buffer_undecoded: 0,
                    buffer_started: None,
                    positions: BTreeMap::new(),
                    generation: 0,
                    report: DrainReport::default(),
                    meters: Meters::new(&settings.group, settings.memory_budget_bytes),
                }),
                start_from: settings.start_from,
                stop,
                rebalance_wait: settings.shutdown_grace,
                fatal: Mutex::new(None),
                watermarks: Mutex::new(HashMap::new()),
                stats_seq: AtomicU64::new(0),
                readiness: settings.readiness.clone(),
            };
            IngestLoop::new(settings, mappings, context, result_rx)?.run()
        })
        .map_err(|_| IngestError::TaskLost("ingest thread"))?;

    let report = tokio::task::spawn_blocking(move || ingest.join())
        .await
        .map_err(|_| IngestError::TaskLost("ingest thread"))?
        .map_err(|_| IngestError::TaskLost("ingest thread"))?;
    // The consumer (and with it the job sender) is gone: the writer task ends.
    let _ = writer_task.await;
    report
}
