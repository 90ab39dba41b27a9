//! Per-query limits through the Flight SQL client: a query over its memory limit, over its time
//! limit, over the result-size limit, more queries than slots and queue, and a cancelled query
//! each get their documented status, and the server keeps answering afterwards.

mod support;

use std::time::{Duration, Instant};

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightInfo};
use futures::TryStreamExt as _;
use orderlake_query::QueryPhase;
use prost::Message as _;
use support::{TestServer, fixture_records, has_code, query, rows, run};
use tonic::Code;
use tonic::transport::Channel;

async fn still_healthy(client: &mut FlightSqlServiceClient<Channel>) {
    assert_eq!(
        rows(&query(client, "SELECT count(*) FROM order_events").await),
        ["9"]
    );
}

/// Waits (at most 10 s) for `done`; fails with `what` otherwise.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Flight SQL client folds the gRPC status into its error text as the code's description.
/// A query that computes for a long time and returns one row.
const SLOW: &str = "SELECT count(*) FROM generate_series(1, 20000000000) AS t(x) WHERE x % 7 = 3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_time_and_result_limits_give_their_status() {
    let server = TestServer::start(&fixture_records(), |c| {
        c.limits.memory_bytes = Some(16 * 1024 * 1024);
        c.limits.timeout_secs = 2;
        c.limits.max_result_rows = 1000;
    })
    .await;
    let mut client = server.client().await;

    // Memory: one aggregate state far over 16 MiB cannot spill.
    let err = run(
        &mut client,
        "SELECT array_agg(x) FROM generate_series(1, 5000000) AS t(x)",
    )
    .await
    .unwrap_err();
    assert!(
        has_code(&err, Code::ResourceExhausted) && err.contains("memory limit"),
        "{err}"
    );
    still_healthy(&mut client).await;

    // A sort over the limit spills instead of failing.
    let n = run(
        &mut client,
        "SELECT x FROM generate_series(1, 3000000) AS t(x) ORDER BY x DESC LIMIT 5",
    )
    .await
    .unwrap();
    assert_eq!(n, 5);

    // So do an aggregation and a full sort whose states are far over the limit, answering from
    // every row.
    let answer = query(
        &mut client,
        "SELECT count(*), sum(c) FROM (SELECT x % 2000000 AS k, count(*) AS c \
         FROM generate_series(1, 4000000) AS t(x) GROUP BY 1)",
    )
    .await;
    assert_eq!(rows(&answer), ["2000000|4000000"]);
    let answer = query(
        &mut client,
        "SELECT x FROM (SELECT x, row_number() OVER (ORDER BY x DESC) AS r \
         FROM generate_series(1, 3000000) AS t(x)) WHERE r = 1000000",
    )
    .await;
    assert_eq!(rows(&answer), ["2000001"]);

    // Time.
    let started = Instant::now();
    let err = run(&mut client, SLOW).await.unwrap_err();
    assert!(
        has_code(&err, Code::DeadlineExceeded) && err.contains("time limit"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped near its deadline"
    );
    still_healthy(&mut client).await;

    // Result size.
    let err = run(
        &mut client,
        "SELECT x FROM generate_series(1, 5000) AS t(x)",
    )
    .await
    .unwrap_err();
    assert!(
        has_code(&err, Code::ResourceExhausted) && err.contains("LIMIT"),
        "{err}"
    );
    assert_eq!(
        run(
            &mut client,
            "SELECT x FROM generate_series(1, 1000) AS t(x)"
        )
        .await,
        Ok(1000)
    );
    assert!(
        server.server.engine().running().is_empty(),
        "every query released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once_and_slots_come_back() {
    let server = TestServer::start(&fixture_records(), |c| {
        c.limits.max_running = 1;
        c.limits.max_queued = 0;
        // Every plan that reads files beyond a key lookup's pages counts as general here.
        c.limits.lookup_below_bytes = 1;
    })
    .await;
    let mut client = server.client().await;

    // The first query holds the only general slot while its stream is open.
    let info = client.execute(SLOW.into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let held = client.do_get(ticket).await.unwrap();
    wait_until("the first query never started", || {
        let running = server.server.engine().running();
        running.iter().any(|q| q.state == QueryPhase::Running)
    })
    .await;
    let mut second = server.client().await;
    let err = run(
        &mut second,
        "SELECT count(DISTINCT customer_id) FROM order_events",
    )
    .await
    .unwrap_err();
    assert!(
        has_code(&err, Code::ResourceExhausted) && err.contains("busy"),
        "{err}"
    );
    // A key lookup has a lane of its own: it answers while the general lane is full.
    let lookup = "SELECT count(*) FROM order_events WHERE order_id = 'A-1'";
    assert_eq!(rows(&query(&mut second, lookup).await), ["4"]);
    // The running list says where each query is and was.
    let listed = query(
        &mut second,
        "SELECT state, lane, analysis_time_ms >= 0, started IS NOT NULL \
         FROM system.runtime.queries WHERE query NOT LIKE '%runtime.queries%' ORDER BY created",
    )
    .await;
    assert_eq!(
        rows(&listed),
        [
            "RUNNING|general|true|true",
            "FAILED|general|true|false",
            "FINISHED|lookup|true|true"
        ]
    );

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.server.engine().running().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the abandoned query never stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    still_healthy(&mut second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_flight_info_stops_a_running_query() {
    let server = TestServer::start(&fixture_records(), |_| {}).await;
    let mut client = server.client().await;
    let info: FlightInfo = client.execute(SLOW.into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut runner = server.client().await;
    let running = tokio::spawn(async move {
        let stream = runner.do_get(ticket).await.map_err(|e| e.to_string())?;
        stream
            .try_collect::<Vec<_>>()
            .await
            .map(|b| b.len())
            .map_err(|e| e.to_string())
    });
    wait_until("the query never started", || {
        !server.server.engine().running().is_empty()
    })
    .await;
    // Another principal (the API service's token) holding the ticket may not stop it.
    let request = CancelFlightInfoRequest { info: Some(info) };
    let mut other = FlightSqlServiceClient::new(server.channel().await);
    other.set_token(server.service_token.clone());
    let refused = other
        .do_action(arrow_flight::Action {
            r#type: "CancelFlightInfo".into(),
            body: request.encode_to_vec().into(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        has_code(&refused, Code::PermissionDenied) && refused.contains("another user"),
        "{refused}"
    );
    assert_eq!(server.server.engine().running().len(), 1);
    assert!(!running.is_finished());

    let started = Instant::now();
    let mut results = client
        .do_action(arrow_flight::Action {
            r#type: "CancelFlightInfo".into(),
            body: request.encode_to_vec().into(),
        })
        .await
        .unwrap();
    let body = results.message().await.unwrap().unwrap().body;
    let result = CancelFlightInfoResult::decode(body).unwrap();
    assert_eq!(result.status, CancelStatus::Cancelled as i32);
    let outcome = running.await.unwrap();
    let err = outcome.unwrap_err();
    assert!(
        has_code(&err, Code::Cancelled) && err.contains("cancelled"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(server.server.engine().running().is_empty());
    still_healthy(&mut client).await;
}

/// The resident memory of this process (server and client), from /proc.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_million_row_result_streams_in_bounded_memory() {
    let server = TestServer::start(&fixture_records(), |_| {}).await;
    let mut client = server.client().await;
    // About 600 MB of Arrow data in all (5M rows of a number and 100 characters).
    let sql = "SELECT x, concat(CAST(x AS VARCHAR), repeat('-', 92)) AS padding \
               FROM generate_series(1, 5000000) AS t(x)";
    let info = client.execute(sql.into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = client.do_get(ticket).await.unwrap();
    let before = resident_bytes();
    let (mut rows, mut bytes, mut peak) = (0u64, 0u64, before);
    while let Some(batch) = stream.try_next().await.unwrap() {
        rows += batch.num_rows() as u64;
        bytes += batch.get_array_memory_size() as u64;
        peak = peak.max(resident_bytes());
    }
    assert_eq!(rows, 5_000_000);
    let grew = peak.saturating_sub(before);
    assert!(
        bytes > 500 << 20 && grew < 200 << 20,
        "{} MiB streamed; the process grew {} MiB while it did: results are not held whole",
        bytes >> 20,
        grew >> 20
    );
    still_healthy(&mut client).await;
}
