//! Superset's Flight SQL path: the `flightsql-dbapi` SQLAlchemy dialect (a client nobody here
//! wrote) lists schemas, the archive's tables and views and their columns, and runs chart-style
//! queries. The script asserts each step; this test runs it.

mod support;

use support::{PASSWORD, TestServer, USER, fixture_records, run_python_checks};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superset_flight_sql_dialect_flows() {
    let server = TestServer::start(&fixture_records(), |_| {}).await;
    let addr = server.server.addr();
    run_python_checks(
        "superset_flightsql.py",
        vec![
            addr.ip().to_string(),
            addr.port().to_string(),
            USER.into(),
            PASSWORD.into(),
        ],
    )
    .await;
}
