//! `[maintenance] enabled = true`: `run` compacts, rolls up, checkpoints and vacuums on its
//! schedule while it keeps archiving. Records produced during the maintenance runs land exactly
//! once, compaction lowers the file count, the rollup covers the closed dates, and a stop ends the
//! task with the archiver.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::{Backend, Services};

fn runs_done(log: &str) -> usize {
    log.matches("background maintenance done").count()
}

/// `(files before, files after)` of every compaction the log reports.
fn compactions(log: &str) -> Vec<(u64, u64)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.split("files ").nth(1)?;
            let (before, rest) = rest.split_once(" -> ")?;
            let after = rest.split(',').next()?;
            Some((before.trim().parse().ok()?, after.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_maintains_the_table_on_its_schedule_while_archiving() {
    let services = Services::from_env();
    let backend = Backend::local();
    let prefix = format!("{}.", support::unique("bgmaint"));
    let settings = support::sample_settings(&prefix, 11, 8_000, 0.01);
    let mut produced = support::produce_stream(&services, &settings, 0, 4_000).await;
    let topics_owned = settings.topics.clone();
    let topics = topics_owned.all();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("archiver.toml");
    let quoted: Vec<String> = topics.iter().map(|t| format!("\"{t}\"")).collect();
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup = \"{}\"\ntopics = [{}]\n\
             [archive]\ntable_uri = \"{}\"\n\
             [flush]\nmax_rows = 300\ninterval_ms = 200\n\
             [maintenance]\nenabled = true\ninterval_secs = 3\nclosed_after_days = 0\n",
            services.brokers,
            support::unique("g"),
            quoted.join(", "),
            backend.table_uri()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("archiver.log");
    let mut child = support::archiver(&backend)
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // More records while the schedule runs: ingestion and compaction commit concurrently.
    let deadline = Instant::now() + Duration::from_secs(120);
    while runs_done(&log()) == 0 {
        assert!(Instant::now() < deadline, "no maintenance run:\n{}", log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    produced.extend(support::produce_stream(&services, &settings, 4_000, 4_000).await);
    let expected: BTreeSet<_> = produced.by_coordinate().into_keys().collect();
    // Wait until everything is archived, then for one more maintenance run after that.
    loop {
        assert!(
            Instant::now() < deadline,
            "not caught up with maintenance:\n{}",
            log()
        );
        if support::read_archive(&backend).await.len() == expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let runs = runs_done(&log());
    while runs_done(&log()) == runs {
        assert!(
            Instant::now() < deadline,
            "no run after catch-up:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    support::signal(child.id(), "TERM");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = log();
    assert!(status.success(), "{status}:\n{log}");
    let compacted = compactions(&log);
    assert!(
        compacted.iter().any(|(before, after)| after < before),
        "some run lowered the file count: {compacted:?}\n{log}"
    );
    assert!(log.contains("checkpoint  at version"), "{log}");

    let rows = support::read_archive(&backend).await;
    let archived: BTreeSet<_> = rows.keys().cloned().collect();
    assert_eq!(archived, expected);
    let verified = support::archiver(&backend)
        .args(["verify", "--table-uri", &backend.table_uri()])
        .output()
        .unwrap();
    support::assert_success("verify after background maintenance", &verified);

    // The rollup holds every closed date (all but today's) as the last run left them.
    assert!(log.contains("closed dates computed"), "{log}");
    let status = support::status_json(&backend);
    let rollup = &status["rollup"];
    let today = chrono::Utc::now().date_naive().to_string();
    let dates = rollup["dates"].as_u64().unwrap();
    assert!(dates > 0, "{rollup}");
    assert!(
        rollup["last_date"].as_str().unwrap() < today.as_str(),
        "{rollup}"
    );
    assert_eq!(rollup["unreadable"], serde_json::Value::Null, "{rollup}");
}
