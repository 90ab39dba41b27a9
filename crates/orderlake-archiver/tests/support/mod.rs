//! Test support: the real services `scripts/test.sh` starts (tansu, moto, a Python with the
//! independent readers), archive backends, producing sample streams with their delivered
//! offsets, and reading an archive back row by row.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support module"
)]

pub mod private;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use arrow::array::{Array, AsArray as _, ListArray};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use orderlake_archive::{ArchiveTable, TableLocation};
use orderlake_archiver::commands::generate::{ensure_topics, produce};
use orderlake_samples::{OrderEventGenerator, SampleRecord, SampleSettings, SampleTopics};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Services started by `scripts/test.sh`, found through environment variables.
#[derive(Debug, Clone)]
pub struct Services {
    pub brokers: String,
    pub s3_endpoint: String,
    pub s3_bucket: String,
    pub python: PathBuf,
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests through ./scripts/test.sh, which starts tansu and moto")
    })
}

impl Services {
    pub fn from_env() -> Self {
        Self {
            brokers: required_env("ORDERLAKE_TEST_BROKERS"),
            s3_endpoint: required_env("ORDERLAKE_TEST_S3_ENDPOINT"),
            s3_bucket: required_env("ORDERLAKE_TEST_S3_BUCKET"),
            python: PathBuf::from(required_env("ORDERLAKE_TEST_PYTHON")),
        }
    }
}

/// A path in the repository. The manifest directory is read when the test runs (the test
/// binary may have been built in another checkout of the tree that shares the target directory).
pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{name}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Where a test's archive lives.
#[derive(Debug)]
pub enum Backend {
    Local(tempfile::TempDir),
    S3 { services: Services, prefix: String },
}

impl Backend {
    pub fn local() -> Self {
        Self::Local(tempfile::tempdir().unwrap())
    }

    pub fn s3(services: &Services, name: &str) -> Self {
        Self::S3 {
            services: services.clone(),
            prefix: unique(name),
        }
    }

    pub fn table_uri(&self) -> String {
        match self {
            Self::Local(dir) => format!("{}/lake/order_events", dir.path().display()),
            Self::S3 { services, prefix } => {
                format!("s3://{}/{prefix}/order_events", services.s3_bucket)
            }
        }
    }

    /// Environment for child processes (the archiver, Python readers).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Local(_) => vec![],
            Self::S3 { services, .. } => vec![
                ("AWS_ENDPOINT_URL", services.s3_endpoint.clone()),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
                ("AWS_REGION", "us-east-1".into()),
                ("AWS_ALLOW_HTTP", "true".into()),
            ],
        }
    }

    /// Storage options for reading in this process (never through our own environment).
    pub fn location(&self) -> TableLocation {
        let options: HashMap<String, String> = self
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        TableLocation::parse(&self.table_uri(), options).unwrap()
    }
}

/// The archiver binary with a backend's environment.
pub fn archiver(backend: &Backend) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orderlake-archiver"));
    // Only what a test passes: scripts/test.sh exports the shared services' addresses.
    cmd.env_remove("AWS_ENDPOINT_URL")
        .env_remove("ORDERLAKE_BROKERS")
        .envs(backend.env());
    cmd.env(
        "ORDERLAKE_LOG",
        "warn,orderlake_ingest=info,orderlake_archiver=info",
    );
    cmd
}

/// `orderlake-archiver run` of `group` for `topics` into `backend`; callers add flags.
pub fn archiver_run(
    backend: &Backend,
    services: &Services,
    group: &str,
    topics: &[&str],
) -> Command {
    let mut cmd = archiver(backend);
    cmd.args(["run", "--brokers", &services.brokers, "--group", group])
        .args(["--topics", &topics.join(",")])
        .args(["--table-uri", &backend.table_uri()]);
    cmd
}

/// `orderlake-archiver run --until-caught-up` for `topics` into `backend`, not yet waited for.
pub fn archive_until_caught_up(
    backend: &Backend,
    services: &Services,
    group: &str,
    topics: &[&str],
    extra: &[&str],
) -> std::process::Child {
    archiver_run(backend, services, group, topics)
        .arg("--until-caught-up")
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` at most `limit`; past it, kills the child and fails with what it printed,
/// so a hang is a failing test that says where it hung, never a stuck suite.
pub fn output_within(child: std::process::Child, limit: Duration, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            signal(pid, "KILL");
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "{what} did not finish within {limit:?}; killed it. stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`, …) to a process.
pub fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// `orderlake-archiver status --json` of the backend's table.
pub fn status_json(backend: &Backend) -> serde_json::Value {
    let out = status_output(backend);
    serde_json::from_str(&assert_success("status", &out)).unwrap()
}

/// The same, or `None` while the table does not exist yet (the command fails).
pub fn status_json_if_any(backend: &Backend) -> Option<serde_json::Value> {
    let out = status_output(backend);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn status_output(backend: &Backend) -> Output {
    archiver(backend)
        .args(["status", "--json", "--table-uri", &backend.table_uri()])
        .output()
        .unwrap()
}

pub fn assert_success(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A produced stream: the records and where each landed.
#[derive(Debug, Default)]
pub struct Produced {
    pub records: Vec<SampleRecord>,
    pub coords: Vec<(i32, i64)>,
}

impl Produced {
    /// (topic, partition, offset) → record.
    pub fn by_coordinate(&self) -> BTreeMap<(String, i32, i64), &SampleRecord> {
        self.records
            .iter()
            .zip(&self.coords)
            .map(|(r, (p, o))| ((r.topic.clone(), *p, *o), r))
            .collect()
    }

    pub fn extend(&mut self, more: Produced) {
        self.records.extend(more.records);
        self.coords.extend(more.coords);
    }
}

pub fn sample_settings(
    prefix: &str,
    seed: u64,
    expected_events: u64,
    malformed_share: f64,
) -> SampleSettings {
    SampleSettings {
        seed,
        topics: SampleTopics::with_prefix(prefix),
        start: orderlake_samples::reference_start(),
        span: chrono::Duration::days(365 * 4),
        malformed_share,
        expected_events,
        oversize_bytes: 200 * 1024,
        ..SampleSettings::default()
    }
}

/// Creates the three sample topics (4 partitions each) and produces events `skip..skip+count`
/// of the seeded stream.
pub async fn produce_stream(
    services: &Services,
    settings: &SampleSettings,
    skip: usize,
    count: usize,
) -> Produced {
    let records: Vec<SampleRecord> = OrderEventGenerator::new(settings.clone())
        .skip(skip)
        .take(count)
        .collect();
    produce_records(services, &settings.topics, records).await
}

/// Creates the three sample topics (4 partitions each) and produces `records`, every one
/// acknowledged.
pub async fn produce_records(
    services: &Services,
    topics: &SampleTopics,
    records: Vec<SampleRecord>,
) -> Produced {
    ensure_topics(&services.brokers, &topics.all(), 4)
        .await
        .unwrap();
    let brokers = services.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let report = produce(&brokers, &records, 0, true, |_| {}).unwrap();
        assert_eq!(report.failed, 0);
        assert_eq!(report.acked as usize, records.len());
        let coords = report
            .offsets
            .into_iter()
            .map(|c| c.expect("every record acknowledged"))
            .collect();
        Produced { records, coords }
    })
    .await
    .unwrap()
}

/// One archive row, as the tests compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedRow {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp_ms: Option<i64>,
    pub order_id: Option<String>,
    pub customer_id: Option<String>,
    pub status: Option<String>,
    pub previous_status: Option<String>,
    pub total_amount: Option<String>,
    pub items: Option<usize>,
    pub event_time_ms: Option<i64>,
    pub decode_error: Option<String>,
    pub event_date: String,
}

/// Row `i` of a column as text (cast), or `None` where it is null.
pub fn opt_string(a: &dyn Array, i: usize) -> Option<String> {
    let a = arrow::compute::cast(&a.slice(i, 1), &arrow::datatypes::DataType::Utf8).unwrap();
    let s = a.as_string::<i32>();
    (!s.is_null(0)).then(|| s.value(0).to_owned())
}

/// Row `i` of a column as bytes (cast), or `None` where it is null.
pub fn opt_binary(a: &dyn Array, i: usize) -> Option<Vec<u8>> {
    let a = arrow::compute::cast(&a.slice(i, 1), &arrow::datatypes::DataType::Binary).unwrap();
    let b = a.as_binary::<i32>();
    (!b.is_null(0)).then(|| b.value(0).to_vec())
}

/// The result of `sql` over the table as delta-rs reads it, registered as `archive`.
pub async fn archive_sql(table: &ArchiveTable, sql: &str) -> Vec<arrow::array::RecordBatch> {
    let ctx = table.session_with("archive").await.unwrap();
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

/// Every row of the archive, keyed by Kafka coordinates; panics on a duplicate coordinate.
pub async fn read_archive(backend: &Backend) -> BTreeMap<(String, i32, i64), ArchivedRow> {
    let table = ArchiveTable::open(backend.location()).await.unwrap();
    let batches = archive_sql(
        &table,
        "SELECT kafka_topic, kafka_partition, kafka_offset, kafka_key, kafka_value, kafka_headers, \
         kafka_timestamp, order_id, customer_id, status, previous_status, \
         CAST(total_amount AS VARCHAR), items, event_time, decode_error, CAST(event_date AS VARCHAR) \
         FROM archive",
    )
    .await;
    let mut rows = BTreeMap::new();
    for b in &batches {
        let part = b.column(1).as_primitive::<Int32Type>();
        let off = b.column(2).as_primitive::<Int64Type>();
        let headers = b.column(5).as_any().downcast_ref::<ListArray>().unwrap();
        let ts = b.column(6).as_primitive::<TimestampMicrosecondType>();
        let items = b.column(12).as_any().downcast_ref::<ListArray>().unwrap();
        let et = b.column(13).as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            let hs = headers.value(i);
            let hs = hs.as_struct();
            let header_list = (0..hs.len())
                .map(|j| {
                    (
                        opt_string(hs.column(0).as_ref(), j).unwrap(),
                        opt_binary(hs.column(1).as_ref(), j),
                    )
                })
                .collect();
            let row = ArchivedRow {
                key: opt_binary(b.column(3).as_ref(), i),
                value: opt_binary(b.column(4).as_ref(), i),
                headers: header_list,
                timestamp_ms: (!ts.is_null(i)).then(|| ts.value(i) / 1000),
                order_id: opt_string(b.column(7).as_ref(), i),
                customer_id: opt_string(b.column(8).as_ref(), i),
                status: opt_string(b.column(9).as_ref(), i),
                previous_status: opt_string(b.column(10).as_ref(), i),
                total_amount: opt_string(b.column(11).as_ref(), i),
                items: (!items.is_null(i)).then(|| items.value(i).len()),
                event_time_ms: (!et.is_null(i)).then(|| et.value(i) / 1000),
                decode_error: opt_string(b.column(14).as_ref(), i),
                event_date: opt_string(b.column(15).as_ref(), i).unwrap(),
            };
            let coord = (
                opt_string(b.column(0).as_ref(), i).unwrap(),
                part.value(i),
                off.value(i),
            );
            if let Some(prev) = rows.insert(coord.clone(), row) {
                panic!("duplicate archive row for {coord:?}: {prev:?}");
            }
        }
    }
    rows
}

/// Every produced record exactly once, by the producer's record and by `verify`. Returns the
/// archived rows it read.
pub async fn assert_exactly_once(
    backend: &Backend,
    produced: &Produced,
    context: &str,
) -> BTreeMap<(String, i32, i64), ArchivedRow> {
    let expected: BTreeSet<_> = produced.by_coordinate().into_keys().collect();
    let rows = read_archive(backend).await;
    let archived: BTreeSet<_> = rows.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&archived).take(5).collect();
    let extra: Vec<_> = archived.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} produced, {} archived; missing {missing:?}, unexpected {extra:?}\n{context}",
        expected.len(),
        archived.len()
    );
    let verify = archiver(backend)
        .args(["verify", "--table-uri", &backend.table_uri()])
        .output()
        .unwrap();
    let report = assert_success("verify", &verify);
    assert!(report.contains("OK:"), "{report}");
    rows
}

/// Runs the independent-reader script and returns its JSON report.
pub fn independent_read(services: &Services, backend: &Backend) -> serde_json::Value {
    let script = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../../tests/python/read_archive.py");
    let out = Command::new(&services.python)
        .arg(script)
        .arg(backend.table_uri())
        .envs(backend.env())
        .output()
        .unwrap();
    let stdout = assert_success("read_archive.py", &out);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("read_archive.py printed {stdout}: {e}"))
}

/// One record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp_ms: i64,
}

/// Everything in `topic`, per partition, in offset order.
pub fn consume_all(brokers: &str, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<Seen>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("replay-check"))
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<Seen>> = BTreeMap::new();
    let mut open: BTreeSet<i32> = (0..partitions).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !open.is_empty() {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => panic!("{e}"),
            Some(Ok(m)) => out.entry(m.partition()).or_default().push(Seen {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: orderlake_replay::produce::header_pairs(&m),
                timestamp_ms: m.timestamp().to_millis().unwrap(),
            }),
        }
    }
    out
}
