//! The status page in a real browser (Debian's headless Chromium driven by Playwright, through
//! `tests/browser/status_page.cjs`): a visitor sees a sign-in form and no data; signed in, the
//! page's numbers equal `status --json` of the same table; a running query appears, and its
//! Cancel button stops it (its client gets CANCELLED). Without a browser the HTTP rules are still
//! checked: no session, no data; a user cannot cancel another user's query.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt as _;
use orderlake_archive::ArchiveTable;
use orderlake_server::auth;
use orderlake_server::config::UserConfig;
use orderlake_telemetry::{HttpResponse, http_request};
use support::{PASSWORD, TestServer, USER, fixture_records, repo_path, table_location};
use tonic::Code;

/// A query that computes for a long time and returns one row.
const SLOW: &str = "SELECT count(*) FROM generate_series(1, 20000000000) AS t(x) WHERE x % 7 = 3";

async fn status_page_server() -> TestServer {
    TestServer::start(&fixture_records(), |c| {
        c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
        c.auth.users.push(UserConfig {
            name: "other".into(),
            password_hash: auth::hash_password("other password"),
        });
    })
    .await
}

/// Starts SLOW for `user` and returns its id (from the running list) and the task fetching it.
async fn start_slow(
    server: &TestServer,
    user: &str,
    password: &str,
) -> (String, tokio::task::JoinHandle<Code>) {
    let mut client = FlightSqlServiceClient::new(server.channel().await);
    client.handshake(user, password).await.unwrap();
    let info = client.execute(SLOW.into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let fetch = tokio::spawn(async move {
        match client.do_get(ticket).await {
            Ok(stream) => match stream.try_collect::<Vec<_>>().await {
                Ok(_) => Code::Ok,
                Err(e) => match e {
                    arrow_flight::error::FlightError::Tonic(s) => s.code(),
                    _ => Code::Unknown,
                },
            },
            Err(e) => match e {
                arrow_flight::error::FlightError::Tonic(s) => s.code(),
                _ => Code::Unknown,
            },
        }
    });
    let engine = server.server.engine();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let id = loop {
        if let Some(q) = engine.running().into_iter().find(|q| q.user == user) {
            break q.id;
        }
        assert!(std::time::Instant::now() < deadline, "the slow query runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (id, fetch)
}

/// A raw HTTP request on loopback.
async fn http(addr: SocketAddr, request: String) -> HttpResponse {
    tokio::task::spawn_blocking(move || http_request(addr, &request).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_the_cancel_rule_over_http() {
    let server = status_page_server().await;
    let addr = server.server.metrics_addr().unwrap();
    let get = |path: &str, cookie: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{cookie}\r\n")
    };
    let page = http(addr, get("/", "")).await;
    assert_eq!(page.code, 200);
    assert!(
        page.body
            .contains("<form method=\"post\" action=\"/login\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("id=\"rows\""));
    assert_eq!(http(addr, get("/api/status", "")).await.code, 401);

    let form = format!("user={USER}&password={}", PASSWORD.replace(' ', "+"));
    let answer = http(
        addr,
        format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    )
    .await;
    assert_eq!(answer.code, 303, "{answer:?}");
    let cookie = answer
        .head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let cookie_header = format!("Cookie: {cookie}\r\n");
    let status = http(addr, get("/api/status", &cookie_header)).await;
    assert_eq!(status.code, 200, "{status:?}");
    let json: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(json["user"], USER);
    assert_eq!(json["table"]["rows"], 9);

    // Another user's query: refused, and it keeps running; one's own: cancelled.
    let (theirs, their_fetch) = start_slow(&server, "other", "other password").await;
    let cancel = |id: &str| {
        format!(
            "POST /api/queries/{id}/cancel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             {cookie_header}Content-Length: 0\r\n\r\n"
        )
    };
    let answer = http(addr, cancel(&theirs)).await;
    assert_eq!(answer.code, 403, "{answer:?}");
    assert!(
        server
            .server
            .engine()
            .running()
            .iter()
            .any(|q| q.id == theirs)
    );
    let (mine, my_fetch) = start_slow(&server, USER, PASSWORD).await;
    let answer = http(addr, cancel(&mine)).await;
    assert_eq!(answer.code, 200, "{answer:?}");
    assert_eq!(my_fetch.await.unwrap(), Code::Cancelled);
    server.server.engine().cancel(&theirs);
    assert_eq!(their_fetch.await.unwrap(), Code::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_a_browser_matches_status_and_cancels_a_query() {
    let modules = std::env::var("ORDERLAKE_TEST_NODE_MODULES").unwrap_or_else(|_| {
        panic!("ORDERLAKE_TEST_NODE_MODULES is not set: run the tests through ./scripts/test.sh, which installs Chromium and Playwright")
    });
    let server = status_page_server().await;
    let addr = server.server.metrics_addr().unwrap();
    let table = ArchiveTable::open(table_location(&server.archive_dir))
        .await
        .unwrap();
    let expected = serde_json::to_string(&table.status().await.unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let expected_path = dir.path().join("status.json");
    std::fs::write(&expected_path, expected).unwrap();
    let screenshot = std::env::var("ORDERLAKE_STATUS_SCREENSHOT")
        .map_or_else(|_| dir.path().join("status-page.png"), Into::into);
    let (_, fetch) = start_slow(&server, USER, PASSWORD).await;

    let mut node = std::process::Command::new("node");
    node.arg(repo_path("tests/browser/status_page.cjs"))
        .args([format!("http://{addr}/").as_str(), USER, PASSWORD])
        .arg(&expected_path)
        .arg(&screenshot)
        .env("NODE_PATH", modules);
    support::assert_checks_pass(node, "the browser checks").await;
    assert_eq!(fetch.await.unwrap(), Code::Cancelled);
}
