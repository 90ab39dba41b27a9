//! Per-query limits through the Flight SQL client: a query over its memory limit, over its time
//! limit, over the result-size limit, more queries than slots and queue, and a cancelled query
//! each get their documented status, and the server keeps answering afterwards.

mod support;

use std::time::{Duration, Instant};

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightInfo};
use futures::TryStreamExt as _;
use prost::Message as _;
use support::{TestServer, fixture_records, query, rows};
use tonic::Code;
use tonic::transport::Channel;

/// Runs `sql` to its end; the error text (which names the gRPC code) if it fails.
async fn run(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Result<usize, String> {
    let info = client
        .execute(sql.to_owned(), None)
        .await
        .map_err(|e| e.to_string())?;
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let stream = client.do_get(ticket).await.map_err(|e| e.to_string())?;
    let batches: Vec<_> = stream.try_collect().await.map_err(|e| e.to_string())?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

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
fn has_code(err: &str, code: Code) -> bool {
    err.contains(&format!("code: '{code}'"))
}

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
    })
    .await;
    let mut client = server.client().await;

    // The first query holds the only slot while its stream is open.
    let info = client.execute(SLOW.into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let held = client.do_get(ticket).await.unwrap();
    wait_until("the first query never started", || {
        !server.server.engine().running().is_empty()
    })
    .await;
    let mut second = server.client().await;
    let err = run(&mut second, "SELECT 1").await.unwrap_err();
    assert!(
        has_code(&err, Code::ResourceExhausted) && err.contains("busy"),
        "{err}"
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
