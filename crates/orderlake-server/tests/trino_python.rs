//! The real `trino` Python client (DB-API and its SQLAlchemy dialect) against the Trino front
//! door over the fixture archive: types, parameters, USE, errors, a million rows, cancel,
//! system.runtime.queries and kill_query, the inspector and a wrong password. The script asserts each step; this test runs it.

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
            server.service_token.clone(),
        ],
    )
    .await;
}

/// Without TLS a password crosses the network in the clear: refused unless the config opts in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_over_plain_http_need_the_opt_in() {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start(&fixture_records(), |c| {
        c.trino.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = server
        .server
        .trino_addr()
        .expect("the Trino listener is on");
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = "SELECT 1";
    tcp.write_all(
        format!(
            "POST /v1/statement HTTP/1.1\r\nHost: {addr}\r\nX-Trino-User: {USER}\r\n\
             Authorization: Basic {credentials}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 403") && answer.contains("allow_insecure_passwords"),
        "{answer}"
    );
}
