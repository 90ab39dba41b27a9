//! Lookups through the key index return exactly the rows a scan without it returns: for random
//! order and customer ids, present and absent, by `=` and `IN`, literal and bound, on the table
//! and through the views; over files the index covers, files committed without a segment, files
//! compaction rewrote, undecodable rows and tombstones; and while a writer and maintenance run
//! alongside. Then `verify` catches a damaged index and `maintain --reindex` repairs it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::common::ScalarValue;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStoreExt as _;
use orderlake_archive::key_index::{self, IndexEntry, KeyColumn};
use orderlake_archive::{ArchiveTable, MaintenanceSettings, Partitioning};
use orderlake_ingest::{ArchiveWriter, MappingSet, SourceMapping, WriterSettings};
use orderlake_query::ColdQueryEngine;
use orderlake_query::scan::ArchiveScanProvider;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};

mod support;
use support::run;
#[path = "support/sample_archive.rs"]
mod sample_archive;
use sample_archive::{archive, create, engine, engine_with, location, records};

/// The queries a lookup of `key` in `column` makes, each with its bound parameters.
fn lookups(column: KeyColumn, keys: &[String]) -> Vec<(String, Vec<ScalarValue>)> {
    let c = column.name();
    let k = &keys[0];
    let list = keys
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let coordinates = "kafka_topic, kafka_partition, kafka_offset, decode_error IS NULL";
    let mut out = vec![
        (
            format!("SELECT {coordinates} FROM order_events WHERE {c} = '{k}' ORDER BY 1, 2, 3"),
            vec![],
        ),
        (
            format!(
                "SELECT {coordinates} FROM order_events WHERE {c} IN ({list}) ORDER BY 1, 2, 3"
            ),
            vec![],
        ),
        (
            format!("SELECT {coordinates} FROM order_events WHERE {c} = $1 ORDER BY 1, 2, 3"),
            vec![ScalarValue::Utf8(Some(k.clone()))],
        ),
        (
            format!(
                "SELECT {coordinates} FROM order_events \
                 WHERE order_id = '{k}' OR customer_id = '{}' ORDER BY 1, 2, 3",
                keys[keys.len() - 1]
            ),
            vec![],
        ),
    ];
    match column {
        KeyColumn::OrderId => {
            out.push((
                format!("SELECT * FROM orders WHERE order_id = '{k}'"),
                vec![],
            ));
            out.push((
                "SELECT * FROM order_status_history WHERE order_id = ? ORDER BY 1, 2, 3".into(),
                vec![ScalarValue::Utf8(Some(k.clone()))],
            ));
            out.push((
                format!("SELECT * FROM order_items WHERE order_id IN ({list}) ORDER BY 1, 2, 3"),
                vec![],
            ));
        }
        KeyColumn::CustomerId => {
            out.push((
                format!("SELECT * FROM customer_purchase_summary WHERE customer_id = '{k}'"),
                vec![],
            ));
            out.push((
                format!("SELECT order_id, status FROM orders WHERE customer_id = '{k}' ORDER BY 1"),
                vec![],
            ));
        }
    }
    out
}

/// Every lookup answers the same with the index as without it.
async fn assert_lookups_exact(dir: &Path, orders: &[String], customers: &[String], rounds: usize) {
    let (indexed, plain) = (engine(dir, true).await, engine(dir, false).await);
    let mut rng = rand::rngs::StdRng::seed_from_u64(rounds as u64);
    let mut checked = 0;
    for round in 0..rounds {
        for (column, pool) in [
            (KeyColumn::OrderId, orders),
            (KeyColumn::CustomerId, customers),
        ] {
            let mut keys: Vec<String> = (0..3)
                .map(|_| pool.choose(&mut rng).unwrap().clone())
                .collect();
            if round % 4 == 0 {
                keys.insert(0, format!("absent-{}", rng.random::<u32>()));
            }
            for (sql, params) in lookups(column, &keys) {
                // Sorted: ties in ORDER BY may come in any order, and only the rows matter here.
                let mut want = run(&plain, &sql, params.clone()).await;
                let mut got = run(&indexed, &sql, params).await;
                want.sort();
                got.sort();
                assert_eq!(got, want, "{sql} with keys {keys:?}");
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
}

/// Compacts the archive in `dir`, which must have closed dates to compact.
async fn compact(dir: &Path) {
    let mut table = ArchiveTable::open(location(dir)).await.unwrap();
    let compacted = table
        .compact(&MaintenanceSettings::default(), |_, _| {})
        .await
        .unwrap();
    assert!(compacted.partitions_compacted > 0);
}

/// How many files the index ruled out for a query, from its EXPLAIN ANALYZE (summed over its
/// scans).
/// The files the index ruled out, per scan of `sql`'s plan.
async fn files_pruned_by_index(engine: &Arc<ColdQueryEngine>, sql: &str) -> Vec<u64> {
    let plan = run(engine, &format!("EXPLAIN ANALYZE {sql}"), vec![])
        .await
        .join("\n");
    let counts: Vec<u64> = plan
        .match_indices("files_pruned_by_index=")
        .map(|(at, m)| {
            plan[at + m.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        !counts.is_empty(),
        "the scan reports index pruning:\n{plan}"
    );
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_through_the_index_equal_full_scans_in_every_state_of_the_index_daily() {
    lookups_through_the_index_equal_full_scans(Partitioning::Daily).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_through_the_index_equal_full_scans_in_every_state_of_the_index_monthly() {
    lookups_through_the_index_equal_full_scans(Partitioning::Monthly).await;
}

async fn lookups_through_the_index_equal_full_scans(partitioning: Partitioning) {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), partitioning).await;
    let (records, orders, customers) = records(6_000);
    // Covered flushes, then a flush committed without a segment.
    for chunk in records[..3_000].chunks(1_000) {
        archive(dir.path(), chunk, true).await;
    }
    archive(dir.path(), &records[3_000..4_000], false).await;
    let table = ArchiveTable::open(location(dir.path())).await.unwrap();
    let status = table.status().await.unwrap();
    assert!(status.index.covered_live_files > 0);
    assert!(
        status.index.covered_live_files < status.files,
        "some files are not covered"
    );
    assert_lookups_exact(dir.path(), &orders, &customers, 12).await;
    let some_order = &orders[orders.len() / 2];
    let some_customer = &customers[customers.len() / 2];
    let indexed = engine(dir.path(), true).await;
    for sql in [
        format!("SELECT * FROM order_events WHERE order_id = '{some_order}'"),
        format!("SELECT * FROM order_events WHERE customer_id = '{some_customer}'"),
        format!("SELECT * FROM orders WHERE order_id = '{some_order}'"),
        format!("SELECT * FROM order_status_history WHERE order_id = '{some_order}'"),
        format!("SELECT * FROM order_items WHERE order_id = '{some_order}'"),
        // A short IN list reaches the scan as `=`s joined by OR.
        format!(
            "SELECT * FROM order_events WHERE customer_id IN ('{some_customer}', '{}')",
            customers[0]
        ),
        format!(
            "SELECT * FROM order_events WHERE order_id = '{some_order}' OR customer_id = '{some_customer}'"
        ),
        // Keys known only when a join's build side has been read: the probe side's scan is
        // narrowed when it starts.
        format!(
            "SELECT e.kafka_offset FROM order_events e \
             JOIN (VALUES ('{some_order}'), ('{}')) AS v(id) ON e.order_id = v.id",
            orders[0]
        ),
        format!(
            "SELECT kafka_offset FROM order_events WHERE order_id IN \
             (SELECT order_id FROM order_events WHERE customer_id = '{some_customer}')"
        ),
        // A customer's orders: the customer is an aggregate of each order's events.
        format!("SELECT * FROM orders WHERE customer_id = '{some_customer}'"),
        format!("SELECT * FROM customer_purchase_summary WHERE customer_id = '{some_customer}'"),
    ] {
        // Over 90 days, a customer has events in every month: with monthly partitions the index
        // rules out files for orders (a few days each), not for customers.
        if partitioning == Partitioning::Monthly && sql.contains("customer_id") {
            continue;
        }
        // Every scan of the plan is narrowed (at planning or, for a join's keys, when it
        // starts): through a view too, no side of it reads the whole table.
        let pruned = files_pruned_by_index(&indexed, &sql).await;
        assert!(
            pruned.iter().all(|&n| n > 0),
            "the index rules files out of every scan of {sql}: {pruned:?}"
        );
    }

    // Compaction rewrites closed dates into files no segment covers yet; more covered flushes.
    compact(dir.path()).await;
    archive(dir.path(), &records[4_000..5_000], true).await;
    assert_lookups_exact(dir.path(), &orders, &customers, 8).await;

    // Maintenance covers everything and merges the segments into one.
    let table = ArchiveTable::open(location(dir.path())).await.unwrap();
    let report = table.update_index().await.unwrap();
    assert!(report.files_indexed > 0);
    let status = table.status().await.unwrap();
    assert_eq!(status.index.covered_live_files, status.files);
    // One segment covers the live files; segments covering only files compaction replaced are
    // left alone while young (a writer's flush may still be committing theirs).
    let live: std::collections::HashSet<String> = table
        .files()
        .unwrap()
        .files
        .into_iter()
        .map(|f| f.relative_path)
        .collect();
    let store = table.index_store();
    let mut covering = 0;
    for (path, size) in key_index::list_segments(&store).await.unwrap() {
        let segment = key_index::Segment::open(&store, path, size).await.unwrap();
        covering += usize::from(segment.covers.iter().any(|f| live.contains(f)));
    }
    assert_eq!(covering, 1);
    archive(dir.path(), &records[5_000..], true).await;
    assert_lookups_exact(dir.path(), &orders, &customers, 12).await;
    let verified = ArchiveTable::open(location(dir.path()))
        .await
        .unwrap()
        .verify()
        .await
        .unwrap();
    assert!(verified.index.is_clean(), "{:?}", verified.index);
    assert_eq!(verified.index.live_files, verified.index.covered_files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_a_damaged_index_and_reindex_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let (records, orders, customers) = records(2_000);
    archive(dir.path(), &records, true).await;
    let table = ArchiveTable::open(location(dir.path())).await.unwrap();
    assert!(table.verify().await.unwrap().is_clean());

    // A segment that claims to cover every live file but lacks one order's entries, as a
    // damaged or hand-edited index would: lookups through it would miss that order.
    let files = table.files().unwrap();
    let victim = orders[orders.len() / 3].clone();
    let store = table.index_store();
    for (path, _) in key_index::list_segments(&store).await.unwrap() {
        store.delete(&path).await.unwrap();
    }
    let plain = engine(dir.path(), false).await;
    let rows = run(
        &plain,
        &format!("SELECT customer_id, event_date FROM order_events WHERE order_id = '{victim}'"),
        vec![],
    )
    .await;
    assert!(rows.len() > 4, "the victim order has rows: {rows:?}");
    let entries: Vec<IndexEntry> = vec![IndexEntry {
        column: KeyColumn::CustomerId,
        key: customers[0].clone(),
        date: files.files[0].dates.unwrap().0,
    }];
    let covers: Vec<String> = files
        .files
        .iter()
        .map(|f| f.relative_path.clone())
        .collect();
    key_index::write_segment(&store, entries, &covers)
        .await
        .unwrap();

    let report = table.verify().await.unwrap();
    assert!(!report.is_clean());
    assert!(report.index.missing_entries > 0);
    assert!(
        report
            .index
            .missing_examples
            .iter()
            .any(|e| e.starts_with("order_id=")),
        "{:?}",
        report.index.missing_examples
    );
    // The damage is real: the index hides the victim's rows.
    let hidden = run(
        &engine(dir.path(), true).await,
        &format!("SELECT customer_id, event_date FROM order_events WHERE order_id = '{victim}'"),
        vec![],
    )
    .await;
    assert_ne!(hidden, rows);

    let rebuilt = table.reindex().await.unwrap();
    assert_eq!(rebuilt.files_indexed, files.files.len());
    let report = table.verify().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.index);
    assert_eq!(report.index.covered_files, files.files.len());
    assert_lookups_exact(dir.path(), &orders, &customers, 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_writer_merges_its_small_segments_and_lookups_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (records, orders, customers) = records(3_000);
    let table = ArchiveTable::open_or_create(location(dir.path()))
        .await
        .unwrap();
    let mut writer = ArchiveWriter::new(table, WriterSettings::default());
    let mappings = MappingSet::new(SourceMapping::defaults()).unwrap();
    // Forty small flushes, as a streaming archiver commits them.
    for chunk in records.chunks(75) {
        orderlake_ingest::archive_records(&mut writer, &mappings, chunk)
            .await
            .unwrap();
    }
    let table = ArchiveTable::open(location(dir.path())).await.unwrap();
    let status = table.status().await.unwrap();
    assert_eq!(status.index.covered_live_files, status.files);
    assert!(
        status.index.summary.segments < 16,
        "40 flushes leave few segments: {:?}",
        status.index
    );
    assert!(table.verify().await.unwrap().is_clean());
    assert_lookups_exact(dir.path(), &orders, &customers, 8).await;
}

/// A session whose `order_events` is `provider`.
fn session_over(provider: ArchiveScanProvider) -> SessionContext {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    ctx.register_table("order_events", Arc::new(provider))
        .unwrap();
    ctx
}

/// Every row of `sql` over one provider, as sorted lines.
async fn provider_rows(provider: ArchiveScanProvider, sql: &str) -> Vec<String> {
    let ctx = session_over(provider);
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// While a streaming writer commits (merging its small segments as it goes) and maintenance
/// compacts and merges the index over and over, each round takes one table version and reads it
/// twice: through the index as loaded at that moment (segments being merged and deleted
/// meanwhile) and without it. The answers agree in every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_stay_exact_while_the_archiver_and_maintenance_run() {
    let dir = tempfile::tempdir().unwrap();
    let (records, orders, customers) = records(4_000);
    archive(dir.path(), &records[..500], true).await;
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (dir, records, done) = (
            dir.path().to_owned(),
            records[500..].to_vec(),
            Arc::clone(&done),
        );
        tokio::spawn(async move {
            let table = ArchiveTable::open(location(&dir)).await.unwrap();
            let mut writer = ArchiveWriter::new(table, WriterSettings::default());
            let mappings = MappingSet::new(SourceMapping::defaults()).unwrap();
            for chunk in records.chunks(50) {
                orderlake_ingest::archive_records(&mut writer, &mappings, chunk)
                    .await
                    .unwrap();
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let maintenance = {
        let (dir, done) = (dir.path().to_owned(), Arc::clone(&done));
        tokio::spawn(async move {
            let mut runs = 0;
            while !done.load(Ordering::SeqCst) {
                let mut table = ArchiveTable::open(location(&dir)).await.unwrap();
                table
                    .compact(&MaintenanceSettings::default(), |_, _| {})
                    .await
                    .unwrap();
                table.update_index().await.unwrap();
                runs += 1;
            }
            runs
        })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(29);
    let mut segments = key_index::SegmentCache::default();
    let mut rounds = 0;
    while !done.load(Ordering::SeqCst) || rounds < 3 {
        let table = ArchiveTable::open(location(dir.path())).await.unwrap();
        let files = Arc::new(table.files().unwrap());
        let index = table.key_index(&mut segments).await.unwrap();
        for (column, pool) in [
            (KeyColumn::OrderId, &orders),
            (KeyColumn::CustomerId, &customers),
        ] {
            let mut keys: Vec<String> = (0..3)
                .map(|_| format!("'{}'", pool.choose(&mut rng).unwrap()))
                .collect();
            keys.push("'absent'".into());
            let sql = format!(
                "SELECT kafka_topic, kafka_partition, kafka_offset FROM order_events \
                 WHERE {} IN ({})",
                column.name(),
                keys.join(", ")
            );
            let indexed = ArchiveScanProvider::new(
                Arc::clone(&files),
                Some((index.clone(), table.index_store())),
            )
            .unwrap();
            let plain = ArchiveScanProvider::new(Arc::clone(&files), None).unwrap();
            assert_eq!(
                provider_rows(indexed, &sql).await,
                provider_rows(plain, &sql).await,
                "{sql} at version {}",
                files.version
            );
        }
        rounds += 1;
    }
    writer.await.unwrap();
    assert!(maintenance.await.unwrap() > 0, "maintenance ran alongside");
    assert!(rounds >= 3);
}

/// The sum of the metric `name` over every node of `plan`.
fn plan_metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
    let own = plan
        .metrics()
        .and_then(|m| m.sum_by_name(name))
        .map_or(0, |v| v.as_usize());
    own + plan
        .children()
        .into_iter()
        .map(|child| plan_metric(child, name))
        .sum::<usize>()
}

/// An order lookup reads each bloom filter it asks about from the file once (they stay in the
/// session's metadata cache with the footers): the same lookup again reads fewer bytes, then the
/// same, and answers the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_reads_each_bloom_filter_from_the_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let (records, orders, _) = records(3_000);
    archive(dir.path(), &records, true).await;
    let table = ArchiveTable::open(location(dir.path())).await.unwrap();
    let index = table
        .key_index(&mut key_index::SegmentCache::default())
        .await
        .unwrap();
    let provider = ArchiveScanProvider::new(
        Arc::new(table.files().unwrap()),
        Some((index, table.index_store())),
    )
    .unwrap();
    let ctx = session_over(provider);
    let sql = format!(
        "SELECT kafka_offset, status FROM order_events WHERE order_id = '{}' ORDER BY 1",
        orders[orders.len() / 2]
    );
    let mut runs = Vec::new();
    for _ in 0..3 {
        let plan = ctx
            .sql(&sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
        let rows = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        runs.push((rows, plan_metric(&plan, "bytes_scanned")));
    }
    assert!(runs[0].0.lines().count() > 4, "the order has rows");
    assert!(runs.iter().all(|(rows, _)| *rows == runs[0].0));
    let bytes: Vec<usize> = runs.iter().map(|(_, bytes)| *bytes).collect();
    assert!(
        bytes[1] < bytes[0] && bytes[2] == bytes[1],
        "bytes read from the files, run by run: {bytes:?}"
    );
}

/// Whether `sql`'s physical plan reads with orderlake's lookup reader.
async fn reads_with_lookup_reader(engine: &Arc<ColdQueryEngine>, sql: &str) -> bool {
    run(engine, &format!("EXPLAIN {sql}"), vec![])
        .await
        .iter()
        .any(|line| line.contains("ArchiveLookupExec"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookup_reader_answers_every_shape_of_lookup_as_the_parquet_scan() {
    let dir = tempfile::tempdir().unwrap();
    create(dir.path(), Partitioning::Monthly).await;
    let (records, orders, customers) = records(3_000);
    for chunk in records[..2_000].chunks(500) {
        archive(dir.path(), chunk, true).await;
    }
    // Compacted files (sorted by customer, page indexes, bloom filters) beside a writer's file
    // the index does not cover.
    compact(dir.path()).await;
    archive(dir.path(), &records[2_000..], false).await;

    let reader = engine_with(dir.path(), |s| s.lookup_reader = true).await;
    let scan = engine_with(dir.path(), |s| s.lookup_reader = false).await;
    let (c, c2) = (&customers[customers.len() / 2], &customers[0]);
    let (o, o2) = (&orders[orders.len() / 3], &orders[orders.len() - 1]);
    let since = (chrono::Utc::now() - chrono::Duration::days(45)).date_naive();
    let by_offset = "ORDER BY kafka_topic, kafka_partition, kafka_offset";
    let queries = [
        // Every column: nested items and headers, raw bytes, the partition's date.
        format!("SELECT * FROM order_events WHERE customer_id = '{c}' {by_offset}"),
        // No column at all.
        format!("SELECT count(*) FROM order_events WHERE customer_id IN ('{c}', '{c2}', 'absent')"),
        // Other conditions beside the keys, on a stored column and on the partition's date.
        format!(
            "SELECT order_id, event_date, status FROM order_events WHERE customer_id = '{c}' \
             AND status <> 'CANCELLED' AND event_date >= DATE '{since}' {by_offset}"
        ),
        // Order ids (bloom filters), expressions over the columns, keys of both columns.
        format!(
            "SELECT upper(order_id) AS o, total_amount * 2 AS twice, kafka_offset FROM order_events \
             WHERE order_id IN ('{o}', '{o2}', 'absent') {by_offset}"
        ),
        format!(
            "SELECT kafka_offset, decode_error IS NULL AS decoded FROM order_events \
             WHERE order_id = '{o}' OR customer_id = '{c2}' {by_offset}"
        ),
        // A limit: as many rows as asked for, when there are that many.
        format!(
            "SELECT count(*) FROM (SELECT order_id FROM order_events WHERE customer_id = '{c}' LIMIT 3)"
        ),
        // An absent key among the present ones (statistics keep the files; a key beyond them
        // all would leave no scan to read).
        format!("SELECT * FROM order_events WHERE order_id = '{o}-absent'"),
        // Through the views: a window over one order's events.
        format!("SELECT * FROM order_status_history WHERE order_id = '{o}' ORDER BY 1, 2, 3"),
    ];
    for sql in &queries {
        assert!(
            reads_with_lookup_reader(&reader, sql).await,
            "the lookup reader reads {sql}"
        );
        assert!(!reads_with_lookup_reader(&scan, sql).await);
        let got = run(&reader, sql, vec![]).await;
        let want = run(&scan, sql, vec![]).await;
        assert_eq!(got, want, "{sql}");
        assert!(
            got.len() > 4 || sql.contains("-absent'"),
            "{sql} has rows: {got:?}"
        );
    }
    // A join's keys are known only when it runs: DataFusion's scan, narrowed then.
    let joined = format!(
        "SELECT e.kafka_offset FROM order_events e JOIN (VALUES ('{o}')) AS v(id) ON e.order_id = v.id"
    );
    assert!(!reads_with_lookup_reader(&reader, &joined).await);
}
