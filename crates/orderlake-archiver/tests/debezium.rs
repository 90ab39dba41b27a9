//! Debezium change events on the broker, shaped as the Postgres connector (JSON with schemas: a
//! snapshot, updates, a delete and its tombstone, an item table) and the MySQL connector (JSON
//! without schemas: a snapshot, an update, a truncate) emit them (`sql/tests/legacy_fixture.jsonl`),
//! archived with the example mappings of `config/archiver.toml` into a table an older archiver
//! created: the table gains the `cdc_*` columns by a metadata commit without rewriting its file,
//! and every change is archived once with its operation, source time, position and transaction.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::AsArray as _;
use deltalake::operations::create::CreateBuilder;
use futures::TryStreamExt as _;
use orderlake_archive::schema::{self, EVENT_DATE};
use orderlake_archive::{ArchiveTable, Partitioning};
use orderlake_archiver::commands::generate::{ensure_topics, produce};
use orderlake_ingest::decode::TopicDecoder;
use orderlake_ingest::rowbuf::{ArchiveRowBuffer, Envelope};
use orderlake_ingest::{MappingSet, SourceMapping};
use orderlake_samples::{RecordKind, SampleRecord};
use support::{
    Backend, Services, archive_sql, archive_until_caught_up, assert_success, opt_binary,
    opt_string, output_within, repo, unique,
};

/// A table as an archiver from before the `cdc_*` columns created it (daily partitions, the
/// first schema), holding one order event. Returns the path of its data file.
async fn create_old_table(backend: &Backend) -> String {
    let location = backend.location();
    let old_fields: Vec<_> = schema::table_delta_schema(Partitioning::Daily)
        .fields()
        .filter(|f| !f.name().starts_with("cdc_"))
        .cloned()
        .collect();
    let table = CreateBuilder::new()
        .with_location(location.url().as_str())
        .with_storage_options(location.options().clone())
        .with_table_name("order_events")
        .with_columns(old_fields)
        .with_partition_columns([EVENT_DATE])
        .await
        .unwrap();
    let mappings = MappingSet::new(SourceMapping::defaults()).unwrap();
    let mut decoder = TopicDecoder::new(mappings, 1 << 20);
    let value = br#"{"order_id":"OLD-1","customer_id":"C-0","status":"placed","order_datetime":"2020-01-05T10:00:00"}"#;
    let order = decoder.decode("oms.orders", Some(value));
    let mut rows = ArchiveRowBuffer::new();
    let env = Envelope {
        topic: Some("oms.orders"),
        partition: Some(0),
        offset: Some(0),
        timestamp_ms: Some(1_578_218_400_000),
        key: Some(b"OLD-1"),
        value: Some(value),
        import_source: None,
    };
    rows.append(&env, [], &order, 1_578_218_400_000_000);
    let batch = rows.finish();
    let old_columns: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| !batch.schema().field(i).name().starts_with("cdc_"))
        .collect();
    let batch = batch.project(&old_columns).unwrap();
    // With its offset ledger entry, as the archiver commits every row.
    let ledger = orderlake_archive::SourcePartition::new("oms.orders", 0).ledger_entry(0);
    let table = table
        .write(vec![batch])
        .with_partition_columns([EVENT_DATE])
        .with_commit_properties(
            deltalake::kernel::transaction::CommitProperties::default()
                .with_application_transaction(ledger),
        )
        .await
        .unwrap();
    let files: Vec<String> = table
        .get_file_uris()
        .unwrap()
        .map(|f| f.to_string())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

/// The fixture's topic `legacy.<schema>.<table>` in this run: `legacy.<schema>_<run>.<table>`,
/// which the example mappings' globs still match.
fn run_topic(topic: &str, run: &str) -> String {
    let parts: Vec<&str> = topic.split('.').collect();
    assert_eq!(parts.len(), 3, "{topic}");
    format!("{}.{}_{run}.{}", parts[0], parts[1], parts[2])
}

/// The fixture's records, on this run's topics.
fn fixture_records(run: &str) -> Vec<SampleRecord> {
    let records =
        orderlake_ingest::read_json_lines(&repo("sql/tests/legacy_fixture.jsonl")).unwrap();
    records
        .into_iter()
        .map(|r| SampleRecord {
            topic: run_topic(&r.topic, run),
            partition: Some(r.partition),
            key: r.key,
            value: r.value,
            headers: Vec::new(),
            timestamp_ms: r.timestamp_ms.unwrap(),
            kind: RecordKind::Tombstone,
        })
        .collect()
}

/// One archived change, as the test reads it back.
#[derive(Debug)]
struct Row {
    op: Option<String>,
    source_ts: Option<String>,
    position: Option<String>,
    tx_id: Option<String>,
    event_type: Option<String>,
    order_id: Option<String>,
    status: Option<String>,
    total_amount: Option<String>,
    event_time: Option<String>,
    /// The first item's SKU.
    items: Option<String>,
    decode_error: Option<String>,
    value: Option<Vec<u8>>,
}

async fn read_rows(table: &ArchiveTable) -> BTreeMap<(String, i32, i64), Row> {
    let batches = archive_sql(
        table,
        "SELECT kafka_topic, kafka_partition, kafka_offset, cdc_op, \
         CAST(cdc_source_ts AS VARCHAR), cdc_position, cdc_tx_id, event_type, order_id, status, \
         CAST(total_amount AS VARCHAR), CAST(event_time AS VARCHAR), items[1]['sku'], \
         decode_error, kafka_value FROM archive",
    )
    .await;
    let mut rows = BTreeMap::new();
    for b in &batches {
        let text = |c: usize, i: usize| opt_string(b.column(c).as_ref(), i);
        let parts = b.column(1).as_primitive::<arrow::datatypes::Int32Type>();
        let offsets = b.column(2).as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            let coord = (text(0, i).unwrap(), parts.value(i), offsets.value(i));
            let row = Row {
                op: text(3, i),
                source_ts: text(4, i),
                position: text(5, i),
                tx_id: text(6, i),
                event_type: text(7, i),
                order_id: text(8, i),
                status: text(9, i),
                total_amount: text(10, i),
                event_time: text(11, i),
                items: text(12, i),
                decode_error: text(13, i),
                value: opt_binary(b.column(14).as_ref(), i),
            };
            assert!(rows.insert(coord.clone(), row).is_none(), "{coord:?} twice");
        }
    }
    rows
}

/// The operation a change event's JSON says, wrapped in `payload` or not.
fn op_of(value: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(value).ok()?;
    let envelope = doc.get("payload").unwrap_or(&doc);
    envelope.get("op")?.as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_events_are_archived_once_with_their_change_columns() {
    let services = Services::from_env();
    let backend = Backend::s3(&services, "debezium");
    let old_file = create_old_table(&backend).await;

    let run = unique("cdc").replace('-', "_");
    let records = fixture_records(&run);
    let topics: Vec<String> = records
        .iter()
        .map(|r| r.topic.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    ensure_topics(&services.brokers, &topic_refs, 2)
        .await
        .unwrap();
    let brokers = services.brokers.clone();
    let sent = records.clone();
    let report = tokio::task::spawn_blocking(move || produce(&brokers, &sent, 0, true, |_| {}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.acked as usize, records.len());
    let config = repo("config/archiver.toml");
    let child = archive_until_caught_up(
        &backend,
        &services,
        &unique("cdc-group"),
        &topic_refs,
        &["--config", config.to_str().unwrap()],
    );
    let out = output_within(child, Duration::from_secs(120), "archiver");
    let log = assert_success("archiver run", &out);

    // The old table gained the columns in a metadata commit; its file is still live, unchanged.
    let table = ArchiveTable::open(backend.location()).await.unwrap();
    let snapshot = table.delta().snapshot().unwrap();
    assert!(
        schema::missing_added_fields(&snapshot.schema()).is_empty(),
        "{:?}",
        snapshot.schema()
    );
    let live: Vec<String> = table
        .delta()
        .get_file_uris()
        .unwrap()
        .map(|f| f.to_string())
        .collect();
    assert!(
        live.contains(&old_file),
        "{old_file} no longer live: {live:?}"
    );
    let history: Vec<_> = table.delta().history(None).try_collect().await.unwrap();
    let operations: Vec<String> = history.iter().filter_map(|c| c.operation.clone()).collect();
    assert!(
        operations.iter().any(|o| o == "ADD COLUMN"),
        "{operations:?}\n{log}"
    );

    // Every change once, with the columns of its envelope.
    let rows = read_rows(&table).await;
    let old = &rows[&("oms.orders".to_owned(), 0, 0)];
    assert_eq!(
        (old.op.as_deref(), old.order_id.as_deref()),
        (None, Some("OLD-1"))
    );
    assert_eq!(rows.len(), records.len() + 1);
    for (r, (partition, offset)) in records
        .iter()
        .zip(report.offsets.iter().map(|o| o.unwrap()))
    {
        let row = rows
            .get(&(r.topic.clone(), partition, offset))
            .unwrap_or_else(|| panic!("{} {partition}/{offset} not archived", r.topic));
        assert_eq!(row.value, r.value, "value bytes of {} {offset}", r.topic);
        match &r.value {
            None => {
                assert_eq!(row.op, None);
                assert!(
                    row.decode_error
                        .as_deref()
                        .unwrap()
                        .starts_with("tombstone")
                );
            }
            Some(v) => assert_eq!(row.op, op_of(v), "{} {partition}/{offset}", r.topic),
        }
    }
    let at = |topic: &str, partition: i32, offset: i64| {
        &rows[&(run_topic(topic, &run), partition, offset)]
    };
    // A Postgres update: typed from `after`, decimal and micro timestamp decoded exactly.
    let paid = at("legacy.public.orders", 0, 2);
    assert_eq!(paid.event_type.as_deref(), Some("LEGACY_ORDER"));
    assert_eq!(paid.order_id.as_deref(), Some("1001"));
    assert_eq!(paid.status.as_deref(), Some("PAID"));
    assert_eq!(paid.total_amount.as_deref(), Some("25.0000"));
    assert_eq!(paid.event_time.as_deref(), Some("2021-03-03T09:15:30.500Z"));
    assert_eq!(paid.position.as_deref(), Some("00000000000024023500"));
    assert_eq!(paid.tx_id.as_deref(), Some("561:24023500"));
    assert_eq!(paid.source_ts.as_deref(), Some("2021-03-10T00:01:00Z"));
    // A delete is typed from `before`.
    let deleted = at("legacy.public.orders", 0, 4);
    assert_eq!(
        (deleted.op.as_deref(), deleted.status.as_deref()),
        (Some("d"), Some("CANCELLED"))
    );
    // An item row holds its one item.
    let item = at("legacy.public.order_items", 0, 2);
    assert_eq!(item.event_type.as_deref(), Some("LEGACY_ORDER_ITEM"));
    assert_eq!(item.items.as_deref(), Some("SKU-B"), "{item:?}");
    // MySQL without schemas: the binlog position, the GTID as transaction, a truncate kept raw.
    let shipped = at("legacy.inventory.orders", 0, 2);
    assert_eq!(
        shipped.position.as_deref(),
        Some("mysql-bin.000003:00000000000000000484:0000000000")
    );
    assert_eq!(
        shipped.tx_id.as_deref(),
        Some("7d2f1e3a-0d6a-11ed-8a3f-0242ac120002:23")
    );
    assert_eq!(shipped.total_amount.as_deref(), Some("12.3400"));
    let truncate = at("legacy.inventory.orders", 0, 3);
    assert_eq!(truncate.op.as_deref(), Some("t"));
    assert!(
        truncate
            .decode_error
            .as_deref()
            .unwrap()
            .contains("carries no row"),
        "{truncate:?}"
    );

    let verify = support::archiver(&backend)
        .args(["verify", "--table-uri", &backend.table_uri()])
        .output()
        .unwrap();
    assert!(assert_success("verify", &verify).contains("OK:"));

    // An independent reader (delta-rs's Python binding) reads the old file and the new ones.
    // It leaves at once after printing: the interpreter's teardown sometimes aborts in pyarrow's
    // native threads after an S3 read ("terminate called without an active exception").
    let script = "import os, sys, deltalake\n\
                  t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_dataset().to_table()\n\
                  ops = [o for o in t.column('cdc_op').to_pylist() if o is not None]\n\
                  print(t.num_rows, len(ops), sorted(set(ops)), flush=True)\n\
                  os._exit(0)\n";
    let out = std::process::Command::new(&services.python)
        .args(["-c", script, &backend.table_uri()])
        .envs(backend.env())
        .output()
        .unwrap();
    let printed = assert_success("deltalake read", &out);
    let changes = records.iter().filter(|r| r.value.is_some()).count();
    assert_eq!(
        printed.trim(),
        format!("{} {changes} ['c', 'd', 'r', 't', 'u']", records.len() + 1)
    );
}
