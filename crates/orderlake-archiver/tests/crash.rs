//! kill -9 at random moments while archiving (buffering, uploading files, between upload and
//! commit, during a commit), ten times, restarting each time; then a catch-up run. The table holds
//! every produced (topic, partition, offset) exactly once, as both the producer's own record and
//! `verify` say; files orphaned by the crashes are invisible to readers and a vacuum removes them.

mod support;

use std::time::Duration;

use orderlake_archive::{ArchiveTable, TableLocation};
use orderlake_ingest::{ArchiveWriter, MappingSet, SourceMapping, SourceRecord, WriterSettings};
use rand::Rng as _;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use support::{Backend, Services};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_ten_times_loses_and_doubles_nothing() {
    let services = Services::from_env();
    let backend = Backend::local();
    let prefix = format!("{}.", support::unique("crash"));
    const PER_ROUND: usize = 5_000;
    let settings = support::sample_settings(&prefix, 9, 10 * PER_ROUND as u64, 0.02);
    let mut produced = support::Produced::default();
    let topics_owned = settings.topics.clone();
    let topics = topics_owned.all();
    let mut rng = rand::rng();
    for round in 0..10 {
        // Fresh records every round, so every kill lands while there is work in flight.
        let batch =
            support::produce_stream(&services, &settings, round * PER_ROUND, PER_ROUND).await;
        produced.extend(batch);
        // A new group each time: where archiving resumes comes from the table's ledger, never
        // from group offsets (and no dead member holds the partitions).
        let group = support::unique("g");
        // Small, frequent flushes: most moments fall inside some flush's upload or commit.
        let mut child = support::archiver(&backend)
            .args(["run", "--brokers", &services.brokers, "--group", &group])
            .args([
                "--topics",
                &topics.join(","),
                "--table-uri",
                &backend.table_uri(),
            ])
            .args(["--flush-interval-ms", "150", "--flush-max-rows", "700"])
            .env("ORDERLAKE_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let after = Duration::from_millis(rng.random_range(700..2500));
        tokio::time::sleep(after).await;
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the archiver was killed, not finished"
        );
    }

    let group = support::unique("g");
    let out = support::output_within(
        support::archive_until_caught_up(&backend, &services, &group, &topics, &[]),
        Duration::from_secs(300),
        "catch-up run after ten kills",
    );
    support::assert_success("catch-up run after ten kills", &out);

    support::assert_exactly_once(&backend, &produced, &String::from_utf8_lossy(&out.stderr)).await;
    let uri = backend.table_uri();

    // Orphans: data files on disk that no version references. A vacuum removes them and leaves
    // exactly the referenced files (the key index's segments are not data files).
    let parquet_on_disk = |dir: &std::path::Path| {
        walk(dir)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .filter(|p| !p.starts_with(dir.join(orderlake_archive::key_index::INDEX_DIR)))
            .count()
    };
    let dir = std::path::PathBuf::from(uri.trim_start_matches("file://"));
    let before = parquet_on_disk(&dir);
    let vacuum = support::archiver(&backend)
        .args([
            "maintain",
            "--table-uri",
            &uri,
            "--vacuum",
            "--retention-hours",
            "0",
            "--force",
        ])
        .output()
        .unwrap();
    let said = support::assert_success("vacuum", &vacuum);
    let referenced = backend.location();
    let table = ArchiveTable::open(referenced).await.unwrap();
    let live = table.delta().snapshot().unwrap().log_data().iter().count();
    assert_eq!(
        parquet_on_disk(&dir),
        live,
        "after vacuum only referenced files remain: {said}"
    );
    assert!(before >= live);
    assert_eq!(
        support::read_archive(&backend).await.len(),
        produced.by_coordinate().len()
    );
}

/// The table's ledger ends inside the broker's last record batch (the archiver was killed after
/// committing part of a batch). Some brokers answer a fetch at such an offset with nothing, ever:
/// the archiver must notice that the partition has records beyond its position and re-read from
/// further back, not wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_inside_the_last_record_batch() {
    let services = Services::from_env();
    let backend = Backend::local();
    let topic = support::unique("midbatch");
    orderlake_archiver::commands::generate::ensure_topics(&services.brokers, &[&topic], 1)
        .await
        .unwrap();
    let value = |i: i64| format!(r#"{{"order_id":"O-{i}","status":"placed"}}"#);
    // Ten records in one producer batch: offsets 0..=9.
    let brokers = services.brokers.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("linger.ms", "1000")
            .create()
            .unwrap();
        for i in 0..10i64 {
            let v = value(i);
            producer
                .send(BaseRecord::<(), _>::to(&t).partition(0).payload(&v))
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    })
    .await
    .unwrap();
    // The table already holds offsets 0..=4, as a killed archiver would have left it.
    let location = TableLocation::parse(&backend.table_uri(), Default::default()).unwrap();
    let table = ArchiveTable::open_or_create(location).await.unwrap();
    let mut writer = ArchiveWriter::new(table, WriterSettings::default());
    let mappings = MappingSet::new(SourceMapping::defaults()).unwrap();
    let first_half: Vec<SourceRecord> = (0..5)
        .map(|i| SourceRecord {
            topic: topic.clone(),
            partition: 0,
            offset: i,
            timestamp_ms: Some(1_700_000_000_000),
            value: Some(value(i).into_bytes()),
            ..Default::default()
        })
        .collect();
    orderlake_ingest::archive_records(&mut writer, &mappings, &first_half)
        .await
        .unwrap();

    let group = support::unique("g");
    let out = support::output_within(
        support::archive_until_caught_up(&backend, &services, &group, &[&topic], &[]),
        Duration::from_secs(120),
        "catch-up from inside the last batch",
    );
    support::assert_success("catch-up from inside the last batch", &out);
    let rows = support::read_archive(&backend).await;
    let offsets: Vec<i64> = rows.keys().map(|(_, _, o)| *o).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
