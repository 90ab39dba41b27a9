//! Python ADBC (`adbc_driver_flightsql`, a client nobody here wrote) against the server: query,
//! parameterized queries with a value of every type the archive has (string, int, decimal,
//! timestamp, date, list, binary, null), adbc_get_objects, adbc_get_info, current catalog and
//! schema, cancel, a refused DDL and a bad password; metadata at every depth and with filters,
//! table schemas and types; and a connection whose sign-in token expires. The script asserts
//! each step; these tests run it.

mod support;

use support::{PASSWORD, TestServer, USER, fixture_records, run_python_checks};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_adbc_client_flows() {
    let server = TestServer::start(&fixture_records(), |_| {}).await;
    let uri = format!("grpc://{}", server.server.addr());
    run_python_checks("adbc_client.py", vec![uri, USER.into(), PASSWORD.into()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_adbc_after_the_token_expires() {
    let server = TestServer::start(&fixture_records(), |c| c.auth.token_ttl_secs = 2).await;
    let uri = format!("grpc://{}", server.server.addr());
    run_python_checks(
        "adbc_client.py",
        vec![
            "--token-expiry".into(),
            uri,
            USER.into(),
            PASSWORD.into(),
            "2".into(),
        ],
    )
    .await;
}
