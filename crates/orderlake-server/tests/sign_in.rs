//! Every client signs in, whatever the password: user:password of every length modulo 3 (so
//! unpadded base64 ends in each possible way), passwords with `:`, spaces and non-ASCII
//! characters, through the Rust Flight SQL client (padded base64), a raw unpadded handshake, Python
//! ADBC (the Go driver sends unpadded base64) and pyarrow's Flight client.

mod support;

use arrow_flight::HandshakeRequest;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use orderlake_server::auth;
use orderlake_server::config::UserConfig;
use support::{TestServer, fixture_records, query, rows, run_python_checks};

const CREDENTIALS: &[(&str, &str)] = &[
    ("demo", "demo-pass-71"),
    ("demo0", "demo-pass-71"),
    ("demo01", "demo-pass-71"),
    ("colons", "pa:ss:word with spaces"),
    ("ünïcode", "pässwörd ✓ 密码"),
    ("trailing", "ends in a colon:"),
];

async fn server() -> TestServer {
    let residues: std::collections::BTreeSet<_> = CREDENTIALS
        .iter()
        .map(|(u, p)| (u.len() + 1 + p.len()) % 3)
        .collect();
    assert_eq!(
        residues.len(),
        3,
        "the credentials cover every length modulo 3"
    );
    TestServer::start(&fixture_records(), |config| {
        config
            .auth
            .users
            .extend(CREDENTIALS.iter().map(|(name, password)| UserConfig {
                name: (*name).into(),
                password_hash: auth::hash_password(password),
            }));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_clients_sign_in_with_padded_and_unpadded_credentials() {
    let server = server().await;
    for (user, password) in CREDENTIALS {
        let mut client = FlightSqlServiceClient::new(server.channel().await);
        client
            .handshake(user, password)
            .await
            .unwrap_or_else(|e| panic!("{user}:{password:?} signs in: {e}"));
        let count = rows(&query(&mut client, "SELECT count(*) FROM order_events").await);
        assert_eq!(count, ["9"], "{user}");

        let mut wrong = FlightSqlServiceClient::new(server.channel().await);
        let err = wrong
            .handshake(user, &format!("{password}x"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("wrong user name or password"),
            "{user}: {err}"
        );

        // The ADBC Go driver's form: base64 without padding.
        let mut raw = FlightServiceClient::new(server.channel().await);
        let mut request = tonic::Request::new(futures::stream::iter([HandshakeRequest::default()]));
        let unpadded = STANDARD_NO_PAD.encode(format!("{user}:{password}"));
        request.metadata_mut().insert(
            "authorization",
            format!("Basic {unpadded}").parse().unwrap(),
        );
        let response = raw
            .handshake(request)
            .await
            .unwrap_or_else(|e| panic!("{user}:{password:?} unpadded ({unpadded}): {e}"));
        let bearer = response.metadata().get("authorization").unwrap();
        assert!(bearer.to_str().unwrap().starts_with("Bearer "), "{user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_adbc_and_pyarrow_sign_in_with_every_password() {
    let server = server().await;
    let uri = format!("grpc://{}", server.server.addr());
    let credentials = serde_json::to_string(CREDENTIALS).unwrap();
    run_python_checks("sign_in.py", vec![uri, credentials]).await;
}
