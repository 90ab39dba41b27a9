//! `run` with `[metrics] listen`, scraped as Prometheus would: records counted in and out per
//! topic and partition, lag falling to zero once everything is archived, the newest archived
//! timestamp equal to the newest record's, undecodable records counted by reason; and `/ready`
//! refusing while the table cannot be opened or no broker answers.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use orderlake_telemetry::{Sample, http_get, parse_samples};
use support::{Backend, Services};

/// A loopback address nothing listens on yet.
fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], support::private::free_port()))
}

/// `path` once the listener answers (it starts before the table opens).
fn get_when_up(addr: SocketAddr, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http_get(addr, path) {
            Ok(answer) => return answer,
            Err(e) => assert!(Instant::now() < deadline, "{addr}{path}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.is(name, labels))
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_an_archiving_run_to_zero_lag() {
    let services = Services::from_env();
    let backend = Backend::local();
    let prefix = format!("{}.", support::unique("metrics"));
    let settings = support::sample_settings(&prefix, 11, 3_000, 0.03);
    let produced = support::produce_stream(&services, &settings, 0, 3_000).await;
    let topics_owned = settings.topics.clone();
    let topics = topics_owned.all();
    let ops = free_addr();
    let mut child = support::archiver_run(&backend, &services, &support::unique("g"), &topics)
        .args(["--flush-interval-ms", "500"])
        .args(["--metrics-listen", &ops.to_string(), "--log-format", "json"])
        .env("ORDERLAKE_LOG", "info,orderlake_ingest::writer=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read its log as it is written (a full pipe would stall the archiver).
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());

    let total = produced.records.len() as f64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let samples = loop {
        let (code, page) = tokio::task::spawn_blocking(move || get_when_up(ops, "/metrics"))
            .await
            .unwrap();
        assert_eq!(code, 200);
        let samples = parse_samples(&page);
        let archived = sum(&samples, "orderlake_archiver_records_archived_total", &[]);
        let lag = sum(&samples, "orderlake_archiver_partition_lag_records", &[]);
        let lag_series = samples
            .iter()
            .filter(|s| s.name == "orderlake_archiver_partition_lag_records")
            .count();
        if archived == total && lag == 0.0 && lag_series == 12 {
            break samples;
        }
        if Instant::now() > deadline {
            support::signal(child.id(), "KILL");
            panic!(
                "archived {archived} of {total}, lag {lag} over {lag_series} partitions:\n{page}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Ready once the drain's consumer has reported broker statistics (every second): an
    // archive this small can be caught up before its first report.
    let ready_by = Instant::now() + Duration::from_secs(10);
    let (code, body) = loop {
        let (code, body) = http_get(ops, "/ready").unwrap();
        if code == 200 || Instant::now() > ready_by {
            break (code, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(code, 200, "{body}");

    // Per topic and partition, as documented, and counted once each.
    for ((topic, partition, _), _) in produced.by_coordinate().iter().take(1) {
        let labels = [
            ("topic", topic.as_str()),
            ("partition", &partition.to_string()),
        ];
        assert!(
            sum(
                &samples,
                "orderlake_archiver_records_archived_total",
                &labels
            ) > 0.0
        );
    }
    assert_eq!(
        sum(&samples, "orderlake_archiver_records_consumed_total", &[]),
        total,
        "one pass over the topics: every record read once"
    );
    assert!(sum(&samples, "orderlake_archiver_bytes_archived_total", &[]) > 0.0);
    assert!(
        sum(
            &samples,
            "orderlake_archiver_flushes_total",
            &[("outcome", "committed")]
        ) >= 1.0
    );
    assert!(
        sum(
            &samples,
            "orderlake_archiver_flush_duration_seconds_count",
            &[]
        ) >= 1.0
    );
    assert_eq!(sum(&samples, "kafka_consumergroup_lag", &[]), 0.0);

    // Freshness is the newest archived Kafka timestamp, and undecodable records are counted by
    // why they could not be decoded: both as the table itself tells.
    let rows = support::read_archive(&backend).await;
    assert_eq!(rows.len() as f64, total);
    let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
    let mut undecoded = 0.0;
    for ((topic, _, _), row) in &rows {
        let ts = row.timestamp_ms.unwrap();
        let n = newest.entry(topic.as_str()).or_insert(ts);
        *n = (*n).max(ts);
        if row.decode_error.is_some() {
            undecoded += 1.0;
        }
    }
    for (topic, ts) in newest {
        let gauge = sum(
            &samples,
            "orderlake_archiver_newest_archived_timestamp_seconds",
            &[("topic", topic)],
        );
        assert_eq!(gauge, ts as f64 / 1000.0, "{topic}");
        assert!(
            sum(
                &samples,
                "orderlake_archiver_freshness_seconds",
                &[("topic", topic)]
            ) >= 0.0
        );
    }
    assert!(undecoded > 0.0, "the sample stream holds malformed records");
    assert_eq!(
        sum(&samples, "orderlake_archiver_decode_failures_total", &[]),
        undecoded
    );
    assert!(
        samples
            .iter()
            .filter(|s| s.name == "orderlake_archiver_decode_failures_total")
            .all(|s| s.labels.contains_key("reason") && s.labels["reason"] != "unknown")
    );

    support::signal(child.id(), "TERM");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let log = log.join().unwrap();

    // JSON logs: every line an object; every line of a flush names the offsets it archives.
    let logged: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let committed: Vec<&serde_json::Value> = logged
        .iter()
        .filter(|l| l["message"] == "committed flush")
        .collect();
    assert!(!committed.is_empty(), "{logged:#?}");
    for line in committed {
        assert_eq!(line["span"]["name"], "flush", "{line}");
        let offsets = line["span"]["offsets"].as_str().unwrap();
        assert!(
            offsets
                .split(' ')
                .all(|o| o.starts_with(&prefix) && o.contains("]:")),
            "{offsets}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_the_table_cannot_be_opened_or_no_broker_answers() {
    // No broker listens on this port: the table opens, the broker condition stays unmet.
    let dead = free_addr();
    let backend = Backend::local();
    let ops = free_addr();
    let mut child = support::archiver(&backend)
        .args(["run", "--brokers", &dead.to_string(), "--topics", "t"])
        .args(["--table-uri", &backend.table_uri()])
        .args(["--metrics-listen", &ops.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (code, body) = tokio::task::spawn_blocking(move || get_when_up(ops, "/ready"))
            .await
            .unwrap();
        assert_eq!(code, 503, "{body}");
        if body.contains("table: ok") {
            break body;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.contains("broker: not ready"), "{body}");
    assert_eq!(http_get(ops, "/health").unwrap().0, 200);
    support::signal(child.id(), "KILL");
    let _ = child.wait();

    // The table's store refuses connections: not ready, and saying why, while it retries.
    let ops = free_addr();
    let mut child = support::archiver(&backend)
        .args(["run", "--brokers", &dead.to_string(), "--topics", "t"])
        .args(["--table-uri", "s3://nowhere/order_events"])
        .env("AWS_ENDPOINT_URL", format!("http://{dead}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
        .args(["--metrics-listen", &ops.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (code, body) = tokio::task::spawn_blocking(move || get_when_up(ops, "/ready"))
        .await
        .unwrap();
    assert_eq!(code, 503);
    assert!(
        body.contains("table: not ready: opening the archive table"),
        "{body}"
    );
    support::signal(child.id(), "KILL");
    let _ = child.wait();
}
