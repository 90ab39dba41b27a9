//! The archiver against a real Kafka-protocol broker (tansu) and a real S3 server (moto): every
//! produced record is archived exactly once, byte for byte, with the right order columns, as seen
//! by our own reader and by independent ones; re-runs add only new records; two instances in one
//! group still archive each record once. The same scenario runs on a local directory and on S3.

mod support;

use chrono::{DateTime, Utc};
use orderlake_samples::{RecordKind, SampleRecord};
use support::{Backend, Produced, Services};

fn money(units: i128) -> String {
    format!("{}.{:04}", units / 10_000, units % 10_000)
}

fn check_row(coord: &(String, i32, i64), rec: &SampleRecord, row: &support::ArchivedRow) {
    assert_eq!(row.key, rec.key, "{coord:?} key");
    assert_eq!(row.value, rec.value, "{coord:?} value bytes");
    let want_headers: Vec<(String, Option<Vec<u8>>)> = rec
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    assert_eq!(row.headers, want_headers, "{coord:?} headers");
    assert_eq!(
        row.timestamp_ms,
        Some(rec.timestamp_ms),
        "{coord:?} Kafka timestamp"
    );
    match &rec.kind {
        RecordKind::Valid(e) => {
            assert_eq!(
                row.decode_error,
                None,
                "{coord:?} decoded cleanly: {}",
                String::from_utf8_lossy(rec.value.as_deref().unwrap_or_default())
            );
            assert_eq!(
                row.order_id.as_deref(),
                Some(e.order_id.as_str()),
                "{coord:?} order_id"
            );
            assert_eq!(
                row.customer_id.as_deref(),
                Some(e.customer_id.as_str()),
                "{coord:?} customer_id"
            );
            assert_eq!(
                row.status.as_deref(),
                Some(e.status.as_str()),
                "{coord:?} status"
            );
            assert_eq!(
                row.previous_status, e.previous_status,
                "{coord:?} previous_status"
            );
            assert_eq!(
                row.total_amount,
                e.total_amount.map(money),
                "{coord:?} total_amount"
            );
            if e.total_amount.is_some() {
                assert_eq!(row.items, Some(e.items), "{coord:?} line items");
            }
            assert_eq!(
                row.event_time_ms,
                Some(e.event_time_ms),
                "{coord:?} event_time"
            );
            let day = DateTime::<Utc>::from_timestamp_millis(e.event_time_ms)
                .unwrap()
                .date_naive();
            assert_eq!(
                row.event_date,
                day.to_string(),
                "{coord:?} event_date partition"
            );
        }
        RecordKind::Malformed(kind) => {
            assert!(
                row.decode_error.is_some(),
                "{coord:?} ({kind}) must carry a decode error"
            );
        }
        RecordKind::Tombstone => {
            assert!(
                row.decode_error
                    .as_deref()
                    .is_some_and(|e| e.contains("tombstone")),
                "{coord:?}"
            );
        }
    }
}

/// The archive holds exactly the produced records, each once, each intact.
async fn assert_archive_is_exact(backend: &Backend, produced: &Produced) {
    let rows = support::read_archive(backend).await;
    let expected = produced.by_coordinate();
    assert_eq!(
        expected.len(),
        produced.records.len(),
        "producer reported distinct offsets"
    );
    let missing: Vec<_> = expected
        .keys()
        .filter(|c| !rows.contains_key(*c))
        .take(5)
        .collect();
    let extra: Vec<_> = rows
        .keys()
        .filter(|c| !expected.contains_key(*c))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
    assert_eq!(rows.len(), expected.len());
    for (coord, rec) in &expected {
        check_row(coord, rec, &rows[coord]);
    }
}

fn run_until_caught_up(
    backend: &Backend,
    services: &Services,
    group: &str,
    topics: &[&str],
) -> std::process::Child {
    support::archive_until_caught_up(
        backend,
        services,
        group,
        topics,
        &["--flush-max-rows", "7000", "--flush-interval-ms", "2000"],
    )
}

fn archived_count(stdout: &str) -> u64 {
    stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected summary: {stdout}"))
}

async fn scenario(backend: Backend) {
    let services = Services::from_env();
    let prefix = format!("{}.", support::unique("e2e"));
    let settings = support::sample_settings(&prefix, 7, 41_000, 0.03);
    let topics_owned = settings.topics.clone();
    let topics = topics_owned.all();
    let group = support::unique("archiver");

    // 1. 30k mixed events over 3 topics x 4 partitions, archived to the end.
    let mut produced = support::produce_stream(&services, &settings, 0, 30_000).await;
    let malformed = produced
        .records
        .iter()
        .filter(|r| !matches!(r.kind, RecordKind::Valid(_)))
        .count();
    assert!(
        malformed > 500,
        "the stream carries malformed records ({malformed})"
    );
    let out = run_until_caught_up(&backend, &services, &group, &topics)
        .wait_with_output()
        .unwrap();
    let stdout = support::assert_success("first run", &out);
    assert_eq!(archived_count(&stdout), 30_000, "{stdout}");
    assert_archive_is_exact(&backend, &produced).await;

    // 2. Independent readers see the same rows.
    let seen = support::independent_read(&services, &backend);
    let delta = &seen["deltalake_duckdb"];
    assert_eq!(delta["rows"], 30_000, "{seen}");
    assert_eq!(delta["distinct_coordinates"], 30_000, "{seen}");
    let value_bytes: usize = produced
        .records
        .iter()
        .map(|r| r.value.as_ref().map_or(0, Vec::len))
        .sum();
    assert_eq!(delta["value_bytes"], value_bytes, "{seen}");
    assert_eq!(delta["undecoded"], malformed, "{seen}");
    for t in &topics {
        let n = produced.records.iter().filter(|r| r.topic == *t).count();
        assert_eq!(seen["per_topic"][t], n, "{t}: {seen}");
    }
    if let Backend::Local(_) = backend {
        assert_eq!(
            seen["duckdb_parquet"], seen["deltalake_duckdb"],
            "plain Parquet read: {seen}"
        );
        assert!(
            seen["duckdb_parquet_dates"].as_u64().unwrap() > 300,
            "{seen}"
        );
    }

    // 3. More events, another run: only the new ones are added.
    produced.extend(support::produce_stream(&services, &settings, 30_000, 5_000).await);
    let out = run_until_caught_up(&backend, &services, &group, &topics)
        .wait_with_output()
        .unwrap();
    let stdout = support::assert_success("second run", &out);
    assert_eq!(archived_count(&stdout), 5_000, "{stdout}");
    assert_archive_is_exact(&backend, &produced).await;

    // 4. Two instances of one group at once: still exactly once.
    produced.extend(support::produce_stream(&services, &settings, 35_000, 6_000).await);
    let a = run_until_caught_up(&backend, &services, &group, &topics);
    let b = run_until_caught_up(&backend, &services, &group, &topics);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let total = archived_count(&support::assert_success("instance a", &a))
        + archived_count(&support::assert_success("instance b", &b));
    assert_eq!(
        total, 6_000,
        "the two instances archived each new record once between them"
    );
    assert_archive_is_exact(&backend, &produced).await;

    // `status` agrees with what was produced.
    let status = support::status_json(&backend);
    assert_eq!(status["rows"], 41_000, "{status}");
    let parts = status["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 12, "{status}");
    for p in parts {
        let topic = p["topic"].as_str().unwrap();
        let partition = p["partition"].as_i64().unwrap() as i32;
        let last = produced
            .records
            .iter()
            .zip(&produced.coords)
            .filter(|(r, (pp, _))| r.topic == topic && *pp == partition)
            .map(|(_, (_, o))| *o)
            .max()
            .unwrap();
        assert_eq!(p["archived_offset"], last, "{p}");
        assert_eq!(p["last_offset"], last, "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_exactly_once_to_a_local_directory() {
    scenario(Backend::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_exactly_once_to_s3() {
    let services = Services::from_env();
    scenario(Backend::s3(&services, "e2e")).await;
}
