//! The server's operations listener as Prometheus and an orchestrator see it: ready once a table
//! version is loaded; queries counted by outcome and the status their client got, rows streamed
//! as the client received them, a query that holds a slot seen as running, refused sign-ins
//! counted, and the version served with its age.

mod support;

use std::net::SocketAddr;

use futures::StreamExt as _;
use orderlake_telemetry::{Sample, http_get, parse_samples};
use support::{TestServer, fixture_records, query};

async fn get(addr: SocketAddr, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || http_get(addr, path).unwrap())
        .await
        .unwrap()
}

async fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let (code, page) = get(addr, "/metrics").await;
    assert_eq!(code, 200, "{page}");
    parse_samples(&page)
}

/// The value of the one sample named `name` whose labels include `labels` (0 when absent).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = samples.iter().filter(|s| s.is(name, labels)).collect();
    assert!(matching.len() <= 1, "{name} {labels:?}: {matching:?}");
    matching.first().map_or(0.0, |s| s.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_queries_refusals_and_the_version_served() {
    let server = TestServer::start(&fixture_records(), |c| {
        c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let ops = server.server.metrics_addr().expect("the listener runs");
    assert_eq!(get(ops, "/health").await, (200, "ok\n".into()));
    let (code, body) = get(ops, "/ready").await;
    assert_eq!((code, body.as_str()), (200, "snapshot: ok\n"));

    let mut client = server.client().await;
    let batches = query(&mut client, "SELECT order_id FROM order_events").await;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 9);
    let bad = client
        .execute("SELECT nope FROM order_events".into(), None)
        .await;
    assert!(bad.is_err());
    let mut stranger =
        arrow_flight::sql::client::FlightSqlServiceClient::new(server.channel().await);
    assert!(
        stranger
            .handshake("analyst", "wrong password")
            .await
            .is_err()
    );

    let m = scrape(ops).await;
    let queries = "orderlake_server_queries_total";
    let door = ("front_door", "flight_sql");
    assert_eq!(
        value(&m, queries, &[door, ("outcome", "ok"), ("status", "OK")]),
        1.0
    );
    assert_eq!(
        value(
            &m,
            queries,
            &[door, ("outcome", "error"), ("status", "NOT_FOUND")]
        ) + value(
            &m,
            queries,
            &[door, ("outcome", "error"), ("status", "INVALID_ARGUMENT")]
        ),
        1.0,
        "the unknown column is refused once"
    );
    assert_eq!(
        value(&m, "orderlake_server_rows_streamed_total", &[door]),
        rows as f64
    );
    assert!(value(&m, "orderlake_server_bytes_streamed_total", &[door]) > 0.0);
    assert_eq!(
        value(
            &m,
            "orderlake_server_auth_failures_total",
            &[("call", "handshake")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "orderlake_server_query_duration_seconds_count",
            &[door, ("outcome", "ok")]
        ),
        1.0
    );
    assert!(value(&m, "orderlake_server_query_planning_seconds_count", &[]) >= 1.0);
    let version = server.server.engine().version().unwrap();
    assert_eq!(
        value(&m, "orderlake_server_table_version", &[]),
        version as f64
    );
    let age = value(&m, "orderlake_server_table_version_age_seconds", &[]);
    assert!(
        (0.0..120.0).contains(&age),
        "the archive was written just now: {age}"
    );
    assert!(value(&m, "orderlake_server_metadata_cache_entries", &[]) >= 1.0);

    // A query whose client reads one batch and stops holds its slot until it lets go.
    let info = client
        .execute(
            "SELECT x FROM generate_series(1, 1000000000) AS t(x)".into(),
            None,
        )
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = client.do_get(ticket).await.unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    let m = scrape(ops).await;
    let running =
        |m: &[Sample], lane| value(m, "orderlake_server_queries_running", &[("lane", lane)]);
    assert_eq!(
        running(&m, "general"),
        1.0,
        "a query making its own rows is general"
    );
    assert_eq!(running(&m, "lookup"), 0.0);
    drop(stream);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let m = scrape(ops).await;
        let cancelled = value(
            &m,
            queries,
            &[door, ("outcome", "error"), ("status", "CANCELLED")],
        );
        if cancelled == 1.0 && running(&m, "general") == 0.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned query is counted as cancelled and frees its slot"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
