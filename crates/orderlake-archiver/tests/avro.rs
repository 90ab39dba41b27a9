//! Avro through a schema registry: order events produced by confluent-kafka's own
//! `AvroSerializer` (two schema versions of the subject, keys in Avro, ids in the value prefix and
//! GUIDs in headers) are archived exactly once, byte for byte, with typed columns equal to what
//! was produced; hostile framed values are archived raw with their reasons. The registry is a
//! fixture serving the registry's documented endpoints (tests/python/schema_registry.py).

mod support;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use orderlake_archiver::commands::generate::ensure_topics;
use support::{
    Backend, Services, archive_until_caught_up, assert_success, output_within, read_archive, unique,
};

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// The registry fixture on a free loopback port, stopped when dropped.
struct Registry {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(python: &PathBuf) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let child = Command::new(python)
            .arg(repo("tests/python/schema_registry.py"))
            .arg(&port_file)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                break port;
            }
            assert!(Instant::now() < deadline, "the registry fixture starts");
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            url: format!("http://127.0.0.1:{}", port.trim()),
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(s: &serde_json::Value) -> Option<Vec<u8>> {
    let s = s.as_str()?;
    Some(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect(),
    )
}

/// A decimal's value in hundredths, however many fraction digits it is written with.
fn cents(s: &str) -> i128 {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let fraction = format!("{fraction:0<2}");
    assert!(fraction[2..].bytes().all(|b| b == b'0'), "{s}");
    let sign = if whole.starts_with('-') { -1 } else { 1 };
    whole.parse::<i128>().unwrap() * 100 + sign * fraction[..2].parse::<i128>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_records_are_archived_exactly_once_with_typed_columns() {
    let services = Services::from_env();
    let registry = Registry::start(&services.python);
    let topic = format!("{}-orders", unique("avro"));
    ensure_topics(&services.brokers, &[&topic], 2)
        .await
        .unwrap();
    let out = Command::new(&services.python)
        .arg(repo("tests/python/avro_produce.py"))
        .args([&services.brokers, &registry.url, &topic, "60"])
        .output()
        .unwrap();
    let produced: Vec<serde_json::Value> = assert_success("avro_produce.py", &out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(produced.len(), 63);
    assert!(
        produced
            .iter()
            .any(|p| p["headers"].as_array().is_some_and(|h| !h.is_empty())),
        "some records carry their schema GUID in a header"
    );

    let backend = Backend::local();
    let child = archive_until_caught_up(
        &backend,
        &services,
        &unique("avro-group"),
        &[&topic],
        &["--schema-registry-url", &registry.url],
    );
    let out = output_within(child, Duration::from_secs(120), "archiver");
    assert_success("archiver", &out);

    let rows = read_archive(&backend).await;
    assert_eq!(rows.len(), produced.len(), "every record once");
    for p in &produced {
        let coord = (
            topic.clone(),
            i32::try_from(p["partition"].as_i64().unwrap()).unwrap(),
            p["offset"].as_i64().unwrap(),
        );
        let row = &rows[&coord];
        assert_eq!(
            row.value,
            hex(&p["value"]),
            "{coord:?}: value bytes as produced"
        );
        assert_eq!(row.key, hex(&p["key"]), "{coord:?}: key bytes as produced");
        if let Some(reason) = p["hostile"].as_str() {
            let error = row.decode_error.as_deref().unwrap_or_default();
            assert!(
                error.contains(reason),
                "{coord:?}: {error:?} names {reason}"
            );
            assert_eq!(row.order_id, None);
            continue;
        }
        assert_eq!(row.decode_error, None, "{coord:?} ({})", p["version"]);
        assert_eq!(row.order_id.as_deref(), p["order_id"].as_str(), "{coord:?}");
        assert_eq!(row.customer_id.as_deref(), p["customer_id"].as_str());
        assert_eq!(row.status.as_deref(), p["status"].as_str());
        assert_eq!(
            row.total_amount.as_deref().map(cents),
            Some(cents(p["total_amount"].as_str().unwrap())),
            "{coord:?}: decimals exact"
        );
        assert_eq!(row.event_time_ms, p["event_time_ms"].as_i64(), "{coord:?}");
        assert_eq!(row.items, Some(1));
    }
}
