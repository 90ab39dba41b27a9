//! `orderlake-server --log-format json` as a log collector reads it: one JSON object a line, and
//! every line logged for a query carries the query's id and the user who ran it.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use orderlake_server::auth;
use support::{PASSWORD, USER, archive, fixture_records, repo_path};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_line_carries_its_id_and_user() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("archive");
    archive(&table, &fixture_records()).await;
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[archive]\ntable_uri = {table:?}\n\n\
             [sql]\nviews_dir = {views:?}\n\n[[auth.users]]\nname = \"{USER}\"\n\
             password_hash = \"{hash}\"\n",
            table = table.display().to_string(),
            views = repo_path("sql").display().to_string(),
            hash = auth::hash_password(PASSWORD),
        ),
    )
    .unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_orderlake-server"))
        .args(["--log-format", "json", "--config"])
        .arg(&config)
        .env("ORDERLAKE_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let mut logged = Vec::new();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server logs before it exits")
            .unwrap();
        let entry: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        logged.push(entry.clone());
        if entry["message"] == "orderlake-server listening for Flight SQL" {
            break entry["addr"].as_str().unwrap().to_owned();
        }
    };
    let uri = format!("http://{addr}");
    let run = |sql: &str| {
        Command::new(env!("CARGO_BIN_EXE_orderlake-server"))
            .args([
                "query",
                "--uri",
                &uri,
                "--user",
                USER,
                "--password",
                PASSWORD,
                sql,
            ])
            .output()
            .unwrap()
    };
    assert!(run("SELECT count(*) FROM order_events").status.success());
    assert!(!run("SELECT nope FROM order_events").status.success());
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    logged.extend(lines.map(|l| {
        let line = l.unwrap();
        serde_json::from_str::<serde_json::Value>(&line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
    }));
    let _ = server.wait();

    let query_lines: Vec<&serde_json::Value> = logged
        .iter()
        .filter(|l| l["span"]["name"] == "query")
        .collect();
    let ended: Vec<&&serde_json::Value> = query_lines
        .iter()
        .filter(|l| l["message"] == "query ended")
        .collect();
    assert_eq!(ended.len(), 1, "one query ran to its end: {logged:#?}");
    assert_eq!(ended[0]["outcome"], "finished");
    for line in &query_lines {
        assert_eq!(line["span"]["user"], USER, "{line}");
        assert!(
            line["span"]["query_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{line}"
        );
    }
    // No line about a query is logged outside its span.
    assert!(
        logged
            .iter()
            .filter(|l| l["message"] == "query ended")
            .all(|l| l["span"]["name"] == "query")
    );
}
