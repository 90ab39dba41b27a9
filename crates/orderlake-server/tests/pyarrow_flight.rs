//! pyarrow's own Flight client (plain Flight, the Flight SQL commands built by hand as its users
//! do) against the server: query, a query's schema, actions, catalog listings, SQL info, prepared
//! statements (closed, another user's), 5M rows batch by batch, cancel, and the errors, each as
//! the exception pyarrow raises. The script asserts each step; this test runs it (tls.rs runs it
//! over TLS).

mod support;

use support::{PASSWORD, TestServer, USER, fixture_records, run_python_checks};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_flight_client_flows() {
    let server = TestServer::start(&fixture_records(), |_| {}).await;
    let uri = format!("grpc://{}", server.server.addr());
    let token = server.service_token.clone();
    run_python_checks(
        "pyarrow_flight.py",
        vec![uri, USER.into(), PASSWORD.into(), token],
    )
    .await;
}
