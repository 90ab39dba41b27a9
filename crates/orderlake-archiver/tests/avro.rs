//! Avro through a schema registry: order events produced by confluent-kafka's own
//! `AvroSerializer` (two schema versions of the subject, keys in Avro, ids in the value prefix and
//! GUIDs in headers) are archived exactly once, byte for byte, with typed columns equal to what
//! was produced; hostile framed values are archived raw with their reasons. The registry is a
//! fixture serving the registry's documented endpoints (tests/python/schema_registry.py).

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use orderlake_archiver::commands::generate::ensure_topics;
use support::{
    Backend, Services, archive_until_caught_up, assert_success, output_within, read_archive, repo,
    unique,
};

/// The registry fixture on loopback, stopped when dropped. Its schemas are kept in a state file,
/// so stopping it and starting it again on the same port is an outage, not a new registry.
struct Registry {
    child: Option<Child>,
    /// `user:password` the fixture demands, when it demands one.
    auth: Option<String>,
    /// More of the fixture's settings (TLS, a bearer token), from [`Registry::secure`] on.
    env: Vec<(&'static str, String)>,
    python: PathBuf,
    port: u16,
    url: String,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start(python: &std::path::Path) -> Self {
        Self::start_with(python, None)
    }

    fn start_with(python: &std::path::Path, auth: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Self {
            child: None,
            auth: auth.map(str::to_owned),
            env: Vec::new(),
            python: python.to_path_buf(),
            port: 0,
            url: String::new(),
            dir,
        };
        registry.up();
        registry.url = format!("http://127.0.0.1:{}", registry.port);
        registry
    }

    /// Starts the fixture (again, on its port once it has one).
    fn up(&mut self) {
        let port_file = self.dir.path().join("port");
        let _ = std::fs::remove_file(&port_file);
        let mut command = Command::new(&self.python);
        command
            .arg(repo("tests/python/schema_registry.py"))
            .arg(&port_file)
            .arg(self.dir.path().join("state.json"));
        if self.port != 0 {
            command.arg(self.port.to_string());
        }
        if let Some(auth) = &self.auth {
            command.env("REGISTRY_BASIC_AUTH", auth);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        self.child = Some(command.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        self.port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                break port.trim().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "the registry fixture starts");
            std::thread::sleep(Duration::from_millis(50));
        };
    }

    /// Restarts the registry, with the schemas it holds, on its port as HTTPS only (a test CA,
    /// [`Registry::ca_file`]) demanding `token` as a bearer token.
    fn secure(&mut self, token: &str) {
        self.down();
        let tls = self.dir.path().join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        self.env = vec![
            ("REGISTRY_TLS_DIR", tls.display().to_string()),
            ("REGISTRY_BEARER_TOKEN", token.to_owned()),
        ];
        self.up();
        self.url = format!("https://127.0.0.1:{}", self.port);
    }

    /// The CA of the HTTPS registry.
    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.crt")
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.down();
    }
}

/// Produces `count` Avro order events to `topic` (2 partitions); the lines avro_produce.py
/// prints (the hostile ones included).
async fn produce_avro(
    services: &Services,
    registry: &Registry,
    topic: &str,
    count: usize,
) -> Vec<serde_json::Value> {
    ensure_topics(&services.brokers, &[topic], 2).await.unwrap();
    let mut producer = Command::new(&services.python);
    producer.arg(repo("tests/python/avro_produce.py")).args([
        &services.brokers,
        &registry.url,
        topic,
        &count.to_string(),
    ]);
    if let Some(auth) = &registry.auth {
        producer.env("REGISTRY_BASIC_AUTH", auth);
    }
    let out = producer.output().unwrap();
    assert_success("avro_produce.py", &out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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
    let registry = Registry::start_with(&services.python, Some("orderlake:s3cr3t pass"));
    let topic = format!("{}-orders", unique("avro"));
    let produced = produce_avro(&services, &registry, &topic, 60).await;
    assert_eq!(produced.len(), 65);
    assert!(
        produced
            .iter()
            .any(|p| p["headers"].as_array().is_some_and(|h| !h.is_empty())),
        "some records carry their schema GUID in a header"
    );

    // The registry demands credentials: the archiver's come from its config file.
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("archiver.toml");
    std::fs::write(
        &config,
        "[schema_registry]\nusername = \"orderlake\"\npassword = \"s3cr3t pass\"\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let backend = Backend::local();
    let child = archive_until_caught_up(
        &backend,
        &services,
        &unique("avro-group"),
        &[&topic],
        &["--config", &config, "--schema-registry-url", &registry.url],
    );
    let out = output_within(child, Duration::from_secs(120), "archiver");
    assert_success("archiver", &out);

    assert_matches_produced(&read_archive(&backend).await, &topic, &produced);

    // Replay into another topic, checking each schema resolves in the target's registry first:
    // every record arrives with its bytes (framing and schema ids included).
    let replay = |to: &str, registry_url: &str| {
        support::archiver(&backend)
            .args(["replay", "--quiet", "--table-uri", &backend.table_uri()])
            .args([
                "--brokers",
                &services.brokers,
                "--to-topic",
                to,
                "--create-topic",
                "2",
            ])
            .args([
                "--checkpoint",
                &format!("{}/{to}.json", config_dir.path().display()),
            ])
            .args(["--config", &config, "--schema-registry-url", registry_url])
            .output()
            .unwrap()
    };
    let target = format!("{topic}-replayed");
    assert_success("replay", &replay(&target, &registry.url));
    let mut replayed: Vec<Option<Vec<u8>>> = support::consume_all(&services.brokers, &target, 2)
        .into_values()
        .flatten()
        .map(|seen| seen.value)
        .collect();
    let mut archived: Vec<Option<Vec<u8>>> = produced.iter().map(|p| hex(&p["value"])).collect();
    replayed.sort();
    archived.sort();
    assert_eq!(replayed, archived, "replayed byte for byte");

    // A registry that holds none of the schemas: the replay stops before the first framed record.
    let empty = Registry::start(&services.python);
    let out = replay(&format!("{topic}-elsewhere"), &empty.url);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not resolve in the target's schema registry"),
        "{stderr}"
    );
}

/// Every produced record once, byte for byte, with the typed columns it was produced with (the
/// hostile ones raw, with their reasons).
fn assert_matches_produced(
    rows: &BTreeMap<(String, i32, i64), support::ArchivedRow>,
    topic: &str,
    produced: &[serde_json::Value],
) {
    let ours: Vec<_> = rows.keys().filter(|(t, _, _)| t == topic).collect();
    assert_eq!(ours.len(), produced.len(), "every record once");
    for p in produced {
        let coord = (
            topic.to_owned(),
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

/// A config file whose registry gives up on a schema after `wait_secs`.
fn registry_config(dir: &tempfile::TempDir, wait_secs: u64) -> String {
    let path = dir.path().join("archiver.toml");
    std::fs::write(
        &path,
        format!("[schema_registry]\nunavailable_wait_secs = {wait_secs}\n"),
    )
    .unwrap();
    path.display().to_string()
}

/// The registry over HTTPS with a CA of its own (`ca_file`) and a bearer token: the archiver
/// fetches the schemas through both and archives every record decoded; with a wrong token the
/// registry refuses it, and the records are archived raw with that refusal once the wait is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_over_tls_with_a_bearer_token() {
    let services = Services::from_env();
    let mut registry = Registry::start(&services.python);
    let topic = format!("{}-orders", unique("tls"));
    let produced = produce_avro(&services, &registry, &topic, 10).await;
    registry.secure("token-of-the-archiver");
    for (token, accepted) in [("token-of-the-archiver", true), ("a-wrong-token", false)] {
        let backend = Backend::local();
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("archiver.toml");
        std::fs::write(
            &config,
            format!(
                "[schema_registry]\nurls = [\"{}\"]\nbearer_token = \"{token}\"\n\
                 ca_file = \"{}\"\nunavailable_wait_secs = 3\n",
                registry.url,
                registry.ca_file().display()
            ),
        )
        .unwrap();
        let child = archive_until_caught_up(
            &backend,
            &services,
            &unique("tls-group"),
            &[&topic],
            &["--config", config.to_str().unwrap()],
        );
        let out = output_within(child, Duration::from_secs(120), "archiver");
        assert_success("archiver", &out);
        let rows = read_archive(&backend).await;
        if accepted {
            assert_matches_produced(&rows, &topic, &produced);
            continue;
        }
        let refused = rows
            .values()
            .filter(|r| {
                r.decode_error.as_deref().is_some_and(|e| {
                    e.starts_with("schema registry unavailable") && e.contains("401")
                })
            })
            .count();
        let framed = produced.iter().filter(|p| p["hostile"].is_null()).count();
        assert_eq!(rows.len(), produced.len(), "every record once");
        assert!(refused >= framed, "{refused} of {framed} refused: {rows:?}");
    }
}

/// Rows of `topic` in a `status --json` report.
fn rows_of(status: &serde_json::Value, topic: &str) -> i64 {
    status["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["topic"] == topic)
                .map(|p| p["rows"].as_i64().unwrap())
                .sum()
        })
        .unwrap_or(0)
}

/// Waits until `done` holds for the archive's status, failing with `what` after `limit`.
async fn wait_for_status(
    backend: &Backend,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        if support::status_json_if_any(backend).is_some_and(|s| done(&s)) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The registry unreachable for 30 s mid-run (the archiver reaches it through a proxy that is
/// cut, while producers register their schemas directly): the Avro records produced meanwhile
/// need schemas the archiver has never fetched, so their partitions wait while the JSON topics
/// keep flowing; once the registry is reachable again every Avro record is archived decoded,
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_holds_only_the_partitions_that_need_it() {
    const OUTAGE: Duration = Duration::from_secs(30);
    let services = Services::from_env();
    let registry = Registry::start(&services.python);
    let proxy = support::private::Proxy::start(registry.port).await;
    let topic = format!("{}-orders", unique("outage"));
    ensure_topics(&services.brokers, &[&topic], 2)
        .await
        .unwrap();
    let settings = support::sample_settings(&unique("outage-json"), 7, 300, 0.0);
    let mut json = support::produce_stream(&services, &settings, 0, 150).await;

    let backend = Backend::local();
    let config_dir = tempfile::tempdir().unwrap();
    let config = registry_config(&config_dir, 600);
    let mut topics = settings.topics.all().to_vec();
    topics.push(&topic);
    let child = support::archiver_run(&backend, &services, &unique("outage-group"), &topics)
        .args(["--config", &config, "--flush-interval-ms", "300"])
        .args([
            "--schema-registry-url",
            &format!("http://127.0.0.1:{}", proxy.port),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let json_topics = settings.topics.all();
    let json_rows =
        |s: &serde_json::Value| -> i64 { json_topics.iter().map(|t| rows_of(s, t)).sum() };
    wait_for_status(
        &backend,
        Duration::from_secs(60),
        "the first JSON records",
        |s| json_rows(s) == 150,
    )
    .await;

    // Mid-run, the registry becomes unreachable for the archiver; new schemas and records arrive.
    proxy.down();
    let outage_started = Instant::now();
    let produced = produce_avro(&services, &registry, &topic, 20).await;
    json.extend(support::produce_stream(&services, &settings, 150, 150).await);
    wait_for_status(
        &backend,
        Duration::from_secs(60),
        "the JSON topics are archived during the outage",
        |s| {
            assert_eq!(
                rows_of(s, &topic),
                0,
                "the Avro records wait for their schemas"
            );
            json_rows(s) == 300
        },
    )
    .await;
    tokio::time::sleep(OUTAGE.saturating_sub(outage_started.elapsed())).await;
    let rows = read_archive(&backend).await;
    assert_eq!(
        rows.keys().filter(|(t, _, _)| *t == topic).count(),
        0,
        "still waiting after {:?}, nothing archived raw",
        outage_started.elapsed()
    );

    proxy.up().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = read_archive(&backend).await;
        if rows.keys().filter(|(t, _, _)| *t == topic).count() == produced.len() {
            assert_matches_produced(&rows, &topic, &produced);
            let json_coords = json.by_coordinate();
            assert!(json_coords.keys().all(|c| rows.contains_key(c)));
            assert_eq!(
                rows.len(),
                json_coords.len() + produced.len(),
                "nothing twice"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Avro records are archived once the registry is back"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    support::signal(pid, "TERM");
    let out = output_within(child, Duration::from_secs(60), "archiver");
    assert_success("archiver", &out);
}

/// The registry down for longer than the archiver waits: the Avro records are archived raw with
/// the transient reason, and `maintain --redecode` decodes them once it is back, in place, with
/// every envelope byte as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redecode_fills_rows_archived_during_a_long_outage() {
    let services = Services::from_env();
    let mut registry = Registry::start(&services.python);
    let topic = format!("{}-orders", unique("redecode"));
    let produced = produce_avro(&services, &registry, &topic, 30).await;
    registry.down();

    let backend = Backend::local();
    let config_dir = tempfile::tempdir().unwrap();
    let config = registry_config(&config_dir, 2);
    let child = archive_until_caught_up(
        &backend,
        &services,
        &unique("redecode-group"),
        &[&topic],
        &["--config", &config, "--schema-registry-url", &registry.url],
    );
    assert_success(
        "archiver",
        &output_within(child, Duration::from_secs(120), "archiver"),
    );
    let before = read_archive(&backend).await;
    assert_eq!(before.len(), produced.len());
    let waiting = before
        .values()
        .filter(|r| {
            r.decode_error
                .as_deref()
                .is_some_and(|e| e.starts_with("schema registry unavailable"))
        })
        .count();
    // All but the record too short to name a schema: the unknown id and the cut record cannot be
    // told from good ones while the registry is away.
    assert_eq!(
        waiting, 34,
        "every framed record waited, then went through raw"
    );

    registry.up();
    let out = support::archiver(&backend)
        .args([
            "maintain",
            "--redecode",
            "--quiet",
            "--table-uri",
            &backend.table_uri(),
        ])
        .args(["--config", &config, "--schema-registry-url", &registry.url])
        .output()
        .unwrap();
    let summary = assert_success("maintain --redecode", &out);
    assert!(summary.contains("34 rows decoded"), "{summary}");
    let after = read_archive(&backend).await;
    assert_matches_produced(&after, &topic, &produced);
    for (coord, row) in &before {
        let now = &after[coord];
        assert_eq!(
            (&now.key, &now.value, &now.headers, now.timestamp_ms),
            (&row.key, &row.value, &row.headers, row.timestamp_ms),
            "{coord:?}: the envelope is unchanged"
        );
    }
    let verify = support::archiver(&backend)
        .args(["verify", "--table-uri", &backend.table_uri()])
        .output()
        .unwrap();
    let report = assert_success("verify", &verify);
    assert!(report.contains("OK:"), "{report}");
}
