//! The poll loop on the ingest thread: records into the buffer, flushes to the writer, results
//! back, progress and partition watching.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use orderlake_archive::SourcePartition;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use super::context::DrainContext;
use super::meters::Meters;
use super::position::{AfterRecord, PauseFor, Position, STARVED_PAUSE};
use super::{DrainReport, DrainSettings, DrainState, JobResult, StartFrom};
use crate::decode::{Decoded, TopicDecoder};
use crate::error::{IngestError, Result};
use crate::mapping::MappingSet;
use crate::pressure::{self, Pause};
use crate::registry::Lookup;
use crate::rowbuf::Envelope;
use crate::writer::{FlushOutcome, LedgerAdvance};

pub(super) struct IngestLoop {
    pub(super) settings: DrainSettings,
    pub(super) decoder: TopicDecoder,
    pub(super) consumer: BaseConsumer<DrainContext>,
    pub(super) results: mpsc::Receiver<JobResult>,
    pub(super) last_progress: Instant,
    pub(super) rows_at_last_progress: u64,
    pub(super) last_stall_check: Instant,
    /// When this turn of the loop began: one clock read a record, not one per check.
    now: Instant,
    /// The wall clock at an instant, to date records without reading it for each.
    wall: (Instant, i64),
    /// Some partition is paused until the registry serves a schema (checked every turn, so it
    /// resumes as soon as the schema is there).
    schema_waits: bool,
    pub(super) last_publish: Instant,
}

impl IngestLoop {
    pub(super) fn new(
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
                    "1000"
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
            decoder: TopicDecoder::new(mappings, settings.max_decode_bytes)
                .with_registry(settings.schema_registry.clone()),
            settings,
            consumer,
            results,
            last_progress: Instant::now(),
            rows_at_last_progress: 0,
            last_stall_check: Instant::now(),
            schema_waits: false,
            now: Instant::now(),
            wall: (Instant::now(), chrono::Utc::now().timestamp_micros()),
            last_publish: Instant::now(),
        })
    }

    /// Reads the clock for this turn of the loop.
    fn tick(&mut self) {
        self.now = Instant::now();
        // The wall clock is read again every second (it may be stepped; the monotonic one not).
        if self.now.duration_since(self.wall.0) >= Duration::from_secs(1) {
            self.wall = (self.now, chrono::Utc::now().timestamp_micros());
        }
    }

    /// The wall clock now, in microseconds since the epoch.
    fn archived_at(&self) -> i64 {
        let since = self.now.duration_since(self.wall.0).as_micros();
        self.wall.1 + i64::try_from(since).unwrap_or(i64::MAX - self.wall.1)
    }

    pub(super) fn ctx(&self) -> &DrainContext {
        self.consumer.context()
    }

    pub(super) fn run(mut self) -> Result<DrainReport> {
        let poll_timeout = Duration::from_millis(50).min(self.settings.flush_interval);
        loop {
            self.tick();
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
            self.publish_meters();
            self.watch_partitions();
            self.resume_schema_waits();
            let clock = (self.now, self.archived_at());
            match self.consumer.poll(poll_timeout) {
                None => {}
                Some(Ok(msg)) => {
                    match append(self.consumer.context(), &mut self.decoder, &msg, clock) {
                        AfterRecord::Continue => {}
                        AfterRecord::Seek(sp, from) => {
                            drop(msg);
                            self.seek(&sp, from);
                        }
                        AfterRecord::WaitForSchema(sp, from, key) => {
                            drop(msg);
                            self.wait_for_schema(&sp, from, key);
                        }
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
    pub(super) fn watch_partitions(&mut self) {
        if self.now.duration_since(self.last_stall_check) < Duration::from_millis(250) {
            return;
        }
        self.last_stall_check = self.now;
        let (seeks, pause, resume) = {
            let ctx = self.ctx();
            let mut st = ctx.lock();
            let marks = ctx.watermarks.lock().expect("watermarks lock");
            let now = self.now;
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

    /// Pauses `sp` until the registry answers for `key` (or the wait runs out), to re-read it
    /// from `from`; the other partitions keep flowing.
    fn wait_for_schema(&mut self, sp: &SourcePartition, from: i64, key: crate::avro::SchemaKey) {
        {
            let mut st = self.ctx().lock();
            let Some(p) = st.positions.get_mut(sp) else {
                return;
            };
            p.pause(PauseFor::Schema(key));
        }
        tracing::info!(partition = %sp, offset = from, %key, "waiting for a writer schema from the registry");
        self.set_paused(std::slice::from_ref(sp), true);
        self.seek(sp, from);
        self.schema_waits = true;
    }

    /// Resumes the partitions whose schema wait is over.
    fn resume_schema_waits(&mut self) {
        if !self.schema_waits {
            return;
        }
        let (resume, still) = {
            let mut st = self.ctx().lock();
            let resume = self.schema_waits_over(&mut st);
            let still = st
                .positions
                .values()
                .any(|p| matches!(p.paused, Some((_, PauseFor::Schema(_)))));
            (resume, still)
        };
        self.schema_waits = still;
        self.set_paused(&resume, false);
    }

    /// Partitions waiting for a schema that has arrived, is known missing, or took longer than
    /// the configured wait (then its records go through raw).
    fn schema_waits_over(&self, st: &mut DrainState) -> Vec<SourcePartition> {
        let Some(registry) = &self.settings.schema_registry else {
            return Vec::new();
        };
        let wait = registry.config().unavailable_wait();
        st.positions
            .iter_mut()
            .filter_map(|(sp, p)| {
                let (since, PauseFor::Schema(key)) = p.paused? else {
                    return None;
                };
                let over = match registry.lookup(key) {
                    Lookup::Pending if since.elapsed() >= wait => {
                        tracing::warn!(partition = %sp, %key, ?wait, "the schema registry did not serve the schema in time; its records are archived raw until it does");
                        registry.give_up(key);
                        true
                    }
                    Lookup::Pending => false,
                    _ => true,
                };
                (over && p.resume_if(|why| why == PauseFor::Schema(key))).then(|| sp.clone())
            })
            .collect()
    }

    pub(super) fn seek(&self, sp: &SourcePartition, from: i64) {
        if let Err(e) = self.consumer.seek(
            &sp.topic,
            sp.partition,
            Offset::Offset(from),
            Duration::from_secs(10),
        ) {
            tracing::warn!(error = %e, topic = %sp.topic, partition = sp.partition, "seek for a re-read failed; it is retried");
        }
    }

    pub(super) fn all_at_end(&self, st: &DrainState) -> bool {
        let marks = self.ctx().watermarks.lock().expect("watermarks lock");
        !st.positions.is_empty() && st.positions.iter().all(|(sp, p)| p.at_end(marks.get(sp)))
    }

    pub(super) fn caught_up(&self) -> bool {
        let ctx = self.ctx();
        let st = ctx.lock();
        st.buffer.is_empty() && ctx.in_flight.is_idle() && self.all_at_end(&st)
    }

    pub(super) fn maybe_flush(&self) {
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
                .is_some_and(|t| self.now.saturating_duration_since(t) >= s.flush_interval)
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
            .filter(|(_, p)| !matches!(p.paused, Some((_, PauseFor::Writer | PauseFor::Schema(_)))))
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

    pub(super) fn resume_paused(&self, mut st: std::sync::MutexGuard<'_, DrainState>) {
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

    pub(super) fn set_paused(&self, partitions: &[SourcePartition], paused: bool) {
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

    pub(super) fn handle_results(&self) -> Result<()> {
        while let Ok(r) = self.results.try_recv() {
            self.handle_result(r)?;
        }
        Ok(())
    }

    pub(super) fn handle_result(&self, r: JobResult) -> Result<()> {
        let ctx = self.consumer.context();
        match r.outcome {
            Err(e) => return Err(e),
            Ok(None) => {}
            Ok(Some(FlushOutcome::Committed { .. } | FlushOutcome::AlreadyCommitted)) => {
                let mut st = ctx.lock();
                st.count_committed(&r);
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
    pub(super) fn reset_from_table(&self) -> Result<()> {
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
                ctx.lock().count_committed(&r);
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

    pub(super) fn commit_to_group(&self, advances: &[LedgerAdvance]) {
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

    /// Every second: the gauges that follow time and the buffer.
    fn publish_meters(&mut self) {
        if self.now.duration_since(self.last_publish) < Duration::from_secs(1) {
            return;
        }
        self.last_publish = self.now;
        let ctx = self.ctx();
        let mut st = ctx.lock();
        let marks = ctx.watermarks.lock().expect("watermarks lock");
        let st = &mut *st;
        let buffer = (st.buffer.len(), st.buffer.bytes());
        st.meters.publish(&st.positions, &marks, buffer);
    }

    pub(super) fn log_progress(&mut self) {
        if self.now.duration_since(self.last_progress) < Duration::from_secs(10) {
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
    pub(super) fn finish(self, why: &str) -> Result<DrainReport> {
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
/// `clock`: the loop's instant and the wall clock in microseconds, the record's archive time.
/// How long the drain waits for the registry's first answer about a schema it has not seen
/// before pausing the record's partition. Pausing means re-fetching the partition from the
/// record (its prefetched records are dropped): on a broker serving megabytes a fetch, each new
/// schema cost a third of a second that way, against the millisecond or two a registry nearby
/// takes to answer (docs/benchmarks.md, "Avro through a schema registry").
const FIRST_ANSWER_WAIT: Duration = Duration::from_millis(100);

fn append(
    ctx: &DrainContext,
    decoder: &mut TopicDecoder,
    msg: &rdkafka::message::BorrowedMessage<'_>,
    (now, archived_at): (Instant, i64),
) -> AfterRecord {
    let sp = SourcePartition::new(msg.topic(), msg.partition());
    let offset = msg.offset();
    let mut st = ctx.lock();
    let Some(pos) = st.positions.get_mut(&sp) else {
        // Not (or no longer) ours: a leftover from before a rebalance.
        return AfterRecord::Continue;
    };
    if matches!(pos.paused, Some((_, PauseFor::Schema(_)))) {
        // Fetched before the partition paused for a schema: read again once it resumes.
        return AfterRecord::Continue;
    }
    if let Some(action) = pos.check_gap(&sp, offset, ctx.stats_seq.load(Ordering::SeqCst), now) {
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
    let headers = msg.headers();
    let schema_header = headers.as_ref().and_then(|h| {
        h.iter()
            .find(|h| h.key == crate::avro::VALUE_SCHEMA_ID_HEADER)
            .and_then(|h| h.value)
    });
    let mut decoded = decoder.decode_record(msg.topic(), msg.payload(), schema_header);
    if let Decoded::NeedsSchema(key) = decoded
        && decoder.await_first_answer(key, FIRST_ANSWER_WAIT)
    {
        decoded = decoder.decode_record(msg.topic(), msg.payload(), schema_header);
    }
    let order = match decoded {
        Decoded::Order(order) => order,
        Decoded::NeedsSchema(key) => return AfterRecord::WaitForSchema(sp, offset, key),
    };
    pos.buffered_through = Some(offset);
    let bytes = msg.payload_len() + msg.key_len();
    pos.buffered_bytes += bytes;
    pos.buffered_rows += 1;
    if let Some(ts) = msg.timestamp().to_millis() {
        pos.buffered_newest_ms = Some(pos.buffered_newest_ms.map_or(ts, |n| n.max(ts)));
    }
    pos.next = offset + 1;
    pos.received = true;
    let env = Envelope {
        topic: Some(msg.topic()),
        partition: Some(msg.partition()),
        offset: Some(offset),
        timestamp_ms: msg.timestamp().to_millis(),
        key: msg.key(),
        value: msg.payload(),
        import_source: None,
    };
    let header_iter = headers
        .into_iter()
        .flat_map(|h| h.iter())
        .map(|h| (h.key, h.value));
    st.meters.consumed(&sp, bytes);
    if order.error.is_some() {
        st.buffer_undecoded += 1;
        Meters::decode_failed(msg.topic(), order.failure);
    }
    st.buffer.append(&env, header_iter, &order, archived_at);
    st.buffer_started.get_or_insert(now);
    AfterRecord::Continue
}
