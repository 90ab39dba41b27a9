//! Access rules (issue 13), as two users see them through both front doors: a BI user who reads
//! the events without the customer and raw key columns and never sees the rollup table, and the
//! API service whose token reads only the views. What is hidden is left out of every listing,
//! refused with PERMISSION_DENIED naming what the query wrote, and leaks in no message; views
//! run as their definer; users see only their own queries; an admin stops anyone's.

mod support;

use arrow_flight::sql::CommandGetTables;
use orderlake_query::access::{AccessRules, ColumnRule, QueryRule, TableRule};
use support::{TestServer, USER, fixture_records, has_code, query, rows, run};

fn rules() -> AccessRules {
    AccessRules {
        groups: [
            ("bi".to_owned(), vec![USER.to_owned()]),
            ("admins".to_owned(), vec!["api-service".to_owned()]),
        ]
        .into(),
        tables: vec![
            TableRule {
                user: Some("api-service".into()),
                table: Some("orders|order_status_history".into()),
                privileges: vec!["SELECT".into()],
                ..TableRule::default()
            },
            TableRule {
                group: Some("bi".into()),
                table: Some("order_events".into()),
                privileges: vec!["SELECT".into()],
                columns: ["customer_id", "kafka_key"]
                    .map(|name| ColumnRule {
                        name: name.into(),
                        allow: false,
                    })
                    .into(),
                ..TableRule::default()
            },
            TableRule {
                group: Some("bi".into()),
                table: Some("orders".into()),
                privileges: vec!["SELECT".into()],
                ..TableRule::default()
            },
        ],
        queries: vec![QueryRule {
            group: Some("admins".into()),
            allow: vec!["view".into(), "kill".into()],
            ..QueryRule::default()
        }],
    }
}

fn denied(err: &str) -> bool {
    has_code(err, tonic::Code::PermissionDenied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bi_user_reads_what_the_rules_allow_and_nothing_else() {
    let server = TestServer::start(&fixture_records(), |c| c.access = rules()).await;
    let mut bi = server.client().await;

    // Hidden columns are not in the table: `*` leaves them out, naming one is refused.
    let all = query(&mut bi, "SELECT * FROM order_events").await;
    let names: Vec<String> = all[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert!(names.contains(&"order_id".to_owned()), "{names:?}");
    assert!(
        !names.iter().any(|n| n == "customer_id" || n == "kafka_key"),
        "{names:?}"
    );
    let e = run(&mut bi, "SELECT order_id, customer_id FROM order_events")
        .await
        .unwrap_err();
    assert!(
        denied(&e) && e.contains("[customer_id]") && e.contains("archive.oms.order_events"),
        "{e}"
    );
    let e = run(
        &mut bi,
        "SELECT count(*) FROM order_events WHERE kafka_key IS NOT NULL",
    )
    .await
    .unwrap_err();
    assert!(denied(&e) && e.contains("[kafka_key]"), "{e}");
    // A key lookup still uses the index through the narrowed table.
    assert_eq!(
        rows(
            &query(
                &mut bi,
                "SELECT count(*) FROM order_events WHERE order_id = 'A-1'"
            )
            .await
        ),
        vec!["4"]
    );

    // A hidden table is refused by name, in queries and in EXPLAIN; a missing one is not found.
    for sql in [
        "SELECT * FROM daily_activity",
        "EXPLAIN SELECT * FROM daily_activity",
        "SELECT * FROM archive.oms.order_items",
    ] {
        let e = run(&mut bi, sql).await.unwrap_err();
        assert!(
            denied(&e) && e.contains("Cannot select from table"),
            "{sql}: {e}"
        );
    }
    let e = run(&mut bi, "SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert!(has_code(&e, tonic::Code::NotFound), "{e}");
    // The column list DataFusion offers for a misspelt name holds visible columns only.
    let e = run(&mut bi, "SELECT order_idd FROM order_events")
        .await
        .unwrap_err();
    assert!(
        !e.contains("customer_id") && !e.contains("kafka_key"),
        "{e}"
    );

    // Listings: Flight SQL, both information_schemas, system.jdbc.
    let info = bi
        .get_tables(CommandGetTables {
            catalog: Some("archive".into()),
            include_schema: true,
            ..CommandGetTables::default()
        })
        .await
        .unwrap();
    let listed = rows(&support::fetch(&mut bi, info).await);
    assert!(
        listed.iter().any(|r| r.contains("|order_events|")),
        "{listed:?}"
    );
    for hidden in ["daily_activity", "order_items", "customer_purchase_summary"] {
        assert!(
            !listed.iter().any(|r| r.contains(&format!("|{hidden}|"))),
            "{hidden} listed: {listed:?}"
        );
    }
    for sql in [
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'oms'",
        "SELECT table_name FROM system.jdbc.tables WHERE table_schem = 'oms'",
        "SHOW TABLES",
    ] {
        let names = rows(&query(&mut bi, sql).await).join(",");
        assert!(names.contains("order_events"), "{sql}: {names}");
        assert!(!names.contains("daily_activity"), "{sql}: {names}");
    }
    for sql in [
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'order_events'",
        "SELECT column_name FROM system.jdbc.columns WHERE table_name = 'order_events'",
    ] {
        let columns = rows(&query(&mut bi, sql).await);
        assert!(
            columns.contains(&"order_id".to_owned()),
            "{sql}: {columns:?}"
        );
        assert!(
            !columns.contains(&"customer_id".to_owned()),
            "{sql}: {columns:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_token_reads_views_only_and_queries_are_private() {
    let server = TestServer::start(&fixture_records(), |c| {
        c.access = rules();
        c.trino.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let trino = server.server.trino_addr().unwrap();
    let token = &server.service_token;

    // Views run as their definer: the view reads order_events, which the token may not.
    let orders = support::trino_rows(trino, token, "SELECT count(*) FROM orders")
        .await
        .unwrap();
    assert_eq!(orders, vec!["3"]);
    let error = support::trino_rows(trino, token, "SELECT count(*) FROM order_events")
        .await
        .unwrap_err();
    assert_eq!(error["errorName"], "PERMISSION_DENIED", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("archive.oms.order_events"),
        "{error}"
    );
    let error = support::trino_rows(trino, token, "SHOW CREATE VIEW order_items")
        .await
        .unwrap_err();
    assert_eq!(error["errorName"], "PERMISSION_DENIED", "{error}");
    let views = support::trino_rows(
        trino,
        token,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'oms' ORDER BY 1",
    )
    .await
    .unwrap();
    assert_eq!(views, vec!["order_status_history", "orders"]);

    // With rules in force a user sees only their own queries; an admin (view, kill) sees and
    // stops anyone's.
    let mut bi = server.client().await;
    query(&mut bi, "SELECT count(*) FROM orders").await;
    let who = "SELECT DISTINCT \"user\" FROM system.runtime.queries ORDER BY 1";
    assert_eq!(rows(&query(&mut bi, who).await), vec![USER]);
    let everyone = support::trino_rows(trino, token, who).await.unwrap();
    assert_eq!(everyone, vec![USER, "api-service"]);

    let mut slow_client = server.client().await;
    let slow = tokio::spawn(async move {
        run(
            &mut slow_client,
            "SELECT count(*) FROM generate_series(1, 20000000000) AS t(x) WHERE x % 7 = 3",
        )
        .await
    });
    let running = format!(
        "SELECT query_id FROM system.runtime.queries WHERE \"user\" = '{USER}' AND state = 'RUNNING'"
    );
    let mut id = None;
    for _ in 0..300 {
        let found = support::trino_rows(trino, token, &running).await.unwrap();
        if let Some(first) = found.into_iter().next() {
            id = Some(first);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let id = id.expect("the slow query shows as running");
    support::trino_rows(
        trino,
        token,
        &format!("CALL system.runtime.kill_query(query_id => '{id}', message => 'stop')"),
    )
    .await
    .unwrap();
    let ended = slow.await.unwrap().unwrap_err();
    assert!(ended.contains("cancel"), "{ended}");
}
