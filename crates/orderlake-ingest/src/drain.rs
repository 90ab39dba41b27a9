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

use orderlake_archive::{OffsetLedger, SourcePartition};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::decode::TopicDecoder;
use crate::error::{IngestError, Result};
use crate::mapping::MappingSet;
use crate::pressure::{self, Pause};
use crate::rowbuf::{ArchiveRowBuffer, Envelope};
use crate::writer::{ArchiveWriter, Flush, FlushOutcome, LedgerAdvance};

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
}

struct JobResult {
    generation: u64,
    rows: u64,
    undecoded: u64,
    advances: Vec<LedgerAdvance>,
    outcome: Result<Option<FlushOutcome>>,
}

/// Per-partition position as the ingest thread knows it.
#[derive(Debug, Clone)]
struct Position {
    /// Ledger offset the next flush starts after (the previous flush's `through`).
    after: Option<i64>,
    /// Last offset appended to the buffer.
    buffered_through: Option<i64>,
    /// Bytes of this partition's keys and values in the buffer (its share of the back-pressure).
    buffered_bytes: usize,
    /// Lower bound of the next offset Kafka will hand us.
    next: i64,
    start: Offset,
    /// Whether any record arrived since the partition was (re)positioned.
    received: bool,
    /// Statistics sequence number at (re)positioning: only later snapshots say where the end is.
    positioned_at: u64,
    /// Whether a record at or before the position arrived since (re)positioning, proving that
    /// the broker serves the partition from where we asked.
    anchored: bool,
    /// How far back the last re-read started, after the broker skipped records or served
    /// nothing at the position.
    rewind_back: Option<i64>,
    /// When the partition was (re)positioned or last re-read.
    last_seek: Instant,
    /// When the last record of the partition arrived, and the statistics sequence number then:
    /// a partition that serves nothing while newer statistics show records beyond it is stuck.
    last_record: (Instant, u64),
    /// How long to wait for a record before the next stall re-read.
    stall_patience: Duration,
    /// Since when fetching is paused, and why (`None`: fetching).
    paused: Option<(Instant, PauseFor)>,
    /// When the other partitions last paused for this one because it went unserved, and how
    /// long to wait before doing it again (doubled while it stays unserved: a partition stuck
    /// inside a batch on the broker is not helped by it and is re-read instead).
    starved_pause: (Instant, Duration),
}

/// Why a partition's fetching is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PauseFor {
    /// The writer is behind and the partition holds more than its share of the buffer: it
    /// fetches again when the writer takes the next flush.
    Writer,
    /// Other partitions have records waiting that the broker does not serve while this one takes
    /// every fetch response: it fetches again at this instant.
    Starved(Instant),
}

/// First look this many offsets back when a fetch skips records; then 8 times further each time.
const FIRST_REWIND: i64 = 512;
/// How long stale records of an earlier fetch may keep arriving after a re-read before the
/// archiver reads from further back.
const REWIND_PATIENCE: Duration = Duration::from_secs(2);
/// How long a partition with records beyond its position may serve nothing before the archiver
/// takes it as stuck and re-reads; doubled after every re-read that brings nothing (up to
/// [`MAX_STALL_PATIENCE`]), so that a slow broker is given time instead of being interrupted.
const STALL_PATIENCE: Duration = Duration::from_secs(3);
const MAX_STALL_PATIENCE: Duration = Duration::from_secs(60);
/// How long records may wait on the broker, unserved, while other partitions are served, before
/// those others pause for [`STARVED_PAUSE`] so that the next fetches serve the waiting ones.
const STARVED_AFTER: Duration = Duration::from_secs(3);
const STARVED_PAUSE: Duration = Duration::from_secs(1);

/// What the poll loop must do after a record.
enum AfterRecord {
    Continue,
    /// Re-read the partition from this offset.
    Seek(SourcePartition, i64),
}

/// A partition's watermarks as the latest fetch responses reported them (librdkafka statistics;
/// never ListOffsets, which some brokers answer wrongly).
#[derive(Debug, Clone, Copy)]
struct Watermarks {
    low: i64,
    high: i64,
    seq: u64,
}

impl Position {
    fn new(archived: Option<i64>, start: Offset, seq: u64) -> Self {
        Self {
            after: archived,
            buffered_through: None,
            buffered_bytes: 0,
            next: archived.map_or(0, |o| o + 1),
            start,
            received: false,
            positioned_at: seq,
            // Nothing to prove without a ledger position: the log's start is where we began.
            anchored: archived.is_none(),
            rewind_back: None,
            last_seek: Instant::now(),
            last_record: (Instant::now(), seq),
            stall_patience: STALL_PATIENCE,
            paused: None,
            starved_pause: (Instant::now(), STARVED_AFTER),
        }
    }

    fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// Stops fetching the partition; its stall clock stops with it.
    fn pause(&mut self, why: PauseFor) {
        let since = self.paused.map_or_else(Instant::now, |(since, _)| since);
        self.paused = Some((since, why));
    }

    /// Fetches again if paused for a reason `done` says is over (`false`: nothing to resume).
    /// Time spent paused does not count as waiting for a record: a partition stuck on the broker
    /// is still found, however often it is made to wait.
    fn resume_if(&mut self, done: impl FnOnce(PauseFor) -> bool) -> bool {
        let Some((since, why)) = self.paused else {
            return false;
        };
        if !done(why) {
            return false;
        }
        self.paused = None;
        let (now, paused_for) = (Instant::now(), since.elapsed());
        self.last_record.0 = (self.last_record.0 + paused_for).min(now);
        self.last_seek = (self.last_seek + paused_for).min(now);
        true
    }

    /// Checks that `offset` continues the partition. Records that do not arrive in sequence are
    /// either gone from the log (transaction markers, retention, compaction) or were skipped by
    /// the broker (some brokers answer a fetch inside a record batch with the next batch, which
    /// happens after every re-positioning: a restart, a rebalance, a resumed pause). Never accept
    /// a gap silently: re-read from further back until the broker serves the records before the
    /// gap in sequence (then the gap is real), or the start of the log shows the records are gone.
    fn check_gap(&mut self, sp: &SourcePartition, offset: i64, seq: u64) -> Option<AfterRecord> {
        let expected = self.next;
        self.last_record = (Instant::now(), seq);
        self.stall_patience = STALL_PATIENCE;
        self.starved_pause.1 = STARVED_AFTER;
        if offset == expected {
            self.anchored = true;
            self.rewind_back = None;
            return None;
        }
        if offset < expected {
            // A re-delivery: the broker serves from before the position (dropped as a duplicate).
            self.anchored = true;
            return None;
        }
        if self.anchored {
            if self.rewind_back.take().is_some() {
                tracing::info!(
                    topic = %sp.topic, partition = sp.partition, expected, next = offset,
                    "offsets {expected}..{} are not in the log (transaction markers, compaction or \
                     retention); continuing from {offset}",
                    offset - 1
                );
                return None;
            }
            let from = self.reread(
                sp,
                format_args!("the broker skipped from offset {expected} to {offset}"),
            );
            return Some(AfterRecord::Seek(sp.clone(), from));
        }
        match self.rewind_back {
            // Records fetched before the re-read: drop them and wait for it.
            Some(_) if self.last_seek.elapsed() < REWIND_PATIENCE => Some(AfterRecord::Continue),
            Some(back) if back >= expected => {
                tracing::warn!(
                    topic = %sp.topic, partition = sp.partition, expected, first = offset,
                    "offsets {expected}..{} are not on the broker (deleted by retention or \
                     compaction); archiving continues from {offset}",
                    offset - 1
                );
                self.anchored = true;
                self.rewind_back = None;
                None
            }
            _ => {
                let from = self.reread(
                    sp,
                    format_args!(
                        "the broker answered a fetch at offset {expected} with offset {offset}"
                    ),
                );
                Some(AfterRecord::Seek(sp.clone(), from))
            }
        }
    }

    /// Nothing arrived for a while although statistics newer than the last record show records
    /// beyond the position: some brokers answer a fetch inside the last record batch with
    /// nothing, forever. Re-read from further back (`None`: nothing to do yet).
    fn check_stall(&mut self, sp: &SourcePartition, marks: Option<&Watermarks>) -> Option<i64> {
        let patience = self.stall_patience;
        if self.is_paused()
            || self.last_record.0.elapsed() < patience
            || self.last_seek.elapsed() < patience
        {
            return None;
        }
        // At the start of the log a fetch begins at a batch boundary: nothing to repair.
        let w = self
            .waiting_beyond(marks)
            .filter(|w| w.low.max(0) < self.next)?;
        self.stall_patience = (patience * 2).min(MAX_STALL_PATIENCE);
        let (expected, high) = (self.next, w.high);
        Some(self.reread(
            sp,
            format_args!(
                "no record arrived from offset {expected} in {patience:?} although the \
                 partition ends at {high}"
            ),
        ))
    }

    /// Where to seek to re-read further back than the last re-read (512 offsets first, then 8
    /// times further).
    fn reread(&mut self, sp: &SourcePartition, why: std::fmt::Arguments<'_>) -> i64 {
        let expected = self.next;
        let back = self
            .rewind_back
            .map_or(FIRST_REWIND, |b| b.saturating_mul(8));
        let from = expected.saturating_sub(back).max(0);
        tracing::warn!(
            topic = %sp.topic, partition = sp.partition, expected, from,
            "{why}; re-reading from {from} so that no record is skipped"
        );
        self.rewind_back = Some(back);
        self.last_seek = Instant::now();
        self.anchored = false;
        from
    }

    /// The partition's statistics when they are newer than its positioning and its last record
    /// and show records beyond what it has read: records wait on the broker.
    fn waiting_beyond<'w>(&self, marks: Option<&'w Watermarks>) -> Option<&'w Watermarks> {
        let seq = self.last_record.1;
        marks.filter(|w| w.seq > self.positioned_at.max(seq) && w.high > self.next)
    }

    /// Records have waited on the broker for [`STARVED_AFTER`] (longer after each time, see
    /// `starved_pause`) of fetching time without one arriving, by statistics newer than the last
    /// record: the broker serves other partitions (some fill a whole fetch response from one
    /// partition), or is stuck inside a batch. When true, the other partitions are to pause.
    fn starved(&mut self, marks: Option<&Watermarks>) -> bool {
        let (last, patience) = self.starved_pause;
        let starved = !self.is_paused()
            && self.last_record.0.elapsed() >= patience
            && last.elapsed() >= patience
            && self.waiting_beyond(marks).is_some();
        if starved {
            self.starved_pause = (Instant::now(), (patience * 2).min(MAX_STALL_PATIENCE));
        }
        starved
    }

    /// True when a snapshot taken after positioning shows nothing beyond what we have read.
    fn at_end(&self, marks: Option<&Watermarks>) -> bool {
        let Some(w) = marks.filter(|w| w.seq > self.positioned_at && w.high >= 0) else {
            return false;
        };
        self.next >= w.high
            || (!self.received && (self.start == Offset::End || (w.low >= 0 && w.low >= w.high)))
    }
}

/// State shared between the poll loop and the rebalance callbacks (both on the ingest thread).
struct DrainState {
    buffer: ArchiveRowBuffer,
    buffer_undecoded: u64,
    buffer_started: Option<Instant>,
    positions: BTreeMap<SourcePartition, Position>,
    generation: u64,
    report: DrainReport,
}

impl DrainState {
    /// Drops the buffered rows: they were never committed, so Kafka delivers them again.
    fn discard_buffer(&mut self) {
        let _ = self.buffer.finish();
        self.buffer_undecoded = 0;
        self.buffer_started = None;
        for pos in self.positions.values_mut() {
            pos.buffered_bytes = 0;
        }
    }

    fn paused(&self) -> usize {
        self.positions.values().filter(|p| p.is_paused()).count()
    }
}

struct DrainContext {
    runtime: tokio::runtime::Handle,
    writer: Arc<tokio::sync::Mutex<ArchiveWriter>>,
    jobs: tokio::sync::mpsc::Sender<Job>,
    in_flight: Arc<InFlight>,
    writer_generation: Arc<AtomicU64>,
    state: Mutex<DrainState>,
    start_from: StartFrom,
    stop: StopSignal,
    rebalance_wait: Duration,
    fatal: Mutex<Option<IngestError>>,
    watermarks: Mutex<HashMap<SourcePartition, Watermarks>>,
    stats_seq: AtomicU64,
}

impl ClientContext for DrainContext {
    /// Reaching the end of a partition is expected (that is how `--until-caught-up` works), not an
    /// error; everything else librdkafka reports is logged for the operator.
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::debug!(reason, "end of partition");
        } else {
            tracing::warn!(error = %error, reason, "Kafka client error");
        }
    }

    fn stats(&self, statistics: Statistics) {
        let seq = self.stats_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let mut marks = self.watermarks.lock().expect("watermarks lock");
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 {
                    continue; // librdkafka's internal "unassigned" partition
                }
                marks.insert(
                    SourcePartition::new(topic.as_str(), *partition),
                    Watermarks {
                        low: p.lo_offset,
                        high: p.hi_offset,
                        seq,
                    },
                );
            }
        }
    }
}

impl ConsumerContext for DrainContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(tpl);
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign after revocation failed");
                }
            }
            other => tracing::error!(error = ?other, "rebalance error from the group coordinator"),
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<SourcePartition> {
    tpl.elements()
        .iter()
        .map(|e| SourcePartition::new(e.topic(), e.partition()))
        .collect()
}

impl DrainContext {
    fn lock(&self) -> std::sync::MutexGuard<'_, DrainState> {
        self.state.lock().expect("drain state lock")
    }

    /// Before giving partitions up, hand what we buffered for them to the writer: the next owner
    /// reads the ledger only after its own assignment, and the writer's re-check keeps a late
    /// commit from duplicating anything the next owner archived first.
    fn on_revoke(&self, tpl: &TopicPartitionList) {
        let revoked = partitions_of(tpl);
        tracing::info!(
            partitions = revoked.len(),
            "partitions revoked; flushing what was buffered"
        );
        let mut st = self.lock();
        st.report.rebalances += 1;
        self.submit_buffer(&mut st);
        for sp in &revoked {
            st.positions.remove(sp);
        }
    }

    /// On assignment: wait for our own flushes to land, read the ledger, and start each partition
    /// right after its archived offset.
    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let assigned = partitions_of(tpl);
        if !self.in_flight.wait_idle(self.rebalance_wait) {
            tracing::warn!(
                "earlier flushes still committing after the rebalance wait; the ledger re-check keeps this safe"
            );
        }
        let ledger = self.read_ledger(assigned.clone());
        let ledger = match ledger {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the offset ledger for the new assignment");
                *self.fatal.lock().expect("fatal lock") = Some(e);
                self.stop.stop();
                let _ = consumer.assign(&TopicPartitionList::new());
                return;
            }
        };
        let mut st = self.lock();
        st.generation += 1;
        self.writer_generation
            .store(st.generation, Ordering::SeqCst);
        st.positions.clear();
        // Nothing buffered now belongs to a partition we may keep: it was handed over on revoke.
        st.discard_buffer();
        for sp in &assigned {
            let archived = ledger.archived(sp);
            let start = match (archived, self.start_from) {
                (Some(o), _) => Offset::Offset(o + 1),
                (None, StartFrom::Earliest) => Offset::Beginning,
                (None, StartFrom::Latest) => Offset::End,
            };
            if let Err(e) = tpl.set_partition_offset(&sp.topic, sp.partition, start) {
                tracing::error!(partition = %sp, error = %e, "cannot set start offset");
            }
            let seq = self.stats_seq.load(Ordering::SeqCst);
            st.positions
                .insert(sp.clone(), Position::new(archived, start, seq));
        }
        drop(st);
        let summary: Vec<String> = ledger
            .iter()
            .map(|(sp, o)| match o {
                Some(o) => format!("{sp}@{}", o + 1),
                None => format!("{sp}@{:?}", self.start_from),
            })
            .collect();
        tracing::info!(version = ?ledger.version(), "assigned {} partitions: {}", summary.len(), summary.join(" "));
        if let Err(e) = consumer.assign(tpl) {
            tracing::error!(error = %e, "assign failed");
        }
        // librdkafka keeps a partition paused by the application across revoke and assign;
        // the new positions start unpaused, so the client must too.
        if let Err(e) = consumer.resume(tpl) {
            tracing::warn!(error = %e, "resuming the assigned partitions failed");
        }
    }

    fn read_ledger(&self, partitions: Vec<SourcePartition>) -> Result<OffsetLedger> {
        self.runtime.block_on(async {
            let mut backoff = Duration::from_millis(200);
            loop {
                let mut writer = self.writer.lock().await;
                let read = async {
                    writer.table_mut().refresh().await?;
                    OffsetLedger::read(writer.table(), partitions.clone()).await
                }
                .await;
                match read {
                    Ok(l) => return Ok(l),
                    Err(e) if !self.stop.is_stopped() => {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "reading the offset ledger failed; retrying");
                    }
                    Err(e) => return Err(e.into()),
                }
                drop(writer);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        })
    }

    /// Turns the buffer into a flush and hands it to the writer (blocking while one is queued).
    fn submit_buffer(&self, st: &mut DrainState) {
        if st.buffer.is_empty() {
            return;
        }
        let job = Self::take_job(st);
        self.in_flight.add();
        if self.jobs.blocking_send(job).is_err() {
            self.in_flight.done();
            *self.fatal.lock().expect("fatal lock") = Some(IngestError::TaskLost("archive writer"));
        }
    }

    fn take_job(st: &mut DrainState) -> Job {
        let batch = st.buffer.finish();
        let mut advances = Vec::new();
        for (sp, pos) in &mut st.positions {
            pos.buffered_bytes = 0;
            if let Some(through) = pos.buffered_through.take() {
                advances.push(LedgerAdvance {
                    partition: sp.clone(),
                    after: pos.after,
                    through,
                });
                pos.after = Some(through);
            }
        }
        let undecoded = std::mem::take(&mut st.buffer_undecoded);
        st.buffer_started = None;
        Job {
            generation: st.generation,
            flush: Flush {
                batch,
                advances,
                import: None,
            },
            undecoded,
        }
    }
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
                    Ok(None)
                } else {
                    writer.lock().await.commit(&job.flush).await.map(Some)
                };
                let _ = result_tx.send(JobResult {
                    generation: job.generation,
                    rows,
                    undecoded: job.undecoded,
                    advances: job.flush.advances,
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
                }),
                start_from: settings.start_from,
                stop,
                rebalance_wait: settings.shutdown_grace,
                fatal: Mutex::new(None),
                watermarks: Mutex::new(HashMap::new()),
                stats_seq: AtomicU64::new(0),
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

struct IngestLoop {
    settings: DrainSettings,
    decoder: TopicDecoder,
    consumer: BaseConsumer<DrainContext>,
    results: mpsc::Receiver<JobResult>,
    last_progress: Instant,
    rows_at_last_progress: u64,
    last_stall_check: Instant,
}

impl IngestLoop {
    fn new(
        settings: DrainSettings,
        mappings: MappingSet,
        context: DrainContext,
        results: mpsc::Receiver<JobResult>,
    ) -> Result<Self> {
        let mut config = ClientConfig::new();
        // Prefetch per partition stays small: the memory budget is spent in our buffer.
        let queued_kb = (settings.memory_budget_bytes / 1024 / 16).clamp(1024, 65536);
        config
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set(
                "auto.offset.reset",
                match settings.start_from {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                },
            )
            .set("queued.max.messages.kbytes", queued_kb.to_string())
            // Statistics carry the fetch-derived watermarks `--until-caught-up` relies on.
            .set(
                "statistics.interval.ms",
                if settings.until_caught_up {
                    "200"
                } else {
                    "5000"
                },
            )
            // A subscribed topic that does not exist yet (or that a broker briefly reports as
            // unknown) is looked up again within seconds, not librdkafka's default 5 minutes.
            .set("topic.metadata.refresh.interval.ms", "10000")
            .set("client.id", "orderlake-archiver");
        for (k, v) in &settings.kafka {
            config.set(k, v);
        }
        let consumer: BaseConsumer<DrainContext> =
            config
                .create_with_context(context)
                .map_err(|source| IngestError::Kafka {
                    context: format!("creating a consumer for {}", settings.brokers),
                    source,
                })?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| IngestError::Kafka {
                context: format!("subscribing to {}", settings.topics.join(",")),
                source,
            })?;
        tracing::info!(
            brokers = %settings.brokers,
            group = %settings.group,
            topics = %settings.topics.join(","),
            "archiver subscribed"
        );
        Ok(Self {
            decoder: TopicDecoder::new(mappings, settings.max_decode_bytes),
            settings,
            consumer,
            results,
            last_progress: Instant::now(),
            rows_at_last_progress: 0,
            last_stall_check: Instant::now(),
        })
    }

    fn ctx(&self) -> &DrainContext {
        self.consumer.context()
    }

    fn run(mut self) -> Result<DrainReport> {
        let poll_timeout = Duration::from_millis(50).min(self.settings.flush_interval);
        loop {
            self.handle_results()?;
            if let Some(e) = self.ctx().fatal.lock().expect("fatal lock").take() {
                return Err(e);
            }
            if self.ctx().stop.is_stopped() {
                return self.finish("stop requested");
            }
            self.maybe_flush();
            if self.settings.until_caught_up && self.caught_up() {
                return self.finish("caught up with every assigned partition");
            }
            self.log_progress();
            self.watch_partitions();
            match self.consumer.poll(poll_timeout) {
                None => {}
                Some(Ok(msg)) => {
                    if let AfterRecord::Seek(sp, from) =
                        append(self.consumer.context(), &mut self.decoder, &msg)
                    {
                        drop(msg);
                        self.seek(&sp, from);
                    }
                }
                // EOF names only the partition number, not the topic: the end of each
                // (topic, partition) is judged from statistics instead.
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "Kafka consumer error"),
            }
        }
    }

    /// Every 250 ms: re-reads partitions stuck on the broker, and keeps one partition from
    /// taking every fetch response while others have records waiting.
    fn watch_partitions(&mut self) {
        if self.last_stall_check.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last_stall_check = Instant::now();
        let (seeks, pause, resume) = {
            let ctx = self.ctx();
            let mut st = ctx.lock();
            let marks = ctx.watermarks.lock().expect("watermarks lock");
            let now = Instant::now();
            let resume: Vec<SourcePartition> = st
                .positions
                .iter_mut()
                .filter_map(|(sp, p)| {
                    p.resume_if(|why| matches!(why, PauseFor::Starved(until) if until <= now))
                        .then(|| sp.clone())
                })
                .collect();
            let seeks: Vec<(SourcePartition, i64)> = st
                .positions
                .iter_mut()
                .filter_map(|(sp, p)| p.check_stall(sp, marks.get(sp)).map(|o| (sp.clone(), o)))
                .collect();
            let starved: Vec<String> = st
                .positions
                .iter_mut()
                .filter_map(|(sp, p)| p.starved(marks.get(sp)).then_some(sp))
                .map(ToString::to_string)
                .collect();
            // Some brokers fill a fetch response from the first partition with a backlog, in
            // request order: the partitions served lately wait a moment, so the next fetches
            // carry only the starved ones.
            let mut pause = Vec::new();
            if !starved.is_empty() {
                for (sp, p) in &mut st.positions {
                    if !p.is_paused() && p.last_record.0.elapsed() < STARVED_PAUSE {
                        p.pause(PauseFor::Starved(now + STARVED_PAUSE));
                        pause.push(sp.clone());
                    }
                }
            }
            if !pause.is_empty() {
                let names: Vec<String> = pause.iter().map(ToString::to_string).collect();
                tracing::info!(
                    "records of {} wait on the broker unserved while {} take the fetches; \
                     pausing those for {STARVED_PAUSE:?}",
                    starved.join(" "),
                    names.join(" ")
                );
            }
            (seeks, pause, resume)
        };
        self.set_paused(&resume, false);
        self.set_paused(&pause, true);
        for (sp, from) in seeks {
            self.seek(&sp, from);
        }
    }

    fn seek(&self, sp: &SourcePartition, from: i64) {
        if let Err(e) = self.consumer.seek(
            &sp.topic,
            sp.partition,
            Offset::Offset(from),
            Duration::from_secs(10),
        ) {
            tracing::warn!(error = %e, topic = %sp.topic, partition = sp.partition, "seek for a re-read failed; it is retried");
        }
    }

    fn all_at_end(&self, st: &DrainState) -> bool {
        let marks = self.ctx().watermarks.lock().expect("watermarks lock");
        !st.positions.is_empty() && st.positions.iter().all(|(sp, p)| p.at_end(marks.get(sp)))
    }

    fn caught_up(&self) -> bool {
        let ctx = self.ctx();
        let st = ctx.lock();
        st.buffer.is_empty() && ctx.in_flight.is_idle() && self.all_at_end(&st)
    }

    fn maybe_flush(&self) {
        let s = &self.settings;
        let ctx = self.consumer.context();
        let mut st = ctx.lock();
        if st.buffer.is_empty() {
            // Nothing buffered (a fenced flush discarded it, say): nothing to wait for.
            self.resume_paused(st);
            return;
        }
        let all_at_end = s.until_caught_up && self.all_at_end(&st);
        let due = st.buffer.len() >= s.flush_rows
            || st.buffer.bytes() >= s.flush_bytes
            || st
                .buffer_started
                .is_some_and(|t| t.elapsed() >= s.flush_interval)
            || all_at_end;
        if !due {
            return;
        }
        if DrainContext::take_job_if_room(ctx, &mut st).is_ok() {
            self.resume_paused(st);
            return;
        }
        // The writer is behind: the partitions filling the buffer wait (pressure.rs).
        let held: Vec<(SourcePartition, usize)> = st
            .positions
            .iter()
            .filter(|(_, p)| !matches!(p.paused, Some((_, PauseFor::Writer))))
            .map(|(sp, p)| (sp.clone(), p.buffered_bytes))
            .collect();
        let (bytes, assigned) = (st.buffer.bytes(), st.positions.len());
        let pause = match pressure::while_writer_behind(&held, bytes, s.memory_budget_bytes) {
            Pause::Nothing => return,
            Pause::OverShare(over) => over,
            Pause::All => held.into_iter().map(|(sp, _)| sp).collect(),
        };
        if pause.is_empty() {
            return;
        }
        for sp in &pause {
            st.positions
                .get_mut(sp)
                .expect("a held partition")
                .pause(PauseFor::Writer);
        }
        let all = st.paused() == assigned;
        drop(st);
        if all {
            tracing::warn!(
                buffered_bytes = bytes,
                "writer is behind and the buffer is full; pausing all partitions"
            );
        } else {
            let names: Vec<String> = pause.iter().map(ToString::to_string).collect();
            tracing::info!(
                buffered_bytes = bytes,
                "writer is behind; pausing the partitions holding most of the buffer: {}",
                names.join(" ")
            );
        }
        self.set_paused(&pause, true);
    }

    fn resume_paused(&self, mut st: std::sync::MutexGuard<'_, DrainState>) {
        let resumed: Vec<SourcePartition> = st
            .positions
            .iter_mut()
            .filter_map(|(sp, p)| {
                p.resume_if(|why| why == PauseFor::Writer)
                    .then(|| sp.clone())
            })
            .collect();
        drop(st);
        if !resumed.is_empty() {
            tracing::info!(partitions = resumed.len(), "writer caught up; resuming");
            self.set_paused(&resumed, false);
        }
    }

    fn set_paused(&self, partitions: &[SourcePartition], paused: bool) {
        if partitions.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for sp in partitions {
            tpl.add_partition(&sp.topic, sp.partition);
        }
        let result = if paused {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, paused, "pause/resume failed");
        }
    }

    fn handle_results(&self) -> Result<()> {
        while let Ok(r) = self.results.try_recv() {
            self.handle_result(r)?;
        }
        Ok(())
    }

    fn handle_result(&self, r: JobResult) -> Result<()> {
        let ctx = self.consumer.context();
        match r.outcome {
            Err(e) => return Err(e),
            Ok(None) => {}
            Ok(Some(FlushOutcome::Committed { .. } | FlushOutcome::AlreadyCommitted)) => {
                let mut st = ctx.lock();
                st.report.rows_committed += r.rows;
                st.report.undecoded_rows += r.undecoded;
                st.report.flushes_committed += 1;
                let current = st.generation == r.generation;
                drop(st);
                if current && self.settings.commit_to_group {
                    self.commit_to_group(&r.advances);
                }
            }
            Ok(Some(FlushOutcome::Fenced {
                stream,
                expected,
                found,
            })) => {
                let stale = ctx.lock().generation != r.generation;
                if !stale {
                    tracing::warn!(partition = %stream, ?expected, ?found, "flush fenced: another instance archived these records; re-reading offsets from the table");
                    self.reset_from_table()?;
                }
                ctx.lock().report.flushes_fenced += 1;
            }
        }
        Ok(())
    }

    /// After a fenced flush: drop what we buffered and re-seek every partition from the ledger.
    fn reset_from_table(&self) -> Result<()> {
        let ctx = self.consumer.context();
        {
            let mut st = ctx.lock();
            st.generation += 1;
            ctx.writer_generation.store(st.generation, Ordering::SeqCst);
            st.discard_buffer();
        }
        ctx.in_flight.wait_idle(self.settings.shutdown_grace);
        while let Ok(r) = self.results.try_recv() {
            if let Ok(Some(FlushOutcome::Committed { .. } | FlushOutcome::AlreadyCommitted)) =
                r.outcome
            {
                let mut st = ctx.lock();
                st.report.rows_committed += r.rows;
                st.report.flushes_committed += 1;
            }
        }
        let partitions: Vec<SourcePartition> = ctx.lock().positions.keys().cloned().collect();
        let ledger = ctx.read_ledger(partitions)?;
        let mut tpl = TopicPartitionList::new();
        let seq = ctx.stats_seq.load(Ordering::SeqCst);
        let mut st = ctx.lock();
        for (sp, pos) in &mut st.positions {
            let archived = ledger.archived(sp);
            let start = match archived {
                Some(o) => Offset::Offset(o + 1),
                None => pos.start,
            };
            // A paused partition stays paused on the client until the writer catches up.
            let paused = pos.paused;
            *pos = Position::new(archived, start, seq);
            pos.paused = paused;
            let _ = tpl.add_partition_offset(&sp.topic, sp.partition, start);
        }
        drop(st);
        if let Err(e) = self.consumer.seek_partitions(tpl, Duration::from_secs(10)) {
            tracing::error!(error = %e, "seeking to the table's offsets failed");
        }
        Ok(())
    }

    fn commit_to_group(&self, advances: &[LedgerAdvance]) {
        let mut tpl = TopicPartitionList::new();
        let st = self.ctx().lock();
        for a in advances
            .iter()
            .filter(|a| st.positions.contains_key(&a.partition))
        {
            let _ = tpl.add_partition_offset(
                &a.partition.topic,
                a.partition.partition,
                Offset::Offset(a.through + 1),
            );
        }
        drop(st);
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::debug!(error = %e, "advisory group offset commit failed");
        }
    }

    fn log_progress(&mut self) {
        if self.last_progress.elapsed() < Duration::from_secs(10) {
            return;
        }
        let st = self.ctx().lock();
        let rows = st.report.rows_committed;
        let rate =
            (rows - self.rows_at_last_progress) as f64 / self.last_progress.elapsed().as_secs_f64();
        tracing::info!(
            rows_committed = rows,
            rows_per_sec = rate.round() as u64,
            buffered_rows = st.buffer.len(),
            partitions = st.positions.len(),
            paused = st.paused(),
            "archiving"
        );
        drop(st);
        self.rows_at_last_progress = rows;
        self.last_progress = Instant::now();
    }

    /// Flush what is buffered, wait for the writer, commit group offsets, and report.
    fn finish(self, why: &str) -> Result<DrainReport> {
        tracing::info!("{why}: flushing and committing");
        {
            let ctx = self.consumer.context();
            let mut st = ctx.lock();
            ctx.submit_buffer(&mut st);
        }
        let grace = self.settings.shutdown_grace;
        let done = self.ctx().in_flight.wait_idle(grace);
        self.handle_results()?;
        if !done {
            return Err(IngestError::ShutdownTimedOut { grace });
        }
        if let Some(e) = self.ctx().fatal.lock().expect("fatal lock").take() {
            return Err(e);
        }
        let report = self.ctx().lock().report.clone();
        tracing::info!(
            rows = report.rows_committed,
            undecoded = report.undecoded_rows,
            flushes = report.flushes_committed,
            fenced = report.flushes_fenced,
            "archiver stopped cleanly"
        );
        Ok(report)
    }
}

/// Appends one Kafka record to the buffer, unless it was already buffered or archived, or the
/// broker skipped records before it (then the partition must be re-read from further back).
fn append(
    ctx: &DrainContext,
    decoder: &mut TopicDecoder,
    msg: &rdkafka::message::BorrowedMessage<'_>,
) -> AfterRecord {
    let sp = SourcePartition::new(msg.topic(), msg.partition());
    let offset = msg.offset();
    let mut st = ctx.lock();
    let Some(pos) = st.positions.get_mut(&sp) else {
        // Not (or no longer) ours: a leftover from before a rebalance.
        return AfterRecord::Continue;
    };
    if let Some(action) = pos.check_gap(&sp, offset, ctx.stats_seq.load(Ordering::SeqCst)) {
        return action;
    }
    if pos
        .buffered_through
        .or(pos.after)
        .is_some_and(|last| offset <= last)
    {
        // Already buffered or archived (a re-delivery after a seek): never twice.
        return AfterRecord::Continue;
    }
    pos.buffered_through = Some(offset);
    pos.buffered_bytes += msg.payload_len() + msg.key_len();
    pos.next = offset + 1;
    pos.received = true;
    let order = decoder.decode(msg.topic(), msg.payload());
    let env = Envelope {
        topic: Some(msg.topic()),
        partition: Some(msg.partition()),
        offset: Some(offset),
        timestamp_ms: msg.timestamp().to_millis(),
        key: msg.key(),
        value: msg.payload(),
        import_source: None,
    };
    let headers = msg.headers();
    let header_iter = headers
        .into_iter()
        .flat_map(|h| h.iter())
        .map(|h| (h.key, h.value));
    if order.error.is_some() {
        st.buffer_undecoded += 1;
    }
    st.buffer.append(
        &env,
        header_iter,
        &order,
        chrono::Utc::now().timestamp_micros(),
    );
    st.buffer_started.get_or_insert_with(Instant::now);
    AfterRecord::Continue
}

impl DrainContext {
    /// Submits the buffer if the writer's queue has room; `Err(())` when it is full.
    fn take_job_if_room(ctx: &DrainContext, st: &mut DrainState) -> std::result::Result<(), ()> {
        let permit = ctx.jobs.try_reserve().map_err(|_| ())?;
        let job = Self::take_job(st);
        ctx.in_flight.add();
        permit.send(job);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position_waiting_since(ago: Duration) -> Position {
        let mut p = Position::new(Some(99), Offset::Offset(100), 1);
        p.last_record = (Instant::now() - ago, 1);
        p
    }

    fn marks(high: i64, seq: u64) -> Watermarks {
        Watermarks { low: 0, high, seq }
    }

    #[test]
    fn time_spent_paused_does_not_count_as_waiting() {
        let mut p = position_waiting_since(Duration::from_secs(10));
        p.paused = Some((Instant::now() - Duration::from_secs(9), PauseFor::Writer));
        assert!(!p.resume_if(|why| matches!(why, PauseFor::Starved(_))));
        assert!(p.resume_if(|why| why == PauseFor::Writer));
        let waited = p.last_record.0.elapsed();
        assert!(
            (Duration::from_millis(900)..Duration::from_secs(3)).contains(&waited),
            "{waited:?}"
        );
        assert!(!p.resume_if(|_| true), "resumed once");
    }

    #[test]
    fn a_partition_is_starved_only_with_records_waiting_by_fresh_statistics() {
        let mut p = position_waiting_since(STARVED_AFTER + Duration::from_secs(1));
        p.starved_pause.0 = Instant::now() - STARVED_AFTER;
        assert!(
            !p.starved(Some(&marks(500, 1))),
            "statistics from before the last record"
        );
        assert!(
            !p.starved(Some(&marks(100, 2))),
            "nothing beyond the position"
        );
        p.pause(PauseFor::Writer);
        assert!(!p.starved(Some(&marks(500, 2))), "paused");
        p.paused = None;
        assert!(p.starved(Some(&marks(500, 2))));
        assert!(
            !p.starved(Some(&marks(500, 3))),
            "the next time waits longer"
        );
        assert_eq!(p.starved_pause.1, STARVED_AFTER * 2);
        // A record arriving starts over.
        assert!(p.check_gap(&SourcePartition::new("t", 0), 100, 3).is_none());
        assert_eq!(p.starved_pause.1, STARVED_AFTER);
    }
}
