//! With a configured certificate and key the server speaks only TLS, on Flight SQL and on the
//! Trino front door: a client that trusts the certificate signs in and queries; a plaintext
//! client gets nowhere. Python ADBC and pyarrow's Flight client run their flows over TLS.

mod support;

use arrow_flight::sql::client::FlightSqlServiceClient;
use support::{PASSWORD, TestServer, USER, fixture_records, query, rows, run_python_checks};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_from_configured_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = support::test_certificates(dir.path());

    let (c, k) = (cert.clone(), key.clone());
    let server = TestServer::start(&fixture_records(), move |config| {
        config.server.tls_cert = Some(c);
        config.server.tls_key = Some(k);
        config.trino.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let port = server.server.addr().port();

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&ca).unwrap()))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    client.handshake(USER, PASSWORD).await.unwrap();
    assert_eq!(
        rows(&query(&mut client, "SELECT count(*) FROM orders").await),
        ["3"]
    );

    // Plaintext against a TLS port: no sign-in.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await;
    let refused = match plain {
        Err(_) => true,
        Ok(channel) => FlightSqlServiceClient::new(channel)
            .handshake(USER, PASSWORD)
            .await
            .is_err(),
    };
    assert!(refused, "a plaintext client must not get through");

    // The Trino front door serves the same certificate (passwords need no opt-in over TLS),
    // while another client holds a handshake open without sending anything.
    let trino = server
        .server
        .trino_addr()
        .expect("the Trino listener is on");
    let _stalled = tokio::net::TcpStream::connect(trino).await.unwrap();
    run_python_checks(
        "trino_tls.py",
        vec![
            "localhost".into(),
            trino.port().to_string(),
            USER.into(),
            PASSWORD.into(),
            ca.display().to_string(),
        ],
    )
    .await;

    // Python ADBC and pyarrow's Flight client over TLS, trusting the test CA: every flow of
    // adbc_python.rs and pyarrow_flight.rs.
    run_python_checks(
        "adbc_client.py",
        vec![
            format!("grpc+tls://localhost:{port}"),
            USER.into(),
            PASSWORD.into(),
            ca.display().to_string(),
        ],
    )
    .await;
    run_python_checks(
        "pyarrow_flight.py",
        vec![
            format!("grpc+tls://localhost:{port}"),
            USER.into(),
            PASSWORD.into(),
            server.service_token.clone(),
            ca.display().to_string(),
        ],
    )
    .await;
}
