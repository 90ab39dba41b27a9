//! The server through arrow-flight's own Flight SQL client, on port 0, over an archive written by
//! the archiver's decoding and writer: statements stream, prepared statements bind `?` and `$n`,
//! metadata commands describe the archive, errors carry precise codes, the JDBC driver's call
//! sequence works, and new commits become visible without a restart. Malformed and foreign
//! requests are in `hostile_requests.rs`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::{
    Any, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandStatementQuery, ProstMessageExt as _, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{Action, FlightDescriptor};
use futures::TryStreamExt as _;
use orderlake_ingest::SourceRecord;
use orderlake_server::session::{
    CATALOG, CLOSE_SESSION, CloseSessionResult, GET_SESSION_OPTIONS, GetSessionOptionsRequest,
    GetSessionOptionsResult, SCHEMA, SET_SESSION_OPTIONS, SessionOptionValue,
    SetSessionOptionsRequest, SetSessionOptionsResult, TIME_ZONE,
};
use prost::Message as _;
use support::{TestServer, fetch, fetch_code, fixture_records, query, rows, signed};
use tonic::Code;

/// The status code of running `sql` as a statement, through the raw Flight client (the Flight
/// SQL client folds codes into text).
async fn code_of(server: &TestServer, token: Option<&str>, sql: &str) -> (Code, String) {
    let mut raw =
        arrow_flight::flight_service_client::FlightServiceClient::new(server.channel().await);
    let cmd = CommandStatementQuery {
        query: sql.to_owned(),
        transaction_id: None,
    };
    match raw
        .get_flight_info(signed(
            FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec()),
            token,
        ))
        .await
    {
        Ok(info) => {
            // Planning passed: the error (if any) comes when the query runs.
            let ticket = info.into_inner().endpoint[0].ticket.clone().unwrap();
            fetch_code(&mut raw, ticket, token).await
        }
        Err(s) => (s.code(), s.message().to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_stream_results_with_trino_names() {
    let server = TestServer::start(&fixture_records(), |_| {}).await;
    let mut client = server.client().await;

    let info = client
        .execute(
            "SELECT order_id, status FROM orders ORDER BY order_id".into(),
            None,
        )
        .await
        .unwrap();
    // The ticket carries the query, not its results.
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let any = Any::decode(ticket.ticket.clone()).unwrap();
    let statement: TicketStatementQuery = any.unpack().unwrap().unwrap();
    let handle: serde_json::Value = serde_json::from_slice(&statement.statement_handle).unwrap();
    assert_eq!(
        handle["sql"],
        "SELECT order_id, status FROM orders ORDER BY order_id"
    );
    let batches = fetch(&mut client, info).await;
    assert_eq!(
        rows(&batches),
        ["10000003|PAID", "A-1|DELIVERED", "A-2|CANCELLED"]
    );

    // Three-part names, the default catalog and schema, information_schema.
    let full = query(&mut client, "SELECT count(*) FROM archive.oms.order_events").await;
    assert_eq!(rows(&full), ["9"]);
    let partial = query(
        &mut client,
        "SELECT count(*) FROM oms.order_events WHERE decode_error IS NOT NULL",
    )
    .await;
    assert_eq!(rows(&partial), ["1"]);
    let tables = query(
        &mut client,
        "SELECT table_name, table_type FROM information_schema.tables \
         WHERE table_schema = 'oms' ORDER BY table_name",
    )
    .await;
    assert_eq!(
        rows(&tables),
        [
            "customer_purchase_summary|VIEW",
            "daily_activity|BASE TABLE",
            "daily_order_kpis|VIEW",
            "legacy_orders_current|VIEW",
            "order_events|BASE TABLE",
            "order_items|VIEW",
            "order_status_history|VIEW",
            "orders|VIEW"
        ]
    );
    let show = rows(&query(&mut client, "SHOW TABLES").await);
    assert!(show.iter().any(|r| r.contains("order_events")), "{show:?}");
    let catalogs = rows(&query(&mut client, "SHOW CATALOGS").await);
    // As in Trino, the `system` catalog holds `runtime.queries`.
    assert_eq!(catalogs, ["archive", "system"]);
    let schemas = rows(&query(&mut client, "SHOW SCHEMAS").await);
    assert!(schemas.contains(&"oms".to_owned()), "{schemas:?}");
    let columns = rows(&query(&mut client, "SHOW COLUMNS FROM orders").await);
    assert!(
        columns.iter().any(|r| r.contains("item_count")),
        "{columns:?}"
    );
    let described = rows(&query(&mut client, "DESCRIBE order_events").await);
    assert!(
        described
            .iter()
            .any(|r| r.starts_with("kafka_offset|Int64")),
        "{described:?}"
    );
    let explained = rows(
        &query(
            &mut client,
            "EXPLAIN SELECT * FROM orders WHERE order_id = 'A-1'",
        )
        .await,
    );
    assert!(!explained.is_empty());
    let analyzed = rows(
        &query(
            &mut client,
            "EXPLAIN ANALYZE SELECT count(*) FROM order_events",
        )
        .await,
    );
    assert!(
        analyzed.iter().any(|r| r.contains("metrics")),
        "{analyzed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_bind_question_marks_and_numbered_placeholders() {
    let server = TestServer::start(&fixture_records(), |_| {}).await;
    let mut client = server.client().await;

    let mut by_order = client
        .prepare(
            "SELECT order_id, status, item_count FROM orders WHERE order_id = ?".into(),
            None,
        )
        .await
        .unwrap();
    let params = by_order.parameter_schema().unwrap().clone();
    assert_eq!(params.fields().len(), 1);
    assert_eq!(params.field(0).data_type(), &DataType::Utf8);
    for (order, expected) in [("A-2", "A-2|CANCELLED|1"), ("A-1", "A-1|DELIVERED|2")] {
        let bound = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(vec![order]))],
        )
        .unwrap();
        by_order.set_parameters(bound).unwrap();
        let info = by_order.execute().await.unwrap();
        assert_eq!(rows(&fetch(&mut client, info).await), [expected]);
    }
    by_order.close().await.unwrap();

    let mut numbered = client
        .prepare(
            "SELECT order_id FROM orders WHERE customer_id = $1 AND status <> $2 ORDER BY order_id"
                .into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(numbered.parameter_schema().unwrap().fields().len(), 2);
    let bound = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Utf8, true),
            Field::new("$2", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["C-1"])),
            Arc::new(StringArray::from(vec!["CANCELLED"])),
        ],
    )
    .unwrap();
    numbered.set_parameters(bound).unwrap();
    let info = numbered.execute().await.unwrap();
    assert_eq!(rows(&fetch(&mut client, info).await), ["A-1"]);
    numbered.close().await.unwrap();

    // A statement executed without its parameter is refused, not guessed.
    let mut unbound = client
        .prepare(
            "SELECT order_id FROM orders WHERE order_id = ?".into(),
            None,
        )
        .await
        .unwrap();
    let info = unbound.execute().await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let err = match client.do_get(ticket).await {
        Err(e) => e.to_string(),
        Ok(s) => s.try_collect::<Vec<_>>().await.unwrap_err().to_string(),
    };
    assert!(err.contains("parameter"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_commands_describe_the_archive() {
    let server = TestServer::start(&fixture_records(), |_| {}).await;
    let mut client = server.client().await;

    let info = client.get_catalogs().await.unwrap();
    assert_eq!(rows(&fetch(&mut client, info).await), ["archive", "system"]);

    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let schemas = rows(&fetch(&mut client, info).await);
    assert!(schemas.contains(&"archive|oms".to_owned()), "{schemas:?}");
    assert!(
        schemas.contains(&"archive|information_schema".to_owned()),
        "{schemas:?}"
    );

    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("oms".into()),
            table_name_filter_pattern: Some("order%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await;
    assert_eq!(
        batches[0].schema().fields().len(),
        5,
        "table_schema column included"
    );
    let tables: Vec<String> = rows(&batches)
        .iter()
        .map(|r| r.split('|').take(4).collect::<Vec<_>>().join("|"))
        .collect();
    assert_eq!(
        tables,
        [
            "archive|oms|order_events|TABLE",
            "archive|oms|order_items|VIEW",
            "archive|oms|order_status_history|VIEW",
            "archive|oms|orders|VIEW",
        ]
    );
    let info = client
        .get_tables(CommandGetTables {
            catalog: Some("archive".into()),
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec!["VIEW".into()],
            include_schema: false,
        })
        .await
        .unwrap();
    let views = rows(&fetch(&mut client, info).await);
    assert!(
        views.iter().all(|r| r.ends_with("|VIEW")) && views.len() >= 5,
        "{views:?}"
    );

    let info = client.get_table_types().await.unwrap();
    assert_eq!(rows(&fetch(&mut client, info).await), ["TABLE", "VIEW"]);

    let info = client
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
            SqlInfo::FlightSqlServerCancel,
            SqlInfo::SqlIdentifierQuoteChar,
        ])
        .await
        .unwrap();
    let info_rows = rows(&fetch(&mut client, info).await);
    assert_eq!(info_rows.len(), 4, "{info_rows:?}");
    assert!(
        info_rows.iter().any(|r| r.contains("orderlake")),
        "{info_rows:?}"
    );
    // All of it, as JDBC asks for it.
    let info = client.get_sql_info(vec![]).await.unwrap();
    assert!(rows(&fetch(&mut client, info).await).len() > 60);

    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let types = rows(&fetch(&mut client, info).await);
    assert!(types.iter().any(|r| r.starts_with("VARCHAR|")), "{types:?}");

    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "order_events".into(),
        })
        .await
        .unwrap();
    // Empty, but typed: the schema names the key columns.
    let schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(schema.field(2).name(), "table_name");
    assert_eq!(schema.field(5).name(), "key_sequence");
    let keys = fetch(&mut client, info).await;
    assert_eq!(keys.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_precise_codes_and_writes_are_refused() {
    let server = TestServer::start(&fixture_records(), |_| {}).await;
    let client = server.client().await;
    let token = client.token().unwrap().clone();
    let token = Some(token.as_str());

    let (code, message) = code_of(&server, token, "SELEC order_id FROM orders").await;
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("Line: 1, Column"), "{message}");

    let (code, message) = code_of(&server, token, "SELECT * FROM archive.oms.no_such_table").await;
    assert_eq!(code, Code::NotFound, "{message}");
    assert!(message.contains("no_such_table"), "{message}");

    let (code, message) = code_of(&server, token, "SELECT no_such_column FROM orders").await;
    assert_eq!(code, Code::NotFound, "{message}");

    for sql in [
        "INSERT INTO order_events (order_id) VALUES ('x')",
        "DELETE FROM order_events",
        "DROP TABLE order_events",
        "CREATE VIEW mine AS SELECT 1",
        "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (SELECT 1) TO '/tmp/orderlake-copy.csv'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * FROM '/etc/passwd'",
    ] {
        let (code, message) = code_of(&server, token, sql).await;
        assert_eq!(code, Code::PermissionDenied, "{sql}: {message}");
        assert!(message.contains("refused"), "{sql}: {message}");
    }
    assert!(!std::path::Path::new("/tmp/orderlake-copy.csv").exists());

    let (code, _) = code_of(&server, None, "SELECT 1").await;
    assert_eq!(code, Code::Unauthenticated);
    let (code, _) = code_of(&server, Some("forged-token"), "SELECT 1").await;
    assert_eq!(code, Code::Unauthenticated);
    let mut wrong = arrow_flight::sql::client::FlightSqlServiceClient::new(server.channel().await);
    let err = wrong
        .handshake(support::USER, "wrong password")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("wrong user name or password"),
        "{err}"
    );

    // A service token works without a handshake.
    let (code, message) = code_of(
        &server,
        Some(&server.service_token),
        "SELECT count(*) FROM orders",
    )
    .await;
    assert_eq!(code, Code::Ok, "{message}");
}

async fn action<T: prost::Message + Default>(
    client: &mut arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
    kind: &str,
    body: Vec<u8>,
) -> T {
    let mut results = client
        .do_action(Action {
            r#type: kind.into(),
            body: body.into(),
        })
        .await
        .unwrap();
    let result = results.message().await.unwrap().expect("one result");
    T::decode(result.body).unwrap()
}

/// The Arrow Flight SQL JDBC driver's sequence: handshake, GetSqlInfo before anything, the
/// `catalog` property as SetSessionOptions, and every statement as a prepared statement
/// (create → GetFlightInfo → DoGet → close), whether or not it has parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_driver_sequence() {
    let server = TestServer::start(&fixture_records(), |_| {}).await;
    let mut client = server.client().await;

    let info = client.get_sql_info(vec![]).await.unwrap();
    assert!(!fetch(&mut client, info).await.is_empty());

    let set = SetSessionOptionsRequest {
        session_options: [(CATALOG.to_owned(), SessionOptionValue::string("archive"))].into(),
    };
    let result: SetSessionOptionsResult =
        action(&mut client, SET_SESSION_OPTIONS, set.encode_to_vec()).await;
    assert!(result.errors.is_empty(), "{result:?}");

    for (sql, expected) in [
        ("SELECT count(*) FROM orders", vec!["3"]),
        (
            "SELECT status FROM order_status_history WHERE order_id = 'A-1' ORDER BY step",
            vec!["CREATED", "PAID", "SHIPPED", "DELIVERED"],
        ),
    ] {
        let mut prepared = client.prepare(sql.into(), None).await.unwrap();
        assert!(prepared.parameter_schema().unwrap().fields().is_empty());
        assert!(!prepared.dataset_schema().unwrap().fields().is_empty());
        let info = prepared.execute().await.unwrap();
        assert_eq!(rows(&fetch(&mut client, info).await), expected, "{sql}");
        prepared.close().await.unwrap();
    }

    let got: GetSessionOptionsResult = action(
        &mut client,
        GET_SESSION_OPTIONS,
        GetSessionOptionsRequest {}.encode_to_vec(),
    )
    .await;
    assert_eq!(
        got.session_options[CATALOG],
        SessionOptionValue::string("archive")
    );
    assert_eq!(
        got.session_options[SCHEMA],
        SessionOptionValue::string("oms")
    );

    // A schema that does not exist is reported per option, and changes nothing.
    let bad = SetSessionOptionsRequest {
        session_options: [(SCHEMA.to_owned(), SessionOptionValue::string("nope"))].into(),
    };
    let result: SetSessionOptionsResult =
        action(&mut client, SET_SESSION_OPTIONS, bad.encode_to_vec()).await;
    assert!(result.errors.contains_key(SCHEMA), "{result:?}");
    // information_schema as the current schema makes its tables short names.
    let info_schema = SetSessionOptionsRequest {
        session_options: [(
            SCHEMA.to_owned(),
            SessionOptionValue::string("information_schema"),
        )]
        .into(),
    };
    let result: SetSessionOptionsResult = action(
        &mut client,
        SET_SESSION_OPTIONS,
        info_schema.encode_to_vec(),
    )
    .await;
    assert!(result.errors.is_empty(), "{result:?}");
    let n = rows(
        &query(
            &mut client,
            "SELECT count(*) FROM tables WHERE table_name = 'orders'",
        )
        .await,
    );
    assert_eq!(n, ["1"]);

    let closed: CloseSessionResult = action(&mut client, CLOSE_SESSION, Vec::new()).await;
    assert_eq!(closed.status, 1);
    // The session's token ended with it.
    let err = client.execute("SELECT 1".into(), None).await.unwrap_err();
    assert!(err.to_string().contains("sign in again"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_commits_become_visible_without_a_restart() {
    let records = fixture_records();
    let server = TestServer::start(&records, |_| {}).await;
    let mut client = server.client().await;
    assert_eq!(
        rows(&query(&mut client, "SELECT count(*) FROM orders").await),
        ["3"]
    );

    let more = SourceRecord {
        topic: "oms.orders".into(),
        partition: 0,
        offset: 7,
        timestamp_ms: Some(1_709_900_000_000),
        value: Some(
            br#"{"event_id":"e8","event_type":"order_created","order_id":"A-3","customer_id":"C-2","facility_id":"F-1","status":"placed","total_amount":5.0,"currency":"USD","order_datetime":"2024-03-08T12:00:00","items":[]}"#
                .to_vec(),
        ),
        ..SourceRecord::default()
    };
    support::archive(&server.archive_dir, &[more]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n = rows(&query(&mut client, "SELECT count(*) FROM orders").await);
        if n == ["4"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new order never became visible: {n:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Session options beyond the catalog and schema: the time zone `current_timestamp` is shown in,
/// and Trino's session properties, which lower the server's limits for the session only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_options_set_the_time_zone_and_lower_limits() {
    let server = TestServer::start(&fixture_records(), |_| {}).await;
    let mut client = server.client().await;
    let set = |options: Vec<(&str, &str)>| SetSessionOptionsRequest {
        session_options: options
            .into_iter()
            .map(|(k, v)| (k.to_owned(), SessionOptionValue::string(v)))
            .collect(),
    };
    let result: SetSessionOptionsResult = action(
        &mut client,
        SET_SESSION_OPTIONS,
        set(vec![
            (TIME_ZONE, "Asia/Tokyo"),
            ("query_max_run_time", "1s"),
        ])
        .encode_to_vec(),
    )
    .await;
    assert!(result.errors.is_empty(), "{result:?}");
    assert_eq!(
        rows(&query(&mut client, "SELECT arrow_typeof(current_timestamp)").await),
        vec!["Timestamp(ns, \"Asia/Tokyo\")"]
    );
    let slow = "SELECT count(*) FROM generate_series(1, 20000000000) AS t(x) WHERE x % 7 = 3";
    let err = support::run(&mut client, slow).await.unwrap_err();
    assert!(
        support::has_code(&err, Code::DeadlineExceeded) && err.contains("1s time limit"),
        "{err}"
    );
    let got: GetSessionOptionsResult = action(
        &mut client,
        GET_SESSION_OPTIONS,
        GetSessionOptionsRequest {}.encode_to_vec(),
    )
    .await;
    assert_eq!(
        got.session_options["query_max_run_time"],
        SessionOptionValue::string("1.00s")
    );

    // Unreadable values and unknown names are reported per option and change nothing.
    let result: SetSessionOptionsResult = action(
        &mut client,
        SET_SESSION_OPTIONS,
        set(vec![
            (TIME_ZONE, "Mars/Olympus_Mons"),
            ("query_max_memory", "lots"),
            ("join_distribution_type", "BROADCAST"),
        ])
        .encode_to_vec(),
    )
    .await;
    assert_eq!(result.errors.len(), 3, "{result:?}");
    assert_eq!(
        rows(&query(&mut client, "SELECT arrow_typeof(now())").await),
        vec!["Timestamp(ns, \"Asia/Tokyo\")"]
    );
}
