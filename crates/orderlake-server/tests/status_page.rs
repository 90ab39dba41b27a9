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

/// Signs in through the form as USER; returns the `Cookie:` header line of the session.
async fn sign_in(addr: SocketAddr) -> String {
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
    format!("Cookie: {cookie}\r\n")
}

/// `GET path` with the session's cookie line (or none).
fn get(path: &str, cookie: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{cookie}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_the_cancel_rule_over_http() {
    let server = status_page_server().await;
    let addr = server.server.metrics_addr().unwrap();
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

    let cookie_header = sign_in(addr).await;
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

/// Signed-in `/api/status` of the page on `addr`.
async fn status_json(addr: SocketAddr) -> serde_json::Value {
    let cookie = sign_in(addr).await;
    let status = http(addr, get("/api/status", &cookie)).await;
    assert_eq!(status.code, 200, "{status:?}");
    serde_json::from_str(&status.body).unwrap()
}

/// Growth: the table archived over three days (its commit files dated as a log written then
/// would be) is charted as its size at the end of each day; freshness gives each topic's newest
/// event time as well as its newest Kafka time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growth_and_freshness_by_event_time() {
    let records = fixture_records();
    let server = TestServer::start(&records[..3], |c| {
        c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let location = table_location(&server.archive_dir);
    let version = || async {
        ArchiveTable::open(location.clone())
            .await
            .unwrap()
            .version()
            .unwrap()
    };
    let first = version().await;
    support::archive(&server.archive_dir, &records[3..6]).await;
    let second = version().await;
    support::archive(&server.archive_dir, &records[6..]).await;
    let third = version().await;
    assert!(first < second && second < third);

    let now = chrono::Utc::now();
    let three_days_ago = now - chrono::Duration::days(3);
    let yesterday = now - chrono::Duration::days(1);
    for entry in std::fs::read_dir(server.archive_dir.join("_delta_log")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(v) = name
            .strip_suffix(".json")
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        let when = match v {
            v if v <= first => three_days_ago,
            v if v <= second => yesterday,
            _ => continue,
        };
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when.into())
            .unwrap();
    }
    let engine = server.server.engine();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while engine.version() != Some(third) {
        assert!(
            std::time::Instant::now() < deadline,
            "the server reads the last commit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let addr = server.server.metrics_addr().unwrap();
    let json = status_json(addr).await;
    let growth: Vec<(String, u64, u64)> = json["growth"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_owned(),
                d["version"].as_u64().unwrap(),
                d["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    let day = |t: chrono::DateTime<chrono::Utc>| t.date_naive().to_string();
    assert_eq!(
        growth,
        vec![
            (day(three_days_ago), first, 3),
            (day(yesterday), second, 6),
            (day(now), third, 9),
        ]
    );
    let sizes: Vec<(u64, u64)> = json["growth"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["files"].as_u64().unwrap(), d["bytes"].as_u64().unwrap()))
        .collect();
    assert!(
        sizes.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
        "{sizes:?}"
    );
    assert_eq!(sizes[2].0, json["table"]["files"].as_u64().unwrap());

    // A commit after the first report: listed from where the last listing stopped, today's
    // size follows it and the closed days stay as they were.
    let mut late = records[8].clone();
    late.offset += 1;
    support::archive(&server.archive_dir, &[late]).await;
    let fourth = version().await;
    while engine.version() != Some(fourth) {
        assert!(
            std::time::Instant::now() < deadline,
            "the server reads the last commit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let json = status_json(addr).await;
    let days: Vec<(u64, u64)> = json["growth"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["version"].as_u64().unwrap(), d["rows"].as_u64().unwrap()))
        .collect();
    assert_eq!(days, vec![(first, 3), (second, 6), (fourth, 10)]);

    // Freshness: each topic's newest event time is the newest `event_time` of its rows.
    let table = ArchiveTable::open(location.clone()).await.unwrap();
    let ctx = table.session_with("archive").await.unwrap();
    let batches = ctx
        .sql(
            "SELECT kafka_topic, CAST(to_char(max(event_time), '%Y-%m-%dT%H:%M:%S%.3fZ') AS \
             VARCHAR) FROM archive GROUP BY 1 ORDER BY 1",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let expected = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    let shown: Vec<String> = json["freshness"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let t = chrono::DateTime::parse_from_rfc3339(f["newest_event_time"].as_str().unwrap())
                .unwrap();
            format!(
                "{} {}",
                f["topic"].as_str().unwrap(),
                t.format("%Y-%m-%dT%H:%M:%S%.3fZ")
            )
        })
        .collect();
    for line in &shown {
        let (topic, time) = line.split_once(' ').unwrap();
        assert!(
            expected
                .lines()
                .any(|l| l.contains(topic) && l.contains(time)),
            "{line} not in\n{expected}"
        );
    }
    assert_eq!(shown.len(), 2, "{shown:?}");
}
