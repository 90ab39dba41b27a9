//! The server and outages of the S3 server holding its archive. Started while S3 cannot be
//! reached, it waits (retrying, logging why, not ready) and serves once S3 answers. When S3
//! hangs under a query (connections open, nothing answered), that query fails `UNAVAILABLE`
//! within its time limit and the next one succeeds once S3 answers again, without a restart.
//! The test S3 server (scripts/test.sh starts it) is reached through a loopback port of the
//! test's own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use orderlake_server::{RunningServer, ServerConfig, auth};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

mod support;
use support::{PASSWORD, USER, fixture_records, has_code, query, rows, run};

/// Storage options that reach the test S3 server through `endpoint`.
fn s3_options(endpoint: &str) -> BTreeMap<String, String> {
    [
        ("aws_endpoint_url", endpoint),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
        ("aws_allow_http", "true"),
        // One retry inside the store: each attempt to open fails fast, so the server's own
        // waiting is what bridges the outage.
        ("max_retries", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Forwards every connection accepted on `listener` to `target`, while `flowing` is true: when
/// it turns false, bytes already read wait and nothing more is passed on, in either direction,
/// until it turns true again (storage that hangs with its connections open).
async fn forward(listener: TcpListener, target: String, flowing: watch::Receiver<bool>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        let flowing = flowing.clone();
        tokio::spawn(async move {
            if let Ok(outbound) = TcpStream::connect(&target).await {
                let (from_client, to_client) = inbound.into_split();
                let (from_server, to_server) = outbound.into_split();
                tokio::join!(
                    pump(from_client, to_server, flowing.clone()),
                    pump(from_server, to_client, flowing),
                );
            }
        });
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut flowing: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if flowing.wait_for(|f| *f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The test S3 server's address (`host:port`).
fn s3_authority() -> String {
    let endpoint = std::env::var("ORDERLAKE_TEST_S3_ENDPOINT")
        .expect("ORDERLAKE_TEST_S3_ENDPOINT names the test S3 server (scripts/test.sh sets it)");
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// The fixture records archived in a fresh table on the test S3 server: its URI and the records.
async fn archived_on_s3(name: &str) -> (String, usize) {
    let bucket = std::env::var("ORDERLAKE_TEST_S3_BUCKET").expect("ORDERLAKE_TEST_S3_BUCKET");
    let table_uri = format!(
        "s3://{bucket}/{name}-{}/order_events",
        orderlake_query::engine::new_query_id()
    );
    let records = fixture_records();
    let location = orderlake_archive::TableLocation::parse(
        &table_uri,
        s3_options(&format!("http://{}", s3_authority()))
            .into_iter()
            .collect(),
    )
    .unwrap();
    support::archive_at(location, &records).await;
    (table_uri, records.len())
}

/// A server configuration over `table_uri`, reaching S3 at `gate` (`host:port`).
fn server_config(table_uri: &str, gate: std::net::SocketAddr) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.archive.table_uri = table_uri.to_owned();
    config.archive.storage_options = s3_options(&format!("http://{gate}"));
    config.sql.views_dir = support::repo_path("sql");
    config.auth.users = vec![orderlake_server::config::UserConfig {
        name: USER.into(),
        password_hash: auth::hash_password(PASSWORD),
    }];
    config
}

async fn signed_in(
    server: &RunningServer,
) -> arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    client.handshake(USER, PASSWORD).await.unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_while_s3_is_unreachable_waits_and_serves_once_it_answers() {
    let (table_uri, archived) = archived_on_s3("outage").await;

    // A loopback port nobody listens on: the S3 server is "down" until the gate opens.
    let gate = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gate_addr = gate.local_addr().unwrap();
    drop(gate);

    let config = server_config(&table_uri, gate_addr);
    config.validate(std::path::Path::new("test")).unwrap();
    let starting = tokio::spawn(RunningServer::start(config));

    // Longer than one attempt with the store's single retry: the server has failed to open the
    // archive at least once and is still waiting, not gone.
    tokio::time::sleep(Duration::from_secs(6)).await;
    if starting.is_finished() {
        match starting.await.unwrap() {
            Ok(_) => panic!("the server started with its object store unreachable"),
            Err(e) => panic!("the server gave up instead of waiting for its object store: {e}"),
        }
    }

    let listener = TcpListener::bind(gate_addr).await.unwrap();
    let (_flowing, flows) = watch::channel(true);
    tokio::spawn(forward(listener, s3_authority(), flows));
    let server = tokio::time::timeout(Duration::from_secs(90), starting)
        .await
        .expect("the server starts within 90 s of S3 answering")
        .unwrap()
        .expect("the server opens the archive once S3 answers");

    let mut client = signed_in(&server).await;
    let batches = query(&mut client, "SELECT count(*) AS n FROM order_events").await;
    assert_eq!(
        rows(&batches),
        [archived.to_string()],
        "every archived record is served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_hanging_under_a_query_fails_it_unavailable_within_its_time_limit() {
    let (table_uri, _) = archived_on_s3("hang").await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gate = listener.local_addr().unwrap();
    let (flowing, flows) = watch::channel(true);
    tokio::spawn(forward(listener, s3_authority(), flows));

    let time_limit = 4;
    let mut config = server_config(&table_uri, gate);
    config.limits.timeout_secs = time_limit;
    config.validate(std::path::Path::new("test")).unwrap();
    let server = RunningServer::start(config).await.unwrap();
    let mut client = signed_in(&server).await;

    // Reads every data file (no statistic answers it); the first run caches the footers.
    let reads_data = "SELECT count(DISTINCT order_id), count(DISTINCT status) FROM order_events";
    let answer = rows(&query(&mut client, reads_data).await);

    flowing.send_replace(false);
    let started = Instant::now();
    let err = run(&mut client, reads_data)
        .await
        .expect_err("a query over storage that does not answer fails");
    let took = started.elapsed();
    assert!(
        has_code(&err, tonic::Code::Unavailable) && err.contains("storage has not answered"),
        "the client is told storage is unavailable, not that it asked too much: {err}"
    );
    assert!(
        took < Duration::from_secs(time_limit + 3),
        "the query fails at its {time_limit} s limit, not when the store gives up: {took:?}"
    );

    flowing.send_replace(true);
    assert_eq!(
        rows(&query(&mut client, reads_data).await),
        answer,
        "the next query succeeds once S3 answers, without a restart"
    );
}
