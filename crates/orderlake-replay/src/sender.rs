//! Sending a selection back to Kafka: an idempotent producer, original key/value/headers/timestamp,
//! per-source-partition offset order, a rate limit, progress, and a checkpoint that makes an
//! interrupted (or killed) replay resumable without re-sending what the broker acknowledged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray as _, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use datafusion::prelude::{SessionContext, col, lit};
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use orderlake_archive::ArchiveTable;
use orderlake_archive::schema::{
    DECODE_ERROR, EVENT_TIME, KAFKA_HEADERS, KAFKA_KEY, KAFKA_OFFSET, KAFKA_PARTITION,
    KAFKA_TIMESTAMP, KAFKA_TOPIC, KAFKA_VALUE,
};
use rand::Rng as _;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::checkpoint::ReplayCheckpoint;
use crate::error::{ReplayError, Result};
use crate::selection::{ReplaySelection, TimeField};

/// How replayed records are spread over the target topic's partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Partitioning {
    /// `keep` when the target has every source partition number, else `key`.
    #[default]
    Auto,
    /// The original partition number.
    Keep,
    /// The producer's partitioner on the original key.
    Key,
    /// Any partition.
    Random,
}

impl std::str::FromStr for Partitioning {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "keep" => Ok(Self::Keep),
            "key" => Ok(Self::Key),
            "random" => Ok(Self::Random),
            other => Err(format!("`{other}` is not one of auto, keep, key, random")),
        }
    }
}

/// Everything a replay needs.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub brokers: String,
    pub target_topic: String,
    pub selection: ReplaySelection,
    pub partitioning: Partitioning,
    pub rate_records: Option<u64>,
    pub rate_bytes: Option<u64>,
    pub resume: bool,
    pub checkpoint: PathBuf,
    pub allow_loop: bool,
    /// Topics the archiver consumes (replaying into one would archive the records again).
    pub archiver_topics: Vec<String>,
    pub create_topic: Option<i32>,
    pub show_progress: bool,
    pub stop: Arc<AtomicBool>,
    pub kafka: BTreeMap<String, String>,
    /// The target's schema registry: framed records are sent only once their schema resolves
    /// there (`--schema-registry-url`).
    pub schema_registry: Option<Arc<orderlake_ingest::registry::SchemaRegistry>>,
}

/// What a selection holds, for `--dry-run` and the progress bar.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayPlan {
    pub records: u64,
    pub bytes: u64,
    /// (topic, partition, records)
    pub partitions: Vec<(String, i32, u64)>,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    pub sent: u64,
    /// Records found already in the target on resume (delivered before an interruption).
    pub already_present: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub partitioning: Partitioning,
    pub target_partitions: i32,
    pub checkpoint: String,
}

impl ReplayReport {
    pub fn records_per_sec(&self) -> f64 {
        self.sent as f64 / self.seconds.max(1e-9)
    }
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.seconds.max(1e-9)
    }
}

async fn selected(
    ctx: &SessionContext,
    selection: &ReplaySelection,
    done: Option<&ReplayCheckpoint>,
) -> Result<datafusion::dataframe::DataFrame> {
    let mut df = selection.dataframe(ctx, "archive").await?;
    if let Some(cp) = done {
        for (topic, parts) in &cp.acked_through {
            for (p, through) in parts {
                let already = col(KAFKA_TOPIC)
                    .eq(lit(topic.as_str()))
                    .and(col(KAFKA_PARTITION).eq(lit(*p)))
                    .and(col(KAFKA_OFFSET).lt_eq(lit(*through)));
                df = df.filter(!already)?;
            }
        }
    }
    Ok(df)
}

/// Counts what `selection` would send (less what `done` already acknowledged). Byte sizes are
/// summed from the key and value arrays (SQL `octet_length` takes no binary in DataFusion).
pub async fn plan(
    table: &ArchiveTable,
    selection: &ReplaySelection,
    done: Option<&ReplayCheckpoint>,
) -> Result<ReplayPlan> {
    let ctx = table.session_with("archive").await?;
    let time_col = match selection.time_field {
        TimeField::Event => EVENT_TIME,
        TimeField::Kafka => KAFKA_TIMESTAMP,
    };
    let df = selected(&ctx, selection, done).await?.select_columns(&[
        KAFKA_TOPIC,
        KAFKA_PARTITION,
        time_col,
        KAFKA_KEY,
        KAFKA_VALUE,
    ])?;
    let mut stream = df.execute_stream().await?;
    let mut per: BTreeMap<(String, i32), u64> = BTreeMap::new();
    let mut plan = ReplayPlan::default();
    while let Some(b) = stream.next().await {
        let b = b?;
        let topics = cast(&b, 0, &DataType::Utf8)?;
        let parts = cast(&b, 1, &DataType::Int32)?;
        let keys = cast(&b, 3, &DataType::Binary)?;
        let values = cast(&b, 4, &DataType::Binary)?;
        let (topics, parts) = (topics.as_string::<i32>(), parts.as_primitive::<Int32Type>());
        let times = b.column(2).as_primitive::<TimestampMicrosecondType>();
        let bytes = |a: &Arc<dyn Array>| -> u64 {
            a.as_binary::<i32>()
                .iter()
                .map(|v| v.map_or(0, <[u8]>::len) as u64)
                .sum()
        };
        plan.bytes += bytes(&keys) + bytes(&values);
        plan.records += b.num_rows() as u64;
        for i in 0..b.num_rows() {
            *per.entry((topics.value(i).to_owned(), parts.value(i)))
                .or_default() += 1;
            if !times.is_null(i) {
                let t = DateTime::from_timestamp_micros(times.value(i));
                plan.first = plan.first.min(t).or(t);
                plan.last = plan.last.max(t);
            }
        }
    }
    plan.partitions = per.into_iter().map(|((t, p), n)| (t, p, n)).collect();
    Ok(plan)
}

/// A record about to be (or already) delivered: its source coordinates.
#[derive(Debug)]
struct Pending {
    source: u32,
    offset: i64,
}

#[derive(Debug, Default)]
struct SourceProgress {
    topic: String,
    partition: i32,
    base: Option<i64>,
    last_sent: Option<i64>,
    in_flight: BTreeSet<i64>,
    failed: BTreeSet<i64>,
}

impl SourceProgress {
    /// Every selected record of this partition up to the returned offset was acknowledged.
    fn watermark(&self) -> Option<i64> {
        let hole = match (self.in_flight.first(), self.failed.first()) {
            (Some(a), Some(b)) => Some(*a.min(b)),
            (a, b) => a.or(b).copied(),
        };
        match hole {
            Some(h) => Some(h - 1).max(self.base),
            None => self.last_sent.or(self.base),
        }
    }
}

/// Acknowledgements, shared with the producer's delivery callback.
#[derive(Debug, Default)]
struct AckTracker {
    sources: Vec<SourceProgress>,
    index: HashMap<(String, i32), u32>,
    /// Delivered records not yet covered by their source watermark: (target partition, target
    /// offset, source, source offset).
    uncovered: Vec<(i32, i64, u32, i64)>,
    next_after_ack: BTreeMap<i32, i64>,
    acked: u64,
    failed: u64,
    first_error: Option<String>,
}

impl AckTracker {
    fn source(&mut self, topic: &str, partition: i32, base: Option<i64>) -> u32 {
        if let Some(id) = self.index.get(&(topic.to_owned(), partition)) {
            return *id;
        }
        let id = self.sources.len() as u32;
        self.sources.push(SourceProgress {
            topic: topic.to_owned(),
            partition,
            base,
            ..Default::default()
        });
        self.index.insert((topic.to_owned(), partition), id);
        id
    }

    fn delivered(&mut self, source: u32, offset: i64, target: i32, target_offset: i64) {
        let s = &mut self.sources[source as usize];
        s.in_flight.remove(&offset);
        self.uncovered.push((target, target_offset, source, offset));
        let next = self.next_after_ack.entry(target).or_insert(0);
        *next = (*next).max(target_offset + 1);
    }

    /// Writes progress into the checkpoint and forgets what it now covers.
    fn record(&mut self, cp: &mut ReplayCheckpoint) {
        let marks: Vec<Option<i64>> = self.sources.iter().map(SourceProgress::watermark).collect();
        for (s, mark) in self.sources.iter().zip(&marks) {
            if let Some(m) = mark {
                cp.acked_through
                    .entry(s.topic.clone())
                    .or_default()
                    .insert(s.partition, *m);
            }
        }
        self.uncovered
            .retain(|(_, _, src, off)| marks[*src as usize].is_none_or(|m| *off > m));
        for (tp, next) in &self.next_after_ack {
            let first_uncovered = self
                .uncovered
                .iter()
                .filter(|u| u.0 == *tp)
                .map(|u| u.1)
                .min();
            cp.scan_from.insert(*tp, first_uncovered.unwrap_or(*next));
        }
    }
}

#[derive(Debug, Clone)]
struct AckContext {
    tracker: Arc<Mutex<AckTracker>>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<Pending>;
    fn delivery(&self, result: &DeliveryResult<'_>, pending: Box<Pending>) {
        let mut t = self.tracker.lock().expect("tracker lock");
        match result {
            Ok(msg) => {
                t.acked += 1;
                t.delivered(
                    pending.source,
                    pending.offset,
                    msg.partition(),
                    msg.offset(),
                );
            }
            Err((e, _)) => {
                t.failed += 1;
                t.first_error.get_or_insert_with(|| e.to_string());
                let s = &mut t.sources[pending.source as usize];
                s.in_flight.remove(&pending.offset);
                s.failed.insert(pending.offset);
            }
        }
    }
}

/// Identity of a record's content, to recognise records already delivered before a crash.
fn fingerprint(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    timestamp_ms: i64,
    headers: &[(String, Option<Vec<u8>>)],
) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    value.hash(&mut h);
    timestamp_ms.hash(&mut h);
    headers.hash(&mut h);
    h.finish()
}

fn kafka_err(context: impl Into<String>) -> impl FnOnce(KafkaError) -> ReplayError {
    let context = context.into();
    move |source| ReplayError::Kafka { context, source }
}

/// Partition count of the target topic, creating it when asked to.
async fn target_partitions(opts: &ReplayOptions) -> Result<i32> {
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &opts.brokers)
        .create()
        .map_err(kafka_err(format!("connecting to {}", opts.brokers)))?;
    let count = |admin: &AdminClient<_>| -> Result<Option<i32>> {
        let md = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(kafka_err("reading topic metadata"))?;
        Ok(md
            .topics()
            .iter()
            .find(|t| t.name() == opts.target_topic)
            .map(|t| t.partitions().len() as i32)
            .filter(|n| *n > 0))
    };
    if let Some(n) = count(&admin)? {
        return Ok(n);
    }
    let Some(partitions) = opts.create_topic else {
        return Err(ReplayError::TopicMissing {
            topic: opts.target_topic.clone(),
        });
    };
    let created = admin
        .create_topics(
            &[NewTopic::new(
                &opts.target_topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .map_err(kafka_err("creating the target topic"))?;
    for r in created {
        if let Err((_, code)) = r
            && code != RDKafkaErrorCode::TopicAlreadyExists
        {
            return Err(ReplayError::Kafka {
                context: format!("creating {}", opts.target_topic),
                source: KafkaError::AdminOp(code),
            });
        }
    }
    tracing::info!(topic = %opts.target_topic, partitions, "created target topic");
    for _ in 0..50 {
        if let Some(n) = count(&admin)? {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(ReplayError::TopicMissing {
        topic: opts.target_topic.clone(),
    })
}

/// On resume: what the target already holds past each partition's scan point, by fingerprint.
fn read_target_tails(
    opts: &ReplayOptions,
    partitions: i32,
    cp: &ReplayCheckpoint,
) -> Result<HashMap<u64, Vec<(i32, i64)>>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &opts.brokers)
        .set("group.id", "orderlake-replay-resume")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(kafka_err("creating the resume reader"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let from = cp
            .scan_from
            .get(&p)
            .map_or(Offset::Beginning, |o| Offset::Offset(*o));
        tpl.add_partition_offset(&opts.target_topic, p, from)
            .map_err(kafka_err("assigning"))?;
    }
    consumer
        .assign(&tpl)
        .map_err(kafka_err("assigning the target partitions"))?;
    let mut open: BTreeSet<i32> = (0..partitions).collect();
    let mut seen: HashMap<u64, Vec<(i32, i64)>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !open.is_empty() {
        if Instant::now() > deadline {
            return Err(ReplayError::Checkpoint {
                path: opts.checkpoint.display().to_string(),
                reason: "timed out reading the target topic back".into(),
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            // One topic, so the partition number names it.
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => return Err(kafka_err("reading the target topic back")(e)),
            Some(Ok(m)) => {
                let headers: Vec<(String, Option<Vec<u8>>)> = crate::produce::header_pairs(&m);
                let fp = fingerprint(
                    m.key(),
                    m.payload(),
                    m.timestamp().to_millis().unwrap_or(-1),
                    &headers,
                );
                seen.entry(fp)
                    .or_default()
                    .push((m.partition(), m.offset()));
            }
        }
    }
    Ok(seen)
}

/// One archived record, borrowed from a batch.
struct Row<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn cast(b: &RecordBatch, i: usize, to: &DataType) -> Result<Arc<dyn Array>> {
    Ok(arrow::compute::cast(b.column(i), to).map_err(datafusion::error::DataFusionError::from)?)
}

/// Replays the selection into the target topic.
pub async fn replay(table: &ArchiveTable, opts: &ReplayOptions) -> Result<ReplayReport> {
    if !opts.allow_loop && opts.archiver_topics.iter().any(|t| t == &opts.target_topic) {
        return Err(ReplayError::Loop {
            topic: opts.target_topic.clone(),
        });
    }
    let table_uri = table.location().to_string();
    let path = &opts.checkpoint;
    let mut cp = match (ReplayCheckpoint::load(path)?, opts.resume) {
        (Some(cp), true) => {
            cp.check_matches(path, &table_uri, &opts.target_topic, &opts.selection)?;
            cp
        }
        (None, true) => {
            return Err(ReplayError::Checkpoint {
                path: path.display().to_string(),
                reason: "there is no checkpoint to resume from".into(),
            });
        }
        (Some(cp), false) if !cp.complete => {
            return Err(ReplayError::Checkpoint {
                path: path.display().to_string(),
                reason: "an unfinished replay left this checkpoint: pass --resume to continue it, or remove the file to start over".into(),
            });
        }
        _ => ReplayCheckpoint {
            table_uri: table_uri.clone(),
            target_topic: opts.target_topic.clone(),
            selection: opts.selection.clone(),
            ..Default::default()
        },
    };
    let partitions = target_partitions(opts).await?;
    let mut already: HashMap<u64, Vec<(i32, i64)>> = if opts.resume {
        let (o, p, c) = (opts.clone(), partitions, cp.clone());
        tokio::task::spawn_blocking(move || read_target_tails(&o, p, &c))
            .await
            .expect("resume reader")?
    } else {
        HashMap::new()
    };
    let todo = plan(table, &opts.selection, opts.resume.then_some(&cp)).await?;
    let partitioning = match opts.partitioning {
        Partitioning::Auto if todo.partitions.iter().all(|(_, p, _)| *p < partitions) => {
            Partitioning::Keep
        }
        Partitioning::Auto => Partitioning::Key,
        other => other,
    };
    tracing::info!(records = todo.records, bytes = todo.bytes, ?partitioning, target = %opts.target_topic, partitions, "replaying");

    let tracker = Arc::new(Mutex::new(AckTracker::default()));
    {
        let mut t = tracker.lock().expect("tracker lock");
        for (topic, parts) in &cp.acked_through {
            for (p, through) in parts {
                t.source(topic, *p, Some(*through));
            }
        }
        for (tp, from) in &cp.scan_from {
            t.next_after_ack.insert(*tp, *from);
        }
    }
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &opts.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.kbytes", "262144")
        .set("message.max.bytes", "10000000");
    for (k, v) in &opts.kafka {
        config.set(k, v);
    }
    let producer: ThreadedProducer<AckContext> = config
        .create_with_context(AckContext {
            tracker: Arc::clone(&tracker),
        })
        .map_err(kafka_err("creating the producer"))?;

    let ctx = table.session_with("archive").await?;
    let df = selected(&ctx, &opts.selection, opts.resume.then_some(&cp))
        .await?
        .sort(vec![
            col(KAFKA_TOPIC).sort(true, false),
            col(KAFKA_PARTITION).sort(true, false),
            col(KAFKA_OFFSET).sort(true, false),
        ])?
        .select_columns(&[
            KAFKA_TOPIC,
            KAFKA_PARTITION,
            KAFKA_OFFSET,
            KAFKA_TIMESTAMP,
            KAFKA_KEY,
            KAFKA_VALUE,
            KAFKA_HEADERS,
            DECODE_ERROR,
        ])?;
    let mut stream = df.execute_stream().await?;

    let bar = if opts.show_progress {
        ProgressBar::new(todo.records)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {pos}/{len} records {msg} {per_sec} eta {eta} {wide_bar}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut report = ReplayReport {
        partitioning,
        target_partitions: partitions,
        checkpoint: path.display().to_string(),
        ..Default::default()
    };
    let started = Instant::now();
    let mut last_save = Instant::now();
    let mut rng = rand::rng();
    let mut interrupted = false;
    let mut schemas = opts
        .schema_registry
        .clone()
        .map(crate::schemas::SchemaCheck::new);
    let mut unresolved = None;
    'batches: while let Some(batch) = stream.next().await {
        let b = batch?;
        let topics = cast(&b, 0, &DataType::Utf8)?;
        let parts = cast(&b, 1, &DataType::Int32)?;
        let offs = cast(&b, 2, &DataType::Int64)?;
        let tss = b
            .column(3)
            .as_primitive::<TimestampMicrosecondType>()
            .clone();
        let keys = cast(&b, 4, &DataType::Binary)?;
        let values = cast(&b, 5, &DataType::Binary)?;
        let headers = orderlake_archive::schema::headers_column(b.column(6))
            .map_err(datafusion::error::DataFusionError::from)?;
        let (topics, parts, offs) = (
            topics.as_string::<i32>(),
            parts.as_primitive::<Int32Type>(),
            offs.as_primitive::<Int64Type>(),
        );
        let (keys, values) = (keys.as_binary::<i32>(), values.as_binary::<i32>());
        let errors = cast(&b, 7, &DataType::Utf8)?;
        let errors = errors.as_string::<i32>();
        let outcome = tokio::task::block_in_place(|| -> Result<bool> {
            for i in 0..b.num_rows() {
                if opts.stop.load(Ordering::SeqCst) {
                    return Ok(false);
                }
                let hs = orderlake_archive::schema::headers_at(&headers, i);
                let row = Row {
                    topic: topics.value(i),
                    partition: parts.value(i),
                    offset: offs.value(i),
                    timestamp_ms: (!tss.is_null(i)).then(|| tss.value(i).div_euclid(1000)),
                    key: (!keys.is_null(i)).then(|| keys.value(i)),
                    value: (!values.is_null(i)).then(|| values.value(i)),
                    headers: hs,
                };
                // Records the archive decoded with their schema (or held for one) must find it in
                // the target's registry; undecodable ones were never readable anywhere.
                let had_schema = errors.is_null(i)
                    || errors
                        .value(i)
                        .starts_with(orderlake_ingest::decode::SCHEMA_UNAVAILABLE);
                if let Some(check) = &mut schemas
                    && had_schema
                    && let Err(e) = check.check(row.value, &row.headers)
                {
                    unresolved = Some(e);
                    return Ok(false);
                }
                send_row(
                    &producer,
                    &tracker,
                    opts,
                    partitioning,
                    partitions,
                    &row,
                    &mut already,
                    &mut report,
                    &mut rng,
                    started,
                )?;
                bar.inc(1);
                if last_save.elapsed() > Duration::from_millis(500) {
                    tracker.lock().expect("tracker lock").record(&mut cp);
                    cp.sent = report.sent;
                    cp.bytes = report.bytes;
                    cp.save(path)?;
                    last_save = Instant::now();
                    bar.set_message(format!("{:.1} MB", report.bytes as f64 / 1e6));
                }
            }
            Ok(true)
        })?;
        if !outcome {
            interrupted = true;
            break 'batches;
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(kafka_err("waiting for acknowledgements"))?;
    report.seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let (failed, first_error) = {
        let mut t = tracker.lock().expect("tracker lock");
        t.record(&mut cp);
        (t.failed, t.first_error.clone())
    };
    cp.sent = report.sent;
    cp.bytes = report.bytes;
    cp.complete = !interrupted && failed == 0;
    cp.save(path)?;
    if failed > 0 {
        return Err(ReplayError::Delivery {
            failed,
            first: first_error.unwrap_or_default(),
        });
    }
    if let Some(e) = unresolved {
        return Err(e);
    }
    if interrupted {
        return Err(ReplayError::Interrupted {
            sent: report.sent,
            checkpoint: path.display().to_string(),
        });
    }
    Ok(report)
}

#[expect(
    clippy::too_many_arguments,
    reason = "the send loop's state, passed by reference from one place"
)]
fn send_row(
    producer: &ThreadedProducer<AckContext>,
    tracker: &Arc<Mutex<AckTracker>>,
    opts: &ReplayOptions,
    partitioning: Partitioning,
    partitions: i32,
    row: &Row<'_>,
    already: &mut HashMap<u64, Vec<(i32, i64)>>,
    report: &mut ReplayReport,
    rng: &mut rand::rngs::ThreadRng,
    started: Instant,
) -> Result<()> {
    let ts = row.timestamp_ms.unwrap_or(-1);
    if !already.is_empty() {
        let fp = fingerprint(row.key, row.value, ts, &row.headers);
        if let Some(hits) = already.get_mut(&fp)
            && let Some((tp, toff)) = hits.pop()
        {
            // Delivered before the interruption: count it as acknowledged where it landed.
            let mut t = tracker.lock().expect("tracker lock");
            let id = t.source(row.topic, row.partition, None);
            t.sources[id as usize].last_sent = Some(row.offset);
            t.delivered(id, row.offset, tp, toff);
            report.already_present += 1;
            return Ok(());
        }
    }
    let size = row.key.map_or(0, <[u8]>::len) + row.value.map_or(0, <[u8]>::len);
    let due = match (opts.rate_records, opts.rate_bytes) {
        (None, None) => None,
        (r, b) => Some(
            r.map_or(0.0, |r| report.sent as f64 / r.max(1) as f64)
                .max(b.map_or(0.0, |b| report.bytes as f64 / b.max(1) as f64)),
        ),
    };
    if let Some(due) = due
        && let Some(wait) = Duration::from_secs_f64(due).checked_sub(started.elapsed())
    {
        std::thread::sleep(wait);
    }
    let id = {
        let mut t = tracker.lock().expect("tracker lock");
        let id = t.source(row.topic, row.partition, None);
        let s = &mut t.sources[id as usize];
        s.in_flight.insert(row.offset);
        s.last_sent = Some(row.offset);
        id
    };
    let headers = crate::produce::owned_headers(&row.headers);
    let mut record: BaseRecord<'_, [u8], [u8], Box<Pending>> = BaseRecord::with_opaque_to(
        &opts.target_topic,
        Box::new(Pending {
            source: id,
            offset: row.offset,
        }),
    )
    .headers(headers);
    if ts >= 0 {
        record = record.timestamp(ts);
    }
    if let Some(k) = row.key {
        record = record.key(k);
    }
    if let Some(v) = row.value {
        record = record.payload(v);
    }
    record = match partitioning {
        Partitioning::Keep => record.partition(row.partition),
        Partitioning::Random => record.partition(rng.random_range(0..partitions)),
        Partitioning::Key | Partitioning::Auto => record,
    };
    crate::produce::send_blocking(producer, record)
        .map_err(kafka_err(format!("producing to {}", opts.target_topic)))?;
    report.sent += 1;
    report.bytes += size as u64;
    Ok(())
}
