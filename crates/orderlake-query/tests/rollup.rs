//! `daily_activity` answers exactly what the same SQL over `order_events` answers, whether a date
//! comes from the stored rollup or from its rows: after the first rollup, after late events land
//! on a closed date, after compaction rewrites the files, and after maintenance catches up;
//! distinct customers merged from daily sketches equal the same sketches built from the rows; and
//! KPI queries over `order_events` answered from the rollup equal the same queries over the rows.

use std::collections::HashMap;
use std::sync::Arc;

use orderlake_archive::ArchiveTable;
use orderlake_archive::files::days_since_epoch;
use orderlake_archive::{MaintenanceSettings, Partitioning, rollup};
use orderlake_ingest::SourceRecord;
use orderlake_query::ColdQueryEngine;
use orderlake_samples::SampleSettings;

mod support;
use support::run;
#[path = "support/sample_archive.rs"]
mod sample_archive;
use sample_archive::{archive, create, engine, engine_with, location, records, records_after};

/// Dates this many days old are closed.
const CLOSED_AFTER_DAYS: i64 = 2;

fn closed_before() -> i32 {
    days_since_epoch(chrono::Utc::now().date_naive() - chrono::Duration::days(CLOSED_AFTER_DAYS))
}

/// The rollup's measures, computed from the rows by SQL.
const FROM_ROWS: &str = "
SELECT event_date, facility_id, count(*) AS events,
       count(*) FILTER (WHERE total_amount IS NOT NULL) AS orders,
       sum(total_amount) AS revenue,
       count(*) FILTER (WHERE upper(status) = 'CANCELLED') AS cancellations,
       coalesce(sum(cardinality(items)), 0) AS items,
       hll_estimate(hll_sketch(customer_id)) AS customers
FROM order_events {where} GROUP BY 1, 2 ORDER BY 1, 2";

const FROM_ROLLUP: &str = "
SELECT event_date, facility_id, events, orders, revenue, cancellations, items, customers
FROM daily_activity {where} ORDER BY 1, 2";

/// Per month: orders and distinct customers, merged from per-day sketches.
const MONTHLY_FROM_ROWS: &str = "
SELECT date_trunc('month', event_date) AS month, sum(orders) AS orders,
       hll_estimate(hll_union(sketch)) AS customers
FROM (SELECT event_date, facility_id,
             count(*) FILTER (WHERE total_amount IS NOT NULL) AS orders,
             hll_sketch(customer_id) AS sketch
      FROM order_events GROUP BY 1, 2) AS d
GROUP BY 1 ORDER BY 1";

const MONTHLY_FROM_ROLLUP: &str = "
SELECT date_trunc('month', event_date) AS month, sum(orders) AS orders,
       hll_estimate(hll_union(customers_sketch)) AS customers
FROM daily_activity GROUP BY 1 ORDER BY 1";

/// How many dates a scan of `daily_activity` under `where` serves from the rollup and from rows.
async fn dates_served(engine: &Arc<ColdQueryEngine>, filter: &str) -> (usize, usize) {
    let plan = run(
        engine,
        &format!("EXPLAIN SELECT * FROM daily_activity {filter}"),
        vec![],
    )
    .await
    .join("\n");
    let field = |name: &str| -> usize {
        let start = plan
            .find(name)
            .unwrap_or_else(|| panic!("no {name} in\n{plan}"))
            + name.len();
        plan[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    (field("dates_from_rollup="), field("dates_from_rows="))
}

/// Every rollup-served answer equals the answer from the rows: all dates, a date range, months.
async fn assert_rollup_equals_rows(engine: &Arc<ColdQueryEngine>, since: &str) {
    for filter in ["", &format!("WHERE event_date >= DATE '{since}'")] {
        let rows = run(engine, &FROM_ROWS.replace("{where}", filter), vec![]).await;
        let served = run(engine, &FROM_ROLLUP.replace("{where}", filter), vec![]).await;
        assert!(rows.len() > 10, "{rows:?}");
        assert_eq!(served, rows, "daily_activity {filter}");
    }
    let rows = run(engine, MONTHLY_FROM_ROWS, vec![]).await;
    assert_eq!(run(engine, MONTHLY_FROM_ROLLUP, vec![]).await, rows);
}

/// `events` sample records of two hours from `start`, their offsets following `archived`'s.
fn more(
    archived: &[SourceRecord],
    start: chrono::DateTime<chrono::Utc>,
    events: u64,
    seed: u64,
) -> Vec<SourceRecord> {
    let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
    for r in archived {
        let next = offsets.entry((r.topic.clone(), r.partition)).or_default();
        *next = (*next).max(r.offset + 1);
    }
    let settings = SampleSettings {
        seed,
        start,
        span: chrono::Duration::hours(2).min(chrono::Utc::now() - start),
        customers: 50,
        expected_events: events,
        malformed_share: 0.05,
        ..SampleSettings::default()
    };
    records_after(settings, &mut offsets).0
}

/// Archives `events` sample records of the last 90 days and a few of today (an open date), in
/// commits of 1,000, to a table with `partitioning`; returns them.
async fn archive_until_now(
    dir: &std::path::Path,
    events: u64,
    partitioning: Partitioning,
) -> Vec<SourceRecord> {
    create(dir, partitioning).await;
    let (mut all, _, _) = records(events);
    all.extend(more(
        &all,
        chrono::Utc::now() - chrono::Duration::hours(1),
        80,
        98,
    ));
    for chunk in all.chunks(1_000) {
        archive(dir, chunk, true).await;
    }
    all
}

/// What `daily_activity` can serve from a complete rollup: the dates with rows in closed
/// partitions; and what it computes from rows then: the dates of open partitions that the live
/// files may hold (by their statistics); and every date the files may hold.
async fn closed_and_open(dir: &std::path::Path) -> (usize, usize, usize) {
    let table = ArchiveTable::open(location(dir)).await.unwrap();
    let live = rollup::LiveRows::of(&table.files().unwrap());
    let partitioning = table.partitioning();
    let is_closed =
        |d: i32| partitioning.dates_of(partitioning.partition_of(d)).1 < closed_before();
    let engine = engine_with(dir, |s| s.use_rollup = false).await;
    let with_rows = run(
        &engine,
        "SELECT DISTINCT event_date FROM order_events",
        vec![],
    )
    .await;
    let closed = with_rows
        .iter()
        .filter_map(|line| {
            let text = line.trim_matches(|c| c == '|' || c == ' ');
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
        })
        .filter(|d| is_closed(days_since_epoch(*d)))
        .count();
    let open = live.dates().iter().filter(|d| !is_closed(**d)).count();
    (closed, open, live.dates().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_answers_equal_row_answers_through_late_events_and_compaction_daily() {
    rollup_answers_equal_row_answers(Partitioning::Daily).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_answers_equal_row_answers_through_late_events_and_compaction_monthly() {
    rollup_answers_equal_row_answers(Partitioning::Monthly).await;
}

async fn rollup_answers_equal_row_answers(partitioning: Partitioning) {
    let dir = tempfile::tempdir().unwrap();
    let all = archive_until_now(dir.path(), 5_000, partitioning).await;
    let since = (chrono::Utc::now() - chrono::Duration::days(40))
        .date_naive()
        .to_string();

    // Before any rollup, every date comes from its rows.
    let engine = engine(dir.path(), true).await;
    let (closed, open, live) = closed_and_open(dir.path()).await;
    assert!(closed > 50 && open >= 1, "{closed} closed, {open} open");
    assert_eq!(dates_served(&engine, "").await, (0, live));
    assert_rollup_equals_rows(&engine, &since).await;

    // The first rollup covers every closed date; open dates still come from their rows.
    let mut table = ArchiveTable::open(location(dir.path())).await.unwrap();
    let report = table.update_rollup(closed_before(), false).await.unwrap();
    assert_eq!((report.dates_computed, report.dates_kept), (closed, 0));
    // A running engine sees the new rollup without a new table version.
    engine.refresh().await.unwrap();
    assert_eq!(dates_served(&engine, "").await, (closed, open));
    let filtered = dates_served(&engine, &format!("WHERE event_date >= DATE '{since}'")).await;
    assert!(
        filtered.0 > 10 && filtered.0 < closed - 10 && filtered.1 == open,
        "a date filter reads only its dates: {filtered:?}"
    );
    assert_rollup_equals_rows(&engine, &since).await;

    // Late events land on a closed date: that date comes from its rows until maintenance.
    let late_records = more(
        &all,
        chrono::Utc::now() - chrono::Duration::days(30),
        120,
        99,
    );
    archive(dir.path(), &late_records, true).await;
    engine.refresh().await.unwrap();
    let (served, computed) = dates_served(&engine, "").await;
    assert!(
        served < closed && computed > open,
        "late dates must come from rows: {served} from the rollup, {computed} from rows"
    );
    assert_rollup_equals_rows(&engine, &since).await;

    // Compaction rewrites closed partitions' files: unchanged rows keep their rollup.
    table
        .compact(&MaintenanceSettings::default(), |_, _| {})
        .await
        .unwrap();
    engine.refresh().await.unwrap();
    let after_compaction = dates_served(&engine, "").await;
    assert_eq!(after_compaction.0, served);
    if partitioning == Partitioning::Daily {
        assert_eq!(after_compaction.1, computed);
    }
    assert_rollup_equals_rows(&engine, &since).await;

    // Maintenance recomputes just the partitions the late events changed.
    let report = table.update_rollup(closed_before(), false).await.unwrap();
    assert_eq!(report.dates_computed + report.dates_kept, closed);
    assert!(
        report.dates_computed > 0 && report.dates_kept > 0,
        "{report:?}"
    );
    if partitioning == Partitioning::Daily {
        assert_eq!(report.dates_computed, computed - open);
    }
    engine.refresh().await.unwrap();
    assert_eq!(dates_served(&engine, "").await, (closed, open));
    assert_rollup_equals_rows(&engine, &since).await;

    // The merged estimate is close to the exact distinct count.
    let exact = run(
        &engine,
        "SELECT count(DISTINCT customer_id) FROM order_events",
        vec![],
    )
    .await;
    let estimate = run(
        &engine,
        "SELECT hll_estimate(hll_union(customers_sketch)) FROM daily_activity",
        vec![],
    )
    .await;
    let number = |lines: &[String]| -> f64 {
        lines[3]
            .trim_matches(|c| c == '|' || c == ' ')
            .parse()
            .unwrap()
    };
    let (exact, estimate) = (number(&exact), number(&estimate));
    assert!(
        (estimate - exact).abs() / exact < 0.05,
        "estimate {estimate}, exact {exact}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_rollup_is_ignored_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), Partitioning::Monthly).await;
    let (records, _, _) = records(1_500);
    archive(dir.path(), &records, true).await;
    let mut table = ArchiveTable::open(location(dir.path())).await.unwrap();
    table.update_rollup(closed_before(), false).await.unwrap();
    let object = dir.path().join(rollup::ROLLUP_DIR).join("daily.parquet");
    std::fs::write(&object, b"not parquet").unwrap();

    let engine = engine(dir.path(), true).await;
    let (closed, open, live) = closed_and_open(dir.path()).await;
    assert_eq!(dates_served(&engine, "").await, (0, live));
    let since = (chrono::Utc::now() - chrono::Duration::days(40))
        .date_naive()
        .to_string();
    assert_rollup_equals_rows(&engine, &since).await;

    let report = table.update_rollup(closed_before(), false).await.unwrap();
    assert_eq!((report.dates_computed, report.dates_kept), (closed, 0));
    let engine = self::engine(dir.path(), true).await;
    assert_eq!(dates_served(&engine, "").await, (closed, open));
}

/// KPI queries over `order_events` the rollup can answer, and look-alikes it cannot.
const KPI_QUERIES: [(&str, bool); 7] = [
    (
        "SELECT event_date, facility_id, count(*) FILTER (WHERE total_amount IS NOT NULL) AS o,
                sum(total_amount) AS r, count(*) FILTER (WHERE upper(status) = 'CANCELLED') AS c
         FROM order_events WHERE event_date >= DATE '{since}'
         GROUP BY event_date, facility_id ORDER BY 1, 2",
        true,
    ),
    (
        "SELECT date_trunc('month', event_date) AS m, count(*), count(total_amount),
                sum(total_amount)
         FROM order_events GROUP BY 1 ORDER BY 1",
        true,
    ),
    (
        "SELECT count(*), sum(total_amount) FROM order_events
         WHERE event_date >= DATE '{since}' AND facility_id IS NOT NULL",
        true,
    ),
    (
        "SELECT count(*), sum(total_amount) FROM order_events WHERE event_date > DATE '2100-01-01'",
        true,
    ),
    (
        "SELECT event_date, count(*) FROM order_events WHERE status = 'PAID' GROUP BY 1 ORDER BY 1",
        false,
    ),
    (
        "SELECT event_date, count(DISTINCT customer_id) FROM order_events GROUP BY 1 ORDER BY 1",
        false,
    ),
    (
        "SELECT facility_id, max(total_amount) FROM order_events GROUP BY 1 ORDER BY 1",
        false,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpi_queries_over_order_events_are_answered_from_the_rollup_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let all = archive_until_now(dir.path(), 3_000, Partitioning::Daily).await;
    let mut table = ArchiveTable::open(location(dir.path())).await.unwrap();
    table.update_rollup(closed_before(), false).await.unwrap();
    // A late event after the rollup: its date is computed from rows.
    let late = more(
        &all,
        chrono::Utc::now() - chrono::Duration::days(20),
        40,
        96,
    );
    archive(dir.path(), &late, true).await;

    let served = engine(dir.path(), true).await;
    let rows = engine_with(dir.path(), |s| s.use_rollup = false).await;
    let since = (chrono::Utc::now() - chrono::Duration::days(40))
        .date_naive()
        .to_string();
    for (sql, from_rollup) in KPI_QUERIES {
        let sql = sql.replace("{since}", &since);
        let expected = run(&rows, &sql, vec![]).await;
        assert_eq!(run(&served, &sql, vec![]).await, expected, "{sql}");
        let plan = run(&served, &format!("EXPLAIN {sql}"), vec![])
            .await
            .join("\n");
        assert_eq!(
            plan.contains("DailyActivityExec"),
            from_rollup,
            "{sql}\n{plan}"
        );
    }
}
