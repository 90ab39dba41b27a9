//! `orderlake-archiver generate`: produce sample OMS order events to Kafka, with an idempotent
//! producer, creating the topics when they do not exist.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use chrono::Utc;
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use orderlake_archive::{ArchiveTable, ImportSource, TableLayout, TableLocation};
use orderlake_ingest::decode::{DEFAULT_MAX_DECODE_BYTES, TopicDecoder};
use orderlake_ingest::{ArchiveWriter, ImportRecord, MappingSet, SourceMapping, WriterSettings};
use orderlake_samples::{
    OrderEventGenerator, RecordKind, SampleRecord, SampleSettings, SampleTopics,
};
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::cli::GenerateArgs;
use crate::error::CliError;

/// Where each record landed, by its index in the produced sequence: (partition, offset).
type LandedAt = Arc<Mutex<Vec<Option<(i32, i64)>>>>;

/// Records what the broker acknowledged.
#[derive(Debug, Default, Clone)]
struct DeliveryLog {
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    offsets: Option<LandedAt>,
}

impl ClientContext for DeliveryLog {}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        match result {
            Ok(msg) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                if let Some(offsets) = &self.offsets {
                    let mut o = offsets.lock().expect("offsets lock");
                    if o.len() <= index {
                        o.resize(index + 1, None);
                    }
                    o[index] = Some((msg.partition(), msg.offset()));
                }
            }
            Err((e, _)) => {
                tracing::error!(error = %e, "delivery failed");
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What a produce run delivered.
#[derive(Debug, Default)]
pub struct ProduceReport {
    pub acked: u64,
    pub failed: u64,
    /// Per record, in input order, where it landed (when asked for).
    pub offsets: Vec<Option<(i32, i64)>>,
    pub seconds: f64,
}

/// Produces sample records with an idempotent producer, optionally at `rate` records/s.
pub fn produce<'r>(
    brokers: &str,
    records: impl IntoIterator<Item = &'r SampleRecord>,
    rate: u64,
    record_offsets: bool,
    mut on_sent: impl FnMut(&SampleRecord),
) -> Result<ProduceReport, CliError> {
    let log = DeliveryLog {
        offsets: record_offsets.then(Default::default),
        ..DeliveryLog::default()
    };
    let producer: ThreadedProducer<DeliveryLog> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.kbytes", "262144")
        .set("message.max.bytes", "2000000")
        .create_with_context(log.clone())
        .map_err(|source| CliError::Kafka {
            context: format!("creating a producer for {brokers}"),
            source,
        })?;
    let started = Instant::now();
    for (i, rec) in records.into_iter().enumerate() {
        if rate > 0 {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len());
        for (k, v) in &rec.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&rec.topic, i)
                .timestamp(rec.timestamp_ms)
                .headers(headers);
        if let Some(p) = rec.partition {
            record = record.partition(p);
        }
        if let Some(k) = &rec.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &rec.value {
            record = record.payload(v.as_slice());
        }
        orderlake_replay::produce::send_blocking(&producer, record).map_err(|source| {
            CliError::Kafka {
                context: format!("producing to {}", rec.topic),
                source,
            }
        })?;
        on_sent(rec);
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|source| CliError::Kafka {
            context: "waiting for deliveries".into(),
            source,
        })?;
    Ok(ProduceReport {
        acked: log.acked.load(Ordering::Relaxed),
        failed: log.failed.load(Ordering::Relaxed),
        offsets: log
            .offsets
            .map(|o| std::mem::take(&mut *o.lock().expect("offsets lock")))
            .unwrap_or_default(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What was produced, per topic and kind.
#[derive(Debug, Default)]
pub struct GenerateSummary {
    pub per_topic: BTreeMap<String, u64>,
    pub malformed: u64,
    pub tombstones: u64,
    pub acked: u64,
    pub failed: u64,
    /// With `--into-table`: records of the stream the table already held.
    pub already_archived: u64,
    pub seconds: f64,
}

pub async fn ensure_topics(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
) -> Result<(), CliError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|source| CliError::Kafka {
            context: format!("connecting to {brokers}"),
            source,
        })?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|source| CliError::Kafka {
            context: format!("reading metadata from {brokers}"),
            source,
        })?;
    let existing: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    let missing: Vec<NewTopic<'_>> = topics
        .iter()
        .filter(|t| !existing.contains(t))
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let results = admin
        .create_topics(&missing, &AdminOptions::new())
        .await
        .map_err(|source| CliError::Kafka {
            context: "creating topics".into(),
            source,
        })?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = name, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(CliError::Kafka {
                    context: format!("creating topic {name}"),
                    source: KafkaError::AdminOp(code),
                });
            }
        }
    }
    Ok(())
}

fn sample_settings(args: &GenerateArgs) -> SampleSettings {
    let span = chrono::Duration::milliseconds((args.years.max(0.0) * 365.25 * 86_400_000.0) as i64);
    SampleSettings {
        seed: args.seed,
        topics: SampleTopics::with_prefix(&args.topic_prefix),
        start: Utc::now() - span,
        span,
        malformed_share: args.malformed_share,
        expected_events: args.events + args.skip,
        ..SampleSettings::default()
    }
}

fn progress_bar(args: &GenerateArgs) -> ProgressBar {
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.events)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} events {per_sec} eta {eta} {wide_bar}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

impl GenerateSummary {
    fn count(&mut self, rec: &SampleRecord) {
        *self.per_topic.entry(rec.topic.clone()).or_default() += 1;
        match rec.kind {
            RecordKind::Valid(_) => {}
            RecordKind::Malformed(_) => self.malformed += 1,
            RecordKind::Tombstone => self.tombstones += 1,
        }
    }
}

pub async fn generate(args: &GenerateArgs) -> Result<GenerateSummary, CliError> {
    if let Some(uri) = &args.into_table {
        return generate_into_table(args, uri).await;
    }
    let topics = SampleTopics::with_prefix(&args.topic_prefix);
    ensure_topics(&args.brokers, &topics.all(), args.partitions).await?;
    let settings = sample_settings(args);
    let bar = progress_bar(args);
    let mut summary = GenerateSummary::default();
    let brokers = args.brokers.clone();
    let (events, skip, rate) = (args.events, args.skip, args.rate);
    let (report, summary) = tokio::task::spawn_blocking(move || {
        // Generate lazily in chunks so a large run never holds the whole stream in memory.
        let mut stream = OrderEventGenerator::new(settings)
            .skip(skip as usize)
            .take(events as usize);
        let mut total = ProduceReport::default();
        loop {
            let chunk: Vec<SampleRecord> = stream.by_ref().take(50_000).collect();
            if chunk.is_empty() {
                break;
            }
            let r = produce(&brokers, &chunk, rate, false, |rec| {
                summary.count(rec);
                bar.inc(1);
            })?;
            total.acked += r.acked;
            total.failed += r.failed;
            total.seconds += r.seconds;
        }
        bar.finish_and_clear();
        Ok::<_, CliError>((total, summary))
    })
    .await
    .expect("producer thread")?;
    Ok(GenerateSummary {
        acked: report.acked,
        failed: report.failed,
        seconds: report.seconds,
        ..summary
    })
}

/// Records per commit when writing straight into the archive.
const DIRECT_CHUNK: usize = 200_000;

/// `generate --into-table`: the generator's stream imported like a legacy export (same decoding,
/// writer and per-source ledger, rows marked as imported, no Kafka coordinates). The stream is
/// named by its settings, so running the same command again adds nothing, and a larger
/// `--events` continues where the table's copy of the stream ends.
async fn generate_into_table(args: &GenerateArgs, uri: &str) -> Result<GenerateSummary, CliError> {
    if args.skip > 0 {
        return Err(CliError::Usage(
            "--skip does not apply with --into-table: the table's ledger says where the \
             generated stream continues"
                .into(),
        ));
    }
    let location = TableLocation::parse(uri, HashMap::new())?;
    let table = ArchiveTable::open_or_create_with(
        location,
        TableLayout {
            partitioning: args.partitioning,
            codec: args.codec,
        },
    )
    .await?;
    let mut writer = ArchiveWriter::new(table, WriterSettings::default());
    let mut decoder = TopicDecoder::new(
        MappingSet::new(SourceMapping::defaults())?,
        DEFAULT_MAX_DECODE_BYTES,
    );
    let source = ImportSource::new(
        format!(
            "generator-seed{}-events{}-years{}-malformed{}-prefix{}",
            args.seed, args.events, args.years, args.malformed_share, args.topic_prefix
        ),
        format!(
            "orderlake-archiver generate --seed {} --events {} --years {}",
            args.seed, args.events, args.years
        ),
    );
    let bar = progress_bar(args);
    let started = Instant::now();
    let mut summary = GenerateSummary::default();
    let counted = &mut summary;
    let records = futures::stream::iter(
        OrderEventGenerator::new(sample_settings(args)).take(args.events as usize),
    )
    .map(move |rec| {
        counted.count(&rec);
        Ok(ImportRecord {
            topic: rec.topic,
            key: rec.key,
            value: rec.value,
            timestamp_ms: Some(rec.timestamp_ms),
            headers: rec.headers,
        })
    });
    let report = orderlake_ingest::import_records(
        &mut writer,
        &mut decoder,
        &source,
        Box::pin(records),
        DIRECT_CHUNK,
        |n| bar.inc(n),
    )
    .await?;
    bar.finish_and_clear();
    summary.acked = report.added;
    summary.already_archived = report.records - report.added;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
