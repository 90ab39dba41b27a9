//! The server and an outage of the S3 server holding its archive: started while S3 cannot be
//! reached, it waits (retrying, logging why, not ready) and serves once S3 answers. The test S3
//! server (scripts/test.sh starts it) is reached through a loopback port of the test's own that
//! refuses connections until the test opens it.

use std::collections::BTreeMap;
use std::time::Duration;

use orderlake_server::{RunningServer, ServerConfig, auth};
use tokio::net::{TcpListener, TcpStream};

mod support;
use support::{PASSWORD, USER, fixture_records, query, rows};

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

/// Forwards every connection accepted on `listener` to `target`.
async fn forward(listener: TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_while_s3_is_unreachable_waits_and_serves_once_it_answers() {
    let bucket = std::env::var("ORDERLAKE_TEST_S3_BUCKET").expect("ORDERLAKE_TEST_S3_BUCKET");
    let table_uri = format!(
        "s3://{bucket}/outage-{}/order_events",
        orderlake_query::engine::new_query_id()
    );
    let endpoint = std::env::var("ORDERLAKE_TEST_S3_ENDPOINT")
        .expect("ORDERLAKE_TEST_S3_ENDPOINT names the test S3 server (scripts/test.sh sets it)");
    let records = fixture_records();
    let location = orderlake_archive::TableLocation::parse(
        &table_uri,
        s3_options(&endpoint).into_iter().collect(),
    )
    .unwrap();
    support::archive_at(location, &records).await;

    // A loopback port nobody listens on: the S3 server is "down" until the gate opens.
    let gate = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gate_addr = gate.local_addr().unwrap();
    drop(gate);

    let mut config = ServerConfig::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.archive.table_uri = table_uri;
    config.archive.storage_options = s3_options(&format!("http://{gate_addr}"));
    config.sql.views_dir = support::repo_path("sql");
    config.auth.users = vec![orderlake_server::config::UserConfig {
        name: USER.into(),
        password_hash: auth::hash_password(PASSWORD),
    }];
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
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    tokio::spawn(forward(listener, authority.to_owned()));
    let server = tokio::time::timeout(Duration::from_secs(90), starting)
        .await
        .expect("the server starts within 90 s of S3 answering")
        .unwrap()
        .expect("the server opens the archive once S3 answers");

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    client.handshake(USER, PASSWORD).await.unwrap();
    let batches = query(&mut client, "SELECT count(*) AS n FROM order_events").await;
    assert_eq!(
        rows(&batches),
        [format!("{}", records.len())],
        "every archived record is served"
    );
}
