//! Each business view answers correctly on a small known archive: `sql/tests/fixture.jsonl` (or
//! the fixture a test file names on its first line, `fixture <file>`) is written through the
//! archiver's own decoding and writer with the mappings of `config/archiver.toml`, then every
//! query in `sql/tests/<view>.test` must print exactly the table written under it. The Trino
//! functions' cases (`sql/tests/functions/<function>.test`) run over the default fixture; a
//! `query error <title>` case must fail with a message containing the lines under it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt as _;
use orderlake_archive::{ArchiveTable, TableLocation};
use orderlake_ingest::{ArchiveWriter, MappingSet, SourceMapping, WriterSettings};
use orderlake_query::{ColdQueryEngine, EngineSettings, QueryRequest};

mod support;
use support::run;

fn sql_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../../sql")
}

/// The mappings `config/archiver.toml` configures, then the built-in ones, as the archiver reads
/// that file.
fn config_mappings() -> Vec<SourceMapping> {
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        mappings: Vec<SourceMapping>,
    }
    let path = sql_dir().join("../config/archiver.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config: Config =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    config
        .mappings
        .into_iter()
        .chain(SourceMapping::defaults())
        .collect()
}

/// The fixture a test file names (`fixture <file>` on its first line), else `fixture.jsonl`.
fn fixture_of(test_file: &str) -> &str {
    test_file
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("fixture "))
        .map_or("fixture.jsonl", str::trim)
}

async fn fixture_engine(dir: &Path, fixture: &str) -> Arc<ColdQueryEngine> {
    std::fs::create_dir_all(dir).unwrap();
    let location = TableLocation::parse(&dir.display().to_string(), HashMap::new()).unwrap();
    let table = ArchiveTable::open_or_create(location.clone())
        .await
        .unwrap();
    let mut writer = ArchiveWriter::new(table, WriterSettings::default());
    let records =
        orderlake_ingest::read_json_lines(&sql_dir().join("tests").join(fixture)).unwrap();
    let mappings = MappingSet::new(config_mappings()).unwrap();
    orderlake_ingest::archive_records(&mut writer, &mappings, &records)
        .await
        .unwrap();
    let settings = EngineSettings {
        views_dir: Some(sql_dir()),
        ..EngineSettings::default()
    };
    Arc::new(ColdQueryEngine::open(location, settings).await.unwrap())
}

/// One `query` block of a `.test` file.
#[derive(Debug)]
struct Case {
    title: String,
    sql: String,
    expected: Vec<String>,
    /// `query error …`: the query must fail with a message containing the expected line.
    error: bool,
}

fn parse_cases(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(title) = line.strip_prefix("query ") else {
            continue;
        };
        let (title, error) = match title.strip_prefix("error ") {
            Some(t) => (t, true),
            None => (title, false),
        };
        let mut sql = Vec::new();
        for l in lines.by_ref() {
            if l.trim() == "----" {
                break;
            }
            sql.push(l);
        }
        let mut expected = Vec::new();
        while let Some(l) = lines.peek() {
            if l.trim().is_empty() {
                break;
            }
            expected.push(l.trim_end().to_owned());
            lines.next();
        }
        cases.push(Case {
            title: title.to_owned(),
            sql: sql.join("\n"),
            expected,
            error,
        });
    }
    cases
}

/// The error `sql` fails with, or `None` when it answers.
async fn failure(engine: &Arc<ColdQueryEngine>, sql: &str) -> Option<String> {
    let request = QueryRequest {
        id: orderlake_query::engine::new_query_id(),
        sql: sql.to_owned(),
        params: Vec::new(),
        scope: engine.default_scope(),
        user: "test".into(),
        source: None,
    };
    match engine.execute(request).await {
        Err(e) => Some(e.to_string()),
        Ok(stream) => stream
            .try_collect::<Vec<_>>()
            .await
            .err()
            .map(|e| e.to_string()),
    }
}

/// Runs every case of a `.test` file, adding a description of each wrong answer to `failures`.
async fn check_file(engine: &Arc<ColdQueryEngine>, path: &Path, failures: &mut Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    check_text(engine, path, &text, failures).await;
}

async fn check_text(
    engine: &Arc<ColdQueryEngine>,
    path: &Path,
    text: &str,
    failures: &mut Vec<String>,
) {
    let cases = parse_cases(text);
    assert!(!cases.is_empty(), "{} has no queries", path.display());
    for case in cases {
        if case.error {
            let message = match failure(engine, &case.sql).await {
                Some(m) => m,
                None => "(no error)".to_owned(),
            };
            if !case.expected.iter().all(|e| message.contains(e.as_str())) {
                failures.push(format!(
                    "{}: {}\n{}\nexpected an error containing:\n{}\ngot:\n{message}",
                    path.display(),
                    case.title,
                    case.sql,
                    case.expected.join("\n"),
                ));
            }
            continue;
        }
        let got = run(engine, &case.sql, Vec::new()).await;
        if got != case.expected {
            failures.push(format!(
                "{}: {}\n{}\nexpected:\n{}\ngot:\n{}",
                path.display(),
                case.title,
                case.sql,
                case.expected.join("\n"),
                got.join("\n")
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trino_functions_answer_their_test_files() {
    let dir = tempfile::tempdir().unwrap();
    let engine = fixture_engine(dir.path(), "fixture.jsonl").await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(sql_dir().join("tests/functions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    let mut failures = Vec::new();
    for path in &files {
        check_file(&engine, path, &mut failures).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_answers_its_test_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut engines: HashMap<String, Arc<ColdQueryEngine>> = HashMap::new();
    let engine = fixture_engine(&dir.path().join("fixture"), "fixture.jsonl").await;
    engines.insert("fixture.jsonl".into(), Arc::clone(&engine));
    let views: Vec<String> = engine.views().iter().map(|v| v.name.clone()).collect();
    for name in [
        "orders",
        "order_status_history",
        "order_items",
        "customer_purchase_summary",
        "daily_order_kpis",
        "legacy_orders_current",
    ] {
        assert!(
            views.contains(&name.to_owned()),
            "view {name} is not registered: {views:?}"
        );
    }
    let mut failures = Vec::new();
    for view in &views {
        let path = sql_dir().join(format!("tests/{view}.test"));
        assert!(
            path.exists(),
            "every view needs a test file: {}",
            path.display()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let fixture = fixture_of(&text).to_owned();
        if !engines.contains_key(&fixture) {
            let engine = fixture_engine(&dir.path().join(&fixture), &fixture).await;
            engines.insert(fixture.clone(), engine);
        }
        check_text(&engines[&fixture], &path, &text, &mut failures).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
