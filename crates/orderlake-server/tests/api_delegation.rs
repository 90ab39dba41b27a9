//! The API service's delegation, as the seeds describe it: lookups about orders older than two
//! years go to the archive, parameterized, with a service token. Over a generated history that
//! ended more than two years ago, "order X with its items and journey" and "customer Y's orders
//! between two dates" must answer exactly what the generator says it produced, through Flight
//! SQL and through Trino's protocol (the `trino` Python client, as a service written for Trino).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow_flight::sql::client::FlightSqlServiceClient;
use chrono::{Duration, Utc};
use orderlake_ingest::SourceRecord;
use orderlake_samples::{OrderEventGenerator, RecordKind, SampleSettings};
use support::{TestServer, fetch, rows};
use tonic::transport::Channel;

/// How the views name a producer's status.
fn normalised(status: &str) -> String {
    match status.to_ascii_uppercase().as_str() {
        "PLACED" => "CREATED".to_owned(),
        other => other.to_owned(),
    }
}

#[derive(Debug, Default)]
struct ExpectedHistory {
    /// order → (event time ms, status) of each valid event.
    journeys: BTreeMap<String, Vec<(i64, String)>>,
    /// order → (customer, placement time ms, line items).
    placements: BTreeMap<String, (String, i64, usize)>,
}

fn generate(events: u64) -> (Vec<SourceRecord>, ExpectedHistory) {
    let now = Utc::now();
    let mut generator = OrderEventGenerator::new(SampleSettings {
        seed: 7,
        start: now - Duration::days(365 * 6),
        span: Duration::days(365 * 3),
        customers: 40,
        expected_events: events,
        ..SampleSettings::default()
    });
    let mut offsets = HashMap::new();
    let mut records = Vec::new();
    let mut expected = ExpectedHistory::default();
    for _ in 0..events {
        let r = generator.next().expect("the generator is endless");
        if let RecordKind::Valid(e) = &r.kind {
            expected
                .journeys
                .entry(e.order_id.clone())
                .or_default()
                .push((e.event_time_ms, normalised(&e.status)));
            if e.total_amount.is_some() {
                expected.placements.insert(
                    e.order_id.clone(),
                    (e.customer_id.clone(), e.event_time_ms, e.items),
                );
            }
        }
        records.push(support::source_record(r, &mut offsets));
    }
    for journey in expected.journeys.values_mut() {
        journey.sort();
    }
    (records, expected)
}

fn one_row(columns: Vec<(&str, DataType, Arc<dyn arrow::array::Array>)>) -> RecordBatch {
    let schema = Schema::new(
        columns
            .iter()
            .map(|(n, t, _)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, _, a)| a).collect(),
    )
    .unwrap()
}

async fn prepared_rows(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
    params: RecordBatch,
) -> Vec<String> {
    let mut statement = client.prepare(sql.into(), None).await.unwrap();
    statement.set_parameters(params).unwrap();
    let info = statement.execute().await.unwrap();
    let out = rows(&fetch(client, info).await);
    statement.close().await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_and_customer_lookups_on_history_older_than_two_years() {
    let (records, expected) = generate(4000);
    let two_years_ago = (Utc::now() - Duration::days(730)).timestamp_millis();
    assert!(
        records
            .iter()
            .all(|r| r.timestamp_ms.unwrap() < two_years_ago)
    );
    let server = TestServer::start(&records, |c| {
        c.trino.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let trino = Trino {
        addr: server
            .server
            .trino_addr()
            .expect("the Trino listener is on"),
        token: server.service_token.clone(),
    };

    // The API service authenticates with its long-lived token, no handshake.
    let mut api = FlightSqlServiceClient::new(server.channel().await);
    api.set_token(server.service_token.clone());

    // Order X, with its items and its journey: an order that went through several steps.
    let (order, journey) = expected
        .journeys
        .iter()
        .filter(|(o, j)| j.len() >= 4 && expected.placements.contains_key(*o))
        .max_by_key(|(o, j)| (j.len(), (*o).clone()))
        .expect("some order has a long journey");
    let (customer, placed_ms, items) = &expected.placements[order];
    let by_id = one_row(vec![(
        "$1",
        DataType::Utf8,
        Arc::new(StringArray::from(vec![order.as_str()])),
    )]);
    let summary = prepared_rows(
        &mut api,
        "SELECT order_id, customer_id, status, item_count FROM orders WHERE order_id = ?",
        by_id.clone(),
    )
    .await;
    let last_status = &journey.last().unwrap().1;
    assert_eq!(
        summary,
        [format!("{order}|{customer}|{last_status}|{items}")]
    );
    // The same question through Trino's protocol, as a service written for Trino asks it.
    assert_eq!(
        trino
            .rows(
                "SELECT order_id, customer_id, status, item_count FROM orders WHERE order_id = ?",
                serde_json::json!([order]),
            )
            .await,
        summary
    );
    let lines = prepared_rows(
        &mut api,
        "SELECT sku, quantity FROM order_items WHERE order_id = ? ORDER BY sku",
        by_id.clone(),
    )
    .await;
    assert_eq!(lines.len(), *items, "{lines:?}");
    let steps = prepared_rows(
        &mut api,
        "SELECT step, status FROM order_status_history WHERE order_id = $1 ORDER BY step",
        by_id,
    )
    .await;
    let want: Vec<String> = journey
        .iter()
        .enumerate()
        .map(|(i, (_, s))| format!("{}|{s}", i + 1))
        .collect();
    assert_eq!(steps, want);
    assert_eq!(
        trino
            .rows(
                "SELECT step, status FROM order_status_history WHERE order_id = ? ORDER BY step",
                serde_json::json!([order]),
            )
            .await,
        want
    );
    assert!(*placed_ms < two_years_ago);

    // Customer Y's orders between two dates: the busiest customer, over the middle of history.
    let mut per_customer: BTreeMap<&str, Vec<(i64, &str)>> = BTreeMap::new();
    for (order, (customer, placed, _)) in &expected.placements {
        per_customer
            .entry(customer)
            .or_default()
            .push((*placed, order));
    }
    let (customer, orders) = per_customer
        .iter()
        .max_by_key(|(c, o)| (o.len(), **c))
        .unwrap();
    let mut times: Vec<i64> = orders.iter().map(|(t, _)| *t).collect();
    times.sort_unstable();
    // Whole days, as the API asks: producers write placement times to the second or the
    // millisecond, and a day boundary falls the same way for both.
    let day = |ms: i64| ms - ms.rem_euclid(86_400_000);
    let (from_ms, to_ms) = (day(times[times.len() / 4]), day(times[3 * times.len() / 4]));
    let want: BTreeSet<&str> = orders
        .iter()
        .filter(|(t, _)| (from_ms..to_ms).contains(t))
        .map(|(_, o)| *o)
        .collect();
    assert!(want.len() >= 2, "a meaningful range: {want:?}");
    let ts = |ms: i64| -> Arc<dyn arrow::array::Array> {
        Arc::new(TimestampMicrosecondArray::from(vec![ms * 1000]).with_timezone("UTC"))
    };
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let params = one_row(vec![
        (
            "$1",
            DataType::Utf8,
            Arc::new(StringArray::from(vec![*customer])),
        ),
        ("$2", utc.clone(), ts(from_ms)),
        ("$3", utc, ts(to_ms)),
    ]);
    let got = prepared_rows(
        &mut api,
        "SELECT order_id FROM orders WHERE customer_id = $1 AND placed_at >= $2 AND placed_at < $3 \
         ORDER BY order_id",
        params,
    )
    .await;
    let want: Vec<String> = want.into_iter().map(str::to_owned).collect();
    assert_eq!(got, want);
    assert_eq!(
        trino
            .rows(
                "SELECT order_id FROM orders WHERE customer_id = ? AND placed_at >= ? \
                 AND placed_at < ? ORDER BY order_id",
                serde_json::json!([customer, {"utc_ms": from_ms}, {"utc_ms": to_ms}]),
            )
            .await,
        want
    );
}

/// The Trino front door as the API service reaches it: the `trino` Python client with the
/// service token.
struct Trino {
    addr: std::net::SocketAddr,
    token: String,
}

impl Trino {
    async fn rows(&self, sql: &str, params: serde_json::Value) -> Vec<String> {
        let python = std::env::var("ORDERLAKE_TEST_PYTHON")
            .expect("ORDERLAKE_TEST_PYTHON names a Python with the trino client");
        let mut command = std::process::Command::new(python);
        command
            .arg(support::repo_path("tests/python/trino_query.py"))
            .args([
                self.addr.ip().to_string(),
                self.addr.port().to_string(),
                self.token.clone(),
                sql.to_owned(),
                params.to_string(),
            ]);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}
