//! Python ADBC (`adbc_driver_flightsql`, a client nobody here wrote) against the server: query,
//! parameterized query, adbc_get_objects, adbc_get_info, current catalog and schema, cancel, a
//! refused DDL and a bad password. The script asserts each step; this test runs it.

mod support;

use std::process::Command;

use support::{PASSWORD, TestServer, USER, fixture_records, repo_path};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_adbc_client_flows() {
    let python = std::env::var("ORDERLAKE_TEST_PYTHON").expect(
        "ORDERLAKE_TEST_PYTHON names a Python with adbc-driver-flightsql (scripts/test.sh sets it)",
    );
    let server = TestServer::start(&fixture_records(), |_| {}).await;
    let uri = format!("grpc://{}", server.server.addr());
    let script = repo_path("tests/python/adbc_client.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([uri.as_str(), USER, PASSWORD])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.contains(r#"{"check": "all", "ok": true}"#),
        "ADBC client failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}
