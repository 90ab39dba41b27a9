//! Replay against the real broker and S3 server: archived records go back to Kafka byte for byte
//! (key, value, headers, timestamp), each once, in per-partition order; selections pick exactly
//! the expected records; a replay killed half-way resumes without duplicates; the rate limit holds.

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use orderlake_samples::{RecordKind, SampleRecord};
use support::{Backend, Produced, Seen, Services, consume_all};

/// How a produced sample record sits in its topic.
fn seen_of(r: &SampleRecord) -> Seen {
    Seen {
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect(),
        timestamp_ms: r.timestamp_ms,
    }
}

/// A stream with every kind of record, archived to `backend`.
async fn archived_stream(
    services: &Services,
    backend: &Backend,
    events: usize,
) -> (Produced, Vec<String>) {
    let prefix = format!("{}.", support::unique("rp"));
    let mut settings = support::sample_settings(&prefix, 11, events as u64, 0.05);
    settings.oversize_bytes = 20 * 1024;
    let mut produced = support::produce_stream(services, &settings, 0, events).await;
    // Binary and missing keys, binary header values.
    let extra: Vec<SampleRecord> = (0..60u8)
        .map(|i| SampleRecord {
            topic: settings.topics.orders.clone(),
            partition: None,
            key: (i % 3 != 0).then(|| vec![0xff, i, 0x00, 0xfe]),
            value: Some(format!("{{\"order_id\":\"BIN-{i}\"}}").into_bytes()),
            headers: vec![("bin".into(), vec![0, i, 255]), ("empty".into(), vec![])],
            timestamp_ms: 1_600_000_000_000 + i64::from(i) * 1000,
            kind: RecordKind::Malformed("binary key"),
        })
        .collect();
    let brokers = services.brokers.clone();
    let extra_out = tokio::task::spawn_blocking(move || {
        let r = orderlake_archiver::commands::generate::produce(&brokers, &extra, 0, true, |_| {})
            .unwrap();
        Produced {
            coords: r.offsets.into_iter().map(Option::unwrap).collect(),
            records: extra,
        }
    })
    .await
    .unwrap();
    produced.extend(extra_out);
    let topics: Vec<String> = settings
        .topics
        .all()
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
    let topic_names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let out = support::archive_until_caught_up(
        backend,
        services,
        &support::unique("g"),
        &topic_names,
        &["--flush-interval-ms", "1000"],
    )
    .wait_with_output()
    .unwrap();
    support::assert_success("archiving", &out);
    (produced, topics)
}

fn replay_cmd(
    backend: &Backend,
    services: &Services,
    target: &str,
    checkpoint: &std::path::Path,
) -> std::process::Command {
    let mut cmd = support::archiver(backend);
    cmd.args([
        "replay",
        "--quiet",
        "--table-uri",
        &backend.table_uri(),
        "--brokers",
        &services.brokers,
        "--to-topic",
        target,
    ])
    .arg("--checkpoint")
    .arg(checkpoint);
    cmd
}

fn dry_run_count(backend: &Backend, services: &Services, args: &[&str]) -> u64 {
    let out = replay_cmd(
        backend,
        services,
        "unused",
        std::path::Path::new("/nonexistent/cp.json"),
    )
    .arg("--dry-run")
    .args(args)
    .output()
    .unwrap();
    let stdout = support::assert_success("dry run", &out);
    stdout
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_s3_is_byte_exact_and_ordered() {
    let services = Services::from_env();
    let backend = Backend::s3(&services, "replay");
    let (produced, _) = archived_stream(&services, &backend, 4_000).await;
    let (from, to) = (1_577_836_800_000i64, 1_609_459_200_000i64); // 2020-01-01 .. 2021-01-01
    let target = support::unique("replayed");
    let dir = tempfile::tempdir().unwrap();
    let out = replay_cmd(&backend, &services, &target, &dir.path().join("cp.json"))
        .args([
            "--time-field",
            "kafka",
            "--from",
            "2020-01-01",
            "--to",
            "2021-01-01T00:00:00Z",
            "--create-topic",
            "4",
        ])
        .output()
        .unwrap();
    let stdout = support::assert_success("replay", &out);
    let mut expected: BTreeMap<(String, i32), Vec<(i64, Seen)>> = BTreeMap::new();
    for (r, (p, o)) in produced.records.iter().zip(&produced.coords) {
        if (from..to).contains(&r.timestamp_ms) {
            expected
                .entry((r.topic.clone(), *p))
                .or_default()
                .push((*o, seen_of(r)));
        }
    }
    let total: usize = expected.values().map(Vec::len).sum();
    assert!(total > 500, "the range selects a real share ({total})");
    assert!(
        stdout.starts_with(&format!("replayed {total} records")),
        "{stdout}"
    );
    assert!(
        stdout.contains("partitioning Keep"),
        "4 target partitions keep the source partitions: {stdout}"
    );
    let got = consume_all(&services.brokers, &target, 4);
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), total);
    // Each target partition holds exactly its source partitions' records, each source in offset order.
    for p in 0..4 {
        let mut want: Vec<Seen> = Vec::new();
        for ((_, sp), recs) in &expected {
            if *sp == p {
                let mut recs = recs.clone();
                recs.sort_by_key(|(o, _)| *o);
                want.extend(recs.into_iter().map(|(_, s)| s));
            }
        }
        let have = got.get(&p).cloned().unwrap_or_default();
        assert_eq!(have.len(), want.len(), "partition {p}");
        assert_eq!(
            have, want,
            "partition {p}: same bytes, same order (sources sorted by topic then offset)"
        );
    }
    let tombstones = got.values().flatten().filter(|s| s.value.is_none()).count();
    let binary_keys = got
        .values()
        .flatten()
        .filter(|s| s.key.as_ref().is_some_and(|k| k.first() == Some(&0xff)))
        .count();
    assert!(
        tombstones > 0 && binary_keys > 0,
        "tombstones {tombstones}, binary keys {binary_keys}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selections_resume_rate_and_errors() {
    let services = Services::from_env();
    let backend = Backend::local();
    let (produced, topics) = archived_stream(&services, &backend, 6_000).await;
    let all: Vec<(&SampleRecord, i32, i64)> = produced
        .records
        .iter()
        .zip(&produced.coords)
        .map(|(r, (p, o))| (r, *p, *o))
        .collect();
    let count = |f: &dyn Fn(&SampleRecord, i32, i64) -> bool| {
        all.iter().filter(|(r, p, o)| f(r, *p, *o)).count() as u64
    };
    let status = |r: &SampleRecord| match &r.kind {
        RecordKind::Valid(e) => Some(e.status.clone()),
        _ => None,
    };
    let event_ms = |r: &SampleRecord| match &r.kind {
        RecordKind::Valid(e) => Some(e.event_time_ms),
        _ => None,
    };

    // Each selector alone, then combined.
    let t1 = topics[1].as_str();
    assert_eq!(
        dry_run_count(&backend, &services, &["--source-topics", t1]),
        count(&|r, _, _| r.topic == t1)
    );
    assert_eq!(
        dry_run_count(&backend, &services, &["--partitions", "1,2"]),
        count(&|_, p, _| p == 1 || p == 2)
    );
    assert_eq!(
        dry_run_count(&backend, &services, &["--offsets", "10..50"]),
        count(&|_, _, o| (10..=50).contains(&o))
    );
    assert_eq!(
        dry_run_count(&backend, &services, &["--where", "status = 'CANCELLED'"]),
        count(&|r, _, _| status(r).as_deref() == Some("CANCELLED"))
    );
    let (from, to) = (1_590_969_600_000i64, 1_596_240_000_000i64); // 2020-06-01 .. 2020-08-01
    assert_eq!(
        dry_run_count(
            &backend,
            &services,
            &["--from", "2020-06-01", "--to", "2020-08-01"]
        ),
        count(&|r, _, _| event_ms(r).is_some_and(|t| (from..to).contains(&t)))
    );
    let combined = dry_run_count(
        &backend,
        &services,
        &[
            "--source-topics",
            t1,
            "--partitions",
            "0,3",
            "--offsets",
            "5..",
            "--where",
            "previous_status IS NOT NULL AND status <> 'PAID'",
        ],
    );
    let want = count(&|r, p, o| {
        r.topic == t1
            && (p == 0 || p == 3)
            && o >= 5
            && matches!(&r.kind, RecordKind::Valid(e) if e.previous_status.is_some() && e.status != "PAID")
    });
    assert_eq!(combined, want);
    assert!(combined > 0);

    // Clear errors.
    let dir = tempfile::tempdir().unwrap();
    let bad = replay_cmd(&backend, &services, "x", &dir.path().join("a.json"))
        .args(["--dry-run", "--where", "status = = 'X'"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("--where") && err.contains("Line: 1, Column"),
        "{err}"
    );
    let missing = replay_cmd(
        &backend,
        &services,
        &support::unique("absent"),
        &dir.path().join("b.json"),
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && err.contains("--create-topic"),
        "{err}"
    );
    let looped = replay_cmd(
        &backend,
        &services,
        "oms.orders",
        &dir.path().join("c.json"),
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&looped.stderr);
    assert!(
        !looped.status.success() && err.contains("--allow-loop"),
        "{err}"
    );
    let no_table = support::archiver(&backend)
        .args([
            "replay",
            "--table-uri",
            "/nonexistent/lake",
            "--to-topic",
            "x",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&no_table.stderr).contains("no archive table"),
        "{}",
        String::from_utf8_lossy(&no_table.stderr)
    );

    // Resume: kill -9 half-way through a rate-limited replay, then resume.
    let target = support::unique("resumed");
    let cp = dir.path().join("resume.json");
    let mut child = replay_cmd(&backend, &services, &target, &cp)
        .args(["--create-topic", "4", "--rate", "1500"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it is demonstrably sending: the first checkpoint is written after 0.5 s of it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cp.exists() {
        assert!(
            Instant::now() < deadline,
            "the replay never started sending"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let halfway: usize = consume_all(&services.brokers, &target, 4)
        .values()
        .map(Vec::len)
        .sum();
    assert!(
        halfway > 0 && halfway < produced.records.len(),
        "killed half-way ({halfway} of {})",
        produced.records.len()
    );
    let out = replay_cmd(&backend, &services, &target, &cp)
        .arg("--resume")
        .output()
        .unwrap();
    let stdout = support::assert_success("resumed replay", &out);
    let got = consume_all(&services.brokers, &target, 4);
    let mut have: Vec<Seen> = got.into_values().flatten().collect();
    let mut want: Vec<Seen> = produced.records.iter().map(seen_of).collect();
    have.sort();
    want.sort();
    assert_eq!(
        have.len(),
        want.len(),
        "each record exactly once after resume: {stdout}"
    );
    assert_eq!(have, want);

    // Rate limit: 5,000 records at 500/s take 10 s, within 10%.
    let target = support::unique("rated");
    let started = Instant::now();
    let out = replay_cmd(&backend, &services, &target, &dir.path().join("rate.json"))
        .args([
            "--create-topic",
            "4",
            "--rate",
            "500",
            "--offsets",
            "..2000",
            "--source-topics",
            &topics[0],
        ])
        .args(["--source-topics", &topics[1], "--source-topics", &topics[2]])
        .output()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let stdout = support::assert_success("rated replay", &out);
    let sent: f64 = stdout.split_whitespace().nth(1).unwrap().parse().unwrap();
    let rate: f64 = stdout
        .split(": ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent > 2_000.0, "{stdout}");
    assert!(
        (450.0..=550.0).contains(&rate),
        "rate {rate}/s not within 10% of 500/s: {stdout}"
    );
    assert!(
        wall >= sent / 500.0 * 0.9,
        "took {wall:.1}s for {sent} records"
    );
}
