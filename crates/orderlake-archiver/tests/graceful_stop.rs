//! SIGTERM while archiving: the archiver stops polling, flushes and commits what it buffered, and
//! exits 0 within its grace period; nothing is lost or doubled, as a catch-up run then shows.

mod support;

use std::time::{Duration, Instant};

use support::{Backend, Services};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_commits_and_exits_zero() {
    let services = Services::from_env();
    let backend = Backend::local();
    let prefix = format!("{}.", support::unique("stop"));
    let settings = support::sample_settings(&prefix, 5, 20_000, 0.02);
    let produced = support::produce_stream(&services, &settings, 0, 20_000).await;
    let topics_owned = settings.topics.clone();
    let topics = topics_owned.all();
    let group = support::unique("g");
    // A flush interval far longer than the test: only the stop can make it commit.
    let child = support::archiver_run(&backend, &services, &group, &topics)
        .args([
            "--flush-interval-ms",
            "600000",
            "--flush-max-rows",
            "10000000",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let it read for a while, then ask it to stop.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let signalled = Instant::now();
    support::signal(child.id(), "TERM");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = support::assert_success("archiver after SIGTERM", &out);
    assert!(
        signalled.elapsed() < Duration::from_secs(30),
        "exited within the grace period"
    );
    let archived: u64 = stdout.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        archived > 0,
        "it had read records before the stop and committed them: {stdout}"
    );
    assert_eq!(
        support::read_archive(&backend).await.len() as u64,
        archived,
        "what it reported is what the table holds"
    );

    // `verify --brokers` tells how far behind the archive is: exactly what was not archived.
    let verify = support::archiver(&backend)
        .args(["verify", "--json", "--table-uri", &backend.table_uri()])
        .args(["--brokers", &services.brokers])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    let behind: i64 = report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let end = p["broker_end_offset"].as_i64().expect("end offset read");
            end - p["ledger_offset"].as_i64().map_or(0, |o| o + 1)
        })
        .sum();
    let unseen: i64 = produced
        .by_coordinate()
        .keys()
        .filter(|(t, p, _)| {
            !report["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["topic"] == t.as_str() && r["partition"] == *p)
        })
        .count() as i64;
    assert_eq!(
        behind + unseen,
        produced.records.len() as i64 - archived as i64,
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // A catch-up run completes the archive: every record exactly once.
    let out = support::output_within(
        support::archive_until_caught_up(&backend, &services, &group, &topics, &[]),
        Duration::from_secs(300),
        "catch-up run",
    );
    support::assert_success("catch-up run", &out);
    let rows = support::read_archive(&backend).await;
    let expected = produced.by_coordinate();
    assert_eq!(rows.len(), expected.len());
    assert!(expected.keys().all(|c| rows.contains_key(c)));
}
