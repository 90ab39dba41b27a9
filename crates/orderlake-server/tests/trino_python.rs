//! The real `trino` Python client (DB-API and its SQLAlchemy dialect) against the Trino front
//! door over the fixture archive: types, parameters, USE, errors, a million rows, cancel, the
//! inspector and a wrong password. The script asserts each step; this test runs it.

mod support;

use support::{PASSWORD, TestServer, USER, fixture_records, run_python_checks};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_trino_client_flows() {
    let server = TestServer::start(&fixture_records(), |c| {
        c.trino.listen = Some("127.0.0.1:0".parse().unwrap());
        c.trino.allow_insecure_passwords = true;
    })
    .await;
    let addr = server
        .server
        .trino_addr()
        .expect("the Trino listener is on");
    run_python_checks(
        "trino_client.py",
        vec![
            addr.ip().to_string(),
            addr.port().to_string(),
            USER.into(),
            PASSWORD.into(),
        ],
    )
    .await;
}
