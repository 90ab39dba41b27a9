//! Queries on a Ballista cluster (issue 16): a scheduler and executors built by this workspace,
//! against the same engine running locally. Every query of the benchmark suite and every view
//! returns the same rows either way, and queries that leave the server really run on the cluster.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::util::display::{ArrayFormatter, FormatOptions};
use ballista_core::serde::protobuf::GetJobStatusParams;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use futures::TryStreamExt as _;
use orderlake_ingest::SourceRecord;
use orderlake_query::cluster::{ClusterSettings, ClusterTls};
use orderlake_query::{ColdQueryEngine, EngineSettings, QueryLimits, QueryRequest};
use orderlake_samples::{OrderEventGenerator, RecordKind, SampleSettings};
use orderlake_server::cluster;

/// Sample events over a year (many dates and files), with a busy and a typical customer and an
/// order id for the suite's placeholders.
fn sample(events: u64) -> (Vec<SourceRecord>, HashMap<&'static str, String>) {
    let settings = SampleSettings {
        seed: 16,
        start: chrono::Utc::now() - chrono::Duration::days(400),
        span: chrono::Duration::days(365),
        customers: 200,
        expected_events: events,
        malformed_share: 0.02,
        ..SampleSettings::default()
    };
    let mut per_customer: HashMap<String, usize> = HashMap::new();
    let mut order = None;
    let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
    let records = OrderEventGenerator::new(settings)
        .take(events as usize)
        .map(|r| {
            if let RecordKind::Valid(o) = &r.kind {
                *per_customer.entry(o.customer_id.clone()).or_default() += 1;
                order.get_or_insert_with(|| o.order_id.clone());
            }
            support::source_record(r, &mut offsets)
        })
        .collect();
    let mut customers: Vec<_> = per_customer.into_iter().collect();
    customers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let year = (chrono::Utc::now() - chrono::Duration::days(200))
        .format("%Y")
        .to_string();
    let next_year = (year.parse::<i32>().unwrap() + 1).to_string();
    let placeholders = HashMap::from([
        ("order_id", order.expect("a valid order")),
        ("customer_id", customers[0].0.clone()),
        (
            "typical_customer_id",
            customers[customers.len() / 2].0.clone(),
        ),
        ("year", year),
        ("next_year", next_year),
    ]);
    (records, placeholders)
}

/// The suite's queries (`bench/queries.toml`) with their placeholders filled, then one query per
/// view.
fn queries(placeholders: &HashMap<&str, String>, views: &[String]) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Suite {
        query: Vec<Query>,
    }
    #[derive(serde::Deserialize)]
    struct Query {
        name: String,
        sql: String,
    }
    let text = std::fs::read_to_string(support::repo_path("bench/queries.toml")).unwrap();
    let suite: Suite = toml::from_str(&text).unwrap();
    let mut out: Vec<(String, String)> = suite
        .query
        .into_iter()
        .map(|q| {
            let mut sql = q.sql;
            for (name, value) in placeholders {
                sql = sql.replace(&format!("{{{name}}}"), value);
            }
            (q.name, sql)
        })
        .collect();
    out.extend(
        views
            .iter()
            .map(|v| (format!("view {v}"), format!("SELECT * FROM {v}"))),
    );
    out
}

/// The rows of `sql` as text, sorted (a cluster returns ties and unordered results in another
/// order).
async fn rows(engine: &Arc<ColdQueryEngine>, sql: &str) -> Result<Vec<String>, String> {
    let stream = engine
        .execute(QueryRequest {
            id: orderlake_query::engine::new_query_id(),
            sql: sql.to_owned(),
            params: Vec::new(),
            scope: engine.default_scope(),
            user: "test".into(),
            source: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    let batches: Vec<_> = stream.try_collect().await.map_err(|e| e.to_string())?;
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in &batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            out.push(cells.join("|"));
        }
    }
    out.sort();
    Ok(out)
}

async fn engine(dir: &Path, cluster: Option<ClusterSettings>) -> Arc<ColdQueryEngine> {
    let settings = EngineSettings {
        views_dir: Some(support::repo_path("sql")),
        target_partitions: 4,
        cluster,
        ..EngineSettings::default()
    };
    Arc::new(
        ColdQueryEngine::open(support::table_location(dir), settings)
            .await
            .unwrap(),
    )
}

/// `sql` on `distributed` returns the rows it returns on `local`, from one job the cluster ran
/// (not one the server answered after the cluster failed it).
async fn assert_the_cluster_answers_as_locally(
    local: &Arc<ColdQueryEngine>,
    distributed: &Arc<ColdQueryEngine>,
    sql: &str,
) {
    let expected = rows(local, sql).await.unwrap();
    let (jobs, fallbacks) = distributed.cluster_jobs();
    let got = tokio::time::timeout(Duration::from_secs(120), rows(distributed, sql))
        .await
        .expect("an answer within 120 s")
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(
        distributed.cluster_jobs(),
        (jobs + 1, fallbacks),
        "{sql} ran on the cluster"
    );
    assert_eq!(got, expected, "{sql}");
}

/// A free loopback port (bound, then released for the executor to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standalone_cluster_answers_every_query_as_the_local_engine_does() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let (records, placeholders) = sample(20_000);
    support::archive(&archive, &records).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheduler = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(cluster::run_scheduler(
        listener,
        support::table_location(&archive),
        None,
    ));
    cluster::wait_for_scheduler(&scheduler, None, Duration::from_secs(10))
        .await
        .unwrap();
    let executor = cluster::ExecutorSettings {
        scheduler: scheduler.clone(),
        listen: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        external_host: "127.0.0.1".into(),
        grpc_port: free_port(),
        tasks: 2,
        work_dir: Some(dir.path().join("shuffle")),
        tls: None,
        table: support::table_location(&archive),
    };
    tokio::spawn(cluster::run_executor(executor));

    let local = engine(&archive, None).await;
    // The same archive through the cluster, for plans listing at least `local_below_bytes`.
    let on_cluster_from = |local_below_bytes| {
        engine(
            &archive,
            Some(ClusterSettings {
                scheduler: scheduler.clone(),
                local_below_bytes,
                tls: None,
            }),
        )
    };
    let distributed = on_cluster_from(0).await;
    let views: Vec<String> = local.views().iter().map(|v| v.name.clone()).collect();
    let mut on_cluster = Vec::new();
    let mut answered_here = Vec::new();
    let mut failures = Vec::new();
    for (name, sql) in queries(&placeholders, &views) {
        let expected = rows(&local, &sql)
            .await
            .unwrap_or_else(|e| panic!("{name} (local): {e}"));
        let (jobs, fallbacks) = distributed.cluster_jobs();
        let got = tokio::time::timeout(Duration::from_secs(120), rows(&distributed, &sql))
            .await
            .unwrap_or_else(|_| Err("no answer within 120 s".into()));
        let (jobs_after, fallbacks_after) = distributed.cluster_jobs();
        if fallbacks_after > fallbacks {
            answered_here.push(name.clone());
        } else if jobs_after > jobs {
            on_cluster.push(name.clone());
        }
        match got {
            Ok(got) if got == expected => {}
            Ok(got) => failures.push(format!(
                "{name}: {} rows on the cluster, {} locally; first difference: {:?}",
                got.len(),
                expected.len(),
                got.iter()
                    .zip(&expected)
                    .find(|(a, b)| a != b)
                    .map(|(a, b)| format!("{a} / {b}"))
            )),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("on the cluster: {on_cluster:?}\nfailed there, answered here: {answered_here:?}");

    // With any threshold above zero, key lookups stay here (they read pages, not the files they
    // list), through a view's join too (its other scan reads the files of the lookup's keys), and
    // scans of the whole table leave.
    let placed = on_cluster_from(1).await;
    let suite = queries(&placeholders, &[]);
    for (name, to_cluster) in [
        ("point lookup by order id", false),
        ("lookup by customer id", false),
        ("a customer's purchase summary (view)", false),
        ("full-scan aggregate", true),
    ] {
        let sql = &suite
            .iter()
            .find(|(n, _)| n == name)
            .expect("in the suite")
            .1;
        let (jobs, _) = placed.cluster_jobs();
        rows(&placed, sql).await.unwrap();
        assert_eq!(placed.cluster_jobs().0 > jobs, to_cluster, "{name}");
    }
    for name in [
        "full-scan aggregate",
        "monthly revenue",
        "status funnel",
        "top 3 SKUs per month",
        // Grouped by order: planned for the cluster without the engine's own partial
        // aggregation by runs, which executors do not know.
        "time-to-deliver percentiles",
        "view orders",
    ] {
        assert!(
            on_cluster.iter().any(|n| n == name),
            "{name} ran on the cluster (on the cluster: {on_cluster:?})"
        );
    }

    // A query past its time limit on the cluster fails with the limit's error, the scheduler
    // stops its job (it confirms the cancel), and the cluster's slots are free for the next one.
    let limited = Arc::new(
        ColdQueryEngine::open(
            support::table_location(&archive),
            EngineSettings {
                views_dir: Some(support::repo_path("sql")),
                target_partitions: 4,
                cluster: Some(ClusterSettings {
                    scheduler: scheduler.clone(),
                    local_below_bytes: 0,
                    tls: None,
                }),
                limits: QueryLimits {
                    timeout: Duration::from_millis(500),
                    ..QueryLimits::default()
                },
                ..EngineSettings::default()
            },
        )
        .await
        .unwrap(),
    );
    let endless = "SELECT count(*) FROM order_events a CROSS JOIN order_events b \
                   WHERE a.kafka_offset + b.kafka_offset = 7";
    let (jobs, _) = limited.cluster_jobs();
    let err = rows(&limited, endless)
        .await
        .expect_err("past its time limit");
    assert!(err.contains("time limit"), "{err}");
    assert_eq!(limited.cluster_jobs().0, jobs + 1, "it ran on the cluster");
    let cancelled = tokio::time::timeout(Duration::from_secs(30), async {
        while limited.cluster_jobs_cancelled() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(cancelled.is_ok(), "the scheduler confirmed no cancel");
    let full_scan = &suite
        .iter()
        .find(|(n, _)| n == "full-scan aggregate")
        .expect("in the suite")
        .1;
    assert_the_cluster_answers_as_locally(&local, &distributed, full_scan).await;
}

/// The test S3 server's settings (scripts/test.sh starts it), as storage options and as a child
/// process's environment.
fn s3_env() -> Vec<(&'static str, String)> {
    let endpoint = std::env::var("ORDERLAKE_TEST_S3_ENDPOINT")
        .expect("ORDERLAKE_TEST_S3_ENDPOINT names the test S3 server (scripts/test.sh sets it)");
    vec![
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
}

/// A cluster process (`orderlake-server scheduler|executor …`), killed when dropped.
struct Process(std::process::Child);

impl Process {
    fn start(args: &[impl AsRef<std::ffi::OsStr>], env: &[(&'static str, String)]) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_orderlake-server"))
            .args(args)
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("ORDERLAKE_SERVER_CONFIG")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn executor_process(scheduler: &str, table_uri: &str, env: &[(&'static str, String)]) -> Process {
    Process::start(&executor_args(scheduler, table_uri), env)
}

/// An executor's arguments on free loopback ports (the caller may add more).
fn executor_args(scheduler: &str, table_uri: &str) -> Vec<String> {
    let listen = format!("127.0.0.1:{}", free_port());
    let grpc = free_port().to_string();
    [
        "executor",
        "--scheduler",
        scheduler,
        "--listen",
        &listen,
        "--grpc-port",
        &grpc,
        "--tasks",
        "2",
        "--table-uri",
        table_uri,
    ]
    .map(str::to_owned)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduler_and_executor_processes_read_the_archive_on_s3_and_survive_a_lost_executor() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("orderlake_query=debug")
        .try_init();
    let env = s3_env();
    let bucket = std::env::var("ORDERLAKE_TEST_S3_BUCKET").expect("ORDERLAKE_TEST_S3_BUCKET");
    let table_uri = format!(
        "s3://{bucket}/distributed-{}/order_events",
        orderlake_query::engine::new_query_id()
    );
    let options: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let location = orderlake_archive::TableLocation::parse(&table_uri, options).unwrap();
    let (records, _) = sample(20_000);
    support::archive_at(location.clone(), &records).await;

    let scheduler_addr = format!("127.0.0.1:{}", free_port());
    let scheduler = format!("http://{scheduler_addr}");
    let _scheduler = Process::start(
        &[
            "scheduler",
            "--listen",
            &scheduler_addr,
            "--table-uri",
            &table_uri,
        ],
        &env,
    );
    cluster::wait_for_scheduler(&scheduler, None, Duration::from_secs(20))
        .await
        .unwrap();
    let _first = executor_process(&scheduler, &table_uri, &env);
    let mut second = executor_process(&scheduler, &table_uri, &env);

    let open = |cluster| {
        let location = location.clone();
        async move {
            let settings = EngineSettings {
                target_partitions: 4,
                cluster,
                ..EngineSettings::default()
            };
            Arc::new(ColdQueryEngine::open(location, settings).await.unwrap())
        }
    };
    let local = open(None).await;
    let distributed = open(Some(ClusterSettings {
        scheduler: scheduler.clone(),
        local_below_bytes: 0,
        tls: None,
    }))
    .await;
    let checks = [
        // Not the rollup's measures (a distinct count), so not answered from the rollup.
        "SELECT event_date, count(DISTINCT order_id), sum(total_amount) FROM order_events \
         GROUP BY event_date",
        "SELECT status, count(DISTINCT order_id) FROM order_events GROUP BY status",
        "SELECT customer_id, count(*) FROM order_events WHERE status IS NOT NULL \
         GROUP BY customer_id ORDER BY 2 DESC, 1 LIMIT 10",
    ];
    for sql in checks {
        assert_the_cluster_answers_as_locally(&local, &distributed, sql).await;
    }

    // A query long enough to lose an executor in the middle: Ballista runs the lost tasks again,
    // or the job fails and the server answers it itself; either way the answer is right.
    let heavy = "SELECT count(*) FROM order_events a JOIN order_events b \
                 ON a.facility_id = b.facility_id AND a.event_id <> b.event_id";
    let expected = rows(&local, heavy).await.unwrap();
    let running = {
        let distributed = Arc::clone(&distributed);
        tokio::spawn(async move { rows(&distributed, heavy).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = second.0.kill();
    let _ = second.0.wait();
    match tokio::time::timeout(Duration::from_secs(120), running)
        .await
        .expect("the query ends within 120 s of losing an executor")
        .unwrap()
    {
        Ok(got) => assert_eq!(got, expected),
        Err(e) => assert!(e.contains("cluster"), "a clear error: {e}"),
    }
    // The next query runs on the executor left.
    let sql = checks[0];
    let expected = rows(&local, sql).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(120), rows(&distributed, sql))
        .await
        .expect("an answer within 120 s")
        .unwrap();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_trino_door_runs_on_the_cluster_and_the_jobs_are_counted() {
    let (records, _) = sample(5_000);
    // The scheduler's address is needed before the server starts, its archive only after.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheduler = format!("http://{}", listener.local_addr().unwrap());
    let server = support::TestServer::start(&records, |c| {
        c.distributed.scheduler = Some(scheduler.clone());
        c.distributed.local_below_bytes = 0;
        c.trino.listen = Some("127.0.0.1:0".parse().unwrap());
        c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let table = support::table_location(&server.archive_dir);
    tokio::spawn(cluster::run_scheduler(listener, table.clone(), None));
    cluster::wait_for_scheduler(&scheduler, None, Duration::from_secs(10))
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    tokio::spawn(cluster::run_executor(cluster::ExecutorSettings {
        scheduler: scheduler.clone(),
        listen: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        external_host: "127.0.0.1".into(),
        grpc_port: free_port(),
        tasks: 2,
        work_dir: Some(work.path().join("shuffle")),
        tls: None,
        table,
    }));

    let sql = "SELECT status, count(*) AS events, count(DISTINCT order_id) AS orders \
               FROM order_events WHERE status IS NOT NULL GROUP BY status ORDER BY status";
    let local = engine(&server.archive_dir, None).await;
    let expected = rows(&local, sql).await.unwrap();
    assert!(expected.len() > 2, "{expected:?}");

    let trino = server.server.trino_addr().expect("the Trino door listens");
    let mut got = support::trino_rows(trino, &server.service_token, sql)
        .await
        .unwrap_or_else(|e| panic!("the query failed: {e}"));
    got.sort();
    assert_eq!(got, expected, "the Trino door over the cluster");

    let metrics = server
        .server
        .metrics_addr()
        .expect("the metrics listener runs");
    let page = tokio::task::spawn_blocking(move || {
        orderlake_telemetry::http_get(metrics, "/metrics").unwrap()
    })
    .await
    .unwrap();
    let samples = orderlake_telemetry::parse_samples(&page.1);
    let by_cluster = samples
        .iter()
        .find(|s| {
            s.is(
                "orderlake_server_cluster_jobs_total",
                &[("answered_by", "cluster")],
            )
        })
        .map_or(0.0, |s| s.value);
    assert!(
        by_cluster >= 1.0,
        "no job counted as answered by the cluster:\n{page:?}"
    );
}

/// TLS inside the cluster: a scheduler and two executors started with a certificate, the CA that
/// signed it, and an `https://` scheduler address. Every connection is TLS (the server to the
/// scheduler and to the executors, the executors to the scheduler and to each other); the answers
/// are the local engine's and come from the cluster, and a plaintext client reaches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_over_tls_answers_as_the_local_engine_does_and_refuses_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let (records, _) = sample(10_000);
    support::archive(&archive, &records).await;
    let table_uri = archive.display().to_string();
    let (ca, cert, key) = support::test_certificates(dir.path());
    let tls_args: Vec<String> = [
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
        "--ca-cert".into(),
        ca.display().to_string(),
    ]
    .to_vec();

    let port = free_port();
    let scheduler = format!("https://localhost:{port}");
    let mut args: Vec<String> = ["scheduler", "--listen", &format!("127.0.0.1:{port}")]
        .map(str::to_owned)
        .to_vec();
    args.extend(["--table-uri".to_owned(), table_uri.clone()]);
    args.extend(tls_args.iter().cloned());
    let _scheduler = Process::start(&args, &[]);
    let trust = ClusterTls::from_pem_file(&ca).unwrap();
    cluster::wait_for_scheduler(&scheduler, Some(&trust), Duration::from_secs(20))
        .await
        .unwrap();
    // A plaintext client gets no answer to anything.
    let plaintext = format!("http://127.0.0.1:{port}");
    let asked = match tonic::transport::Endpoint::from_shared(plaintext.clone())
        .unwrap()
        .connect()
        .await
    {
        Err(e) => Err(e.to_string()),
        Ok(channel) => SchedulerGrpcClient::new(channel)
            .get_job_status(GetJobStatusParams {
                job_id: "no-such-job".into(),
            })
            .await
            .map_err(|e| e.to_string()),
    };
    assert!(asked.is_err(), "a plaintext client was answered: {asked:?}");

    // An executor given TLS for a plaintext scheduler address is refused at start.
    let mut mismatched = executor_args(&plaintext, &table_uri);
    mismatched.extend(tls_args.iter().cloned());
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_orderlake-server"))
        .args(&mismatched)
        .env_remove("ORDERLAKE_SERVER_CONFIG")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("all or nothing"), "{said}");

    let executors: Vec<Process> = (0..2)
        .map(|_| {
            let mut args = executor_args(&scheduler, &table_uri);
            // The certificate names localhost: the executors announce themselves by that name.
            args.extend(["--external-host".to_owned(), "localhost".to_owned()]);
            args.extend(tls_args.iter().cloned());
            Process::start(&args, &[])
        })
        .collect();

    let local = engine(&archive, None).await;
    let distributed = engine(
        &archive,
        Some(ClusterSettings {
            scheduler: scheduler.clone(),
            local_below_bytes: 0,
            tls: Some(trust),
        }),
    )
    .await;
    for sql in [
        "SELECT status, count(DISTINCT order_id) FROM order_events GROUP BY status",
        "SELECT customer_id, count(*) FROM order_events WHERE status IS NOT NULL \
         GROUP BY customer_id ORDER BY 2 DESC, 1 LIMIT 10",
    ] {
        assert_the_cluster_answers_as_locally(&local, &distributed, sql).await;
    }
    drop(executors);
}
