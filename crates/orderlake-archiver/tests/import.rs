//! `orderlake-archiver import`: legacy exports (NDJSON and Parquet, local and on S3) land through
//! the source mappings as imported rows without Kafka coordinates; the same file imported twice
//! (under any name) adds its rows once; an interrupted import resumes after its last commit.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray as _, RecordBatch, StringArray};
use arrow::datatypes::Int64Type;
use futures::StreamExt as _;
use orderlake_archive::{ArchiveTable, ImportSource};
use orderlake_ingest::decode::{DEFAULT_MAX_DECODE_BYTES, TopicDecoder};
use orderlake_ingest::{
    ArchiveWriter, ImportRecord, IngestError, MappingSet, SourceMapping, WriterSettings,
};
use orderlake_samples::{OrderEventGenerator, RecordKind};
use support::{Backend, Services};

/// `count` orders-topic events of the generator, as a producer sent them, with the order id of
/// each valid one.
fn order_events(seed: u64, count: usize) -> Vec<(Vec<u8>, String)> {
    OrderEventGenerator::new(support::sample_settings(
        "oms.",
        seed,
        count as u64 * 4,
        0.0,
    ))
    .filter(|r| r.topic == "oms.orders")
    .filter_map(|r| match (r.kind, r.value) {
        (RecordKind::Valid(o), Some(v)) => Some((v, o.order_id)),
        _ => None,
    })
    .take(count)
    .collect()
}

fn ndjson(lines: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(&l);
        out.push(b'\n');
    }
    out
}

/// One row per query answer: `SELECT <count expressions> FROM archive [WHERE …]`.
async fn counts(backend: &Backend, sql: &str) -> Vec<i64> {
    let table = ArchiveTable::open(backend.location()).await.unwrap();
    let ctx = table.session_with("archive").await.unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let batch = &batches[0];
    (0..batch.num_columns())
        .map(|c| batch.column(c).as_primitive::<Int64Type>().value(0))
        .collect()
}

async fn order_ids(backend: &Backend) -> BTreeSet<String> {
    let table = ArchiveTable::open(backend.location()).await.unwrap();
    let ctx = table.session_with("archive").await.unwrap();
    let batches = ctx
        .sql("SELECT CAST(order_id AS VARCHAR) FROM archive WHERE order_id IS NOT NULL")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut ids = BTreeSet::new();
    for b in &batches {
        let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let col = col.as_string::<i32>();
        ids.extend((0..col.len()).map(|i| col.value(i).to_owned()));
    }
    ids
}

fn import(backend: &Backend, inputs: &[&std::path::Path], extra: &[&str]) -> std::process::Output {
    support::archiver(backend)
        .args(["import", "--quiet", "--table-uri", &backend.table_uri()])
        .args(extra)
        .args(inputs)
        .output()
        .unwrap()
}

fn write_parquet(path: &std::path::Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_and_parquet_exports_import_once_however_often_they_are_imported() {
    let backend = Backend::local();
    let dir = tempfile::tempdir().unwrap();
    let events = order_events(7, 2_000);
    let malformed: Vec<Vec<u8>> = (0..20)
        .map(|i| format!("legacy garbage {i} {{").into_bytes())
        .collect();
    let export = dir.path().join("orders-2019.ndjson");
    std::fs::write(
        &export,
        ndjson(events.iter().map(|(v, _)| v.clone()).chain(malformed)),
    )
    .unwrap();

    let out = import(&backend, &[&export], &[]);
    let said = support::assert_success("first import", &out);
    assert!(said.contains("2020 records, 2020 added"), "{said}");
    let [rows, imported, with_coordinates, decoded, undecodable] = counts(
        &backend,
        "SELECT count(*), count(import_source), count(kafka_topic) + count(kafka_offset), \
         count(order_id), count(decode_error) FROM archive",
    )
    .await[..] else {
        unreachable!()
    };
    assert_eq!(
        (rows, imported, with_coordinates, decoded, undecodable),
        (2020, 2020, 0, 2000, 20)
    );
    let expected: BTreeSet<String> = events.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(order_ids(&backend).await, expected);

    // Again, and the same bytes under another name: nothing added.
    let out = import(&backend, &[&export], &[]);
    let said = support::assert_success("second import", &out);
    assert!(said.contains("0 added, 2020 imported before"), "{said}");
    let renamed = dir.path().join("copy-of-orders.jsonl");
    std::fs::copy(&export, &renamed).unwrap();
    support::assert_success(
        "import of a renamed copy",
        &import(&backend, &[&renamed], &[]),
    );
    assert_eq!(
        counts(&backend, "SELECT count(*) FROM archive").await,
        [2020]
    );

    // Parquet: a `value` column holding each event, and an export whose rows are the fields.
    let more = order_events(8, 500);
    let values = StringArray::from_iter_values(
        more.iter()
            .map(|(v, _)| String::from_utf8(v.clone()).unwrap()),
    );
    let as_values =
        RecordBatch::try_from_iter([("value", Arc::new(values) as Arc<dyn Array>)]).unwrap();
    let values_file = dir.path().join("orders-2020.parquet");
    write_parquet(&values_file, &as_values);
    let ids: Vec<String> = (0..100).map(|i| format!("LEGACY-{i:04}")).collect();
    let as_fields = RecordBatch::try_from_iter([
        (
            "order_id",
            Arc::new(StringArray::from_iter_values(&ids)) as Arc<dyn Array>,
        ),
        (
            "customer_id",
            Arc::new(StringArray::from_iter_values(ids.iter().map(|_| "CUST-1"))) as _,
        ),
        (
            "status",
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|_| "DELIVERED"),
            )) as _,
        ),
        (
            "created_at",
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|_| "2018-06-01T10:00:00Z"),
            )) as _,
        ),
    ])
    .unwrap();
    let fields_file = dir.path().join("orders-2018.parquet");
    write_parquet(&fields_file, &as_fields);
    let out = import(&backend, &[&values_file, &fields_file], &[]);
    let said = support::assert_success("Parquet import", &out);
    assert!(
        said.contains("imported 2 files: 600 records, 600 added"),
        "{said}"
    );
    let all_ids = order_ids(&backend).await;
    assert!(ids.iter().all(|id| all_ids.contains(id)));
    assert!(more.iter().all(|(_, id)| all_ids.contains(id)));
    assert_eq!(
        counts(
            &backend,
            "SELECT count(*) FROM archive WHERE order_id LIKE 'LEGACY-%' \
             AND customer_id = 'CUST-1' AND status = 'DELIVERED' \
             AND event_date = DATE '2018-06-01'"
        )
        .await,
        [100]
    );

    let verify = support::archiver(&backend)
        .args(["verify", "--table-uri", &backend.table_uri()])
        .output()
        .unwrap();
    let report = support::assert_success("verify", &verify);
    assert!(
        report.contains("3 imported sources agree with the ledger"),
        "{report}"
    );

    // A missing input fails before anything is written, naming the file.
    let missing = dir.path().join("orders-2017.ndjson");
    let out = import(&backend, &[&export, &missing], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("orders-2017.ndjson"), "{err}");
    assert_eq!(
        counts(&backend, "SELECT count(*) FROM archive").await,
        [2620]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_resumes_after_its_last_commit() {
    let backend = Backend::local();
    let table = ArchiveTable::open_or_create(backend.location())
        .await
        .unwrap();
    let mut writer = ArchiveWriter::new(table, WriterSettings::default());
    let mut decoder = TopicDecoder::new(
        MappingSet::new(SourceMapping::defaults()).unwrap(),
        DEFAULT_MAX_DECODE_BYTES,
    );
    let events = order_events(9, 1_000);
    let records = |fail_after: Option<usize>| {
        let stream = futures::stream::iter(events.clone().into_iter().enumerate()).map(
            move |(i, (value, _))| {
                if fail_after == Some(i) {
                    return Err(IngestError::Import {
                        input: "export.ndjson".into(),
                        reason: "connection reset".into(),
                    });
                }
                Ok(ImportRecord {
                    topic: "oms.orders".into(),
                    value: Some(value),
                    ..Default::default()
                })
            },
        );
        Box::pin(stream)
    };
    let source = ImportSource::new("sha256-test", "export.ndjson");
    let err = orderlake_ingest::import_records(
        &mut writer,
        &mut decoder,
        &source,
        records(Some(350)),
        100,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("connection reset"), "{err}");
    // Three whole chunks landed before the failure; the partial fourth did not.
    assert_eq!(
        counts(&backend, "SELECT count(*) FROM archive").await,
        [300]
    );

    let report = orderlake_ingest::import_records(
        &mut writer,
        &mut decoder,
        &source,
        records(None),
        100,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!((report.records, report.added), (1000, 700));
    let expected: BTreeSet<String> = events.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(order_ids(&backend).await, expected);
    assert_eq!(
        counts(&backend, "SELECT count(*) FROM archive").await,
        [1000]
    );
    writer.table_mut().refresh().await.unwrap();
    let verified = writer.table().verify().await.unwrap();
    assert!(verified.is_clean(), "{verified:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_an_export_from_s3_into_an_s3_archive() {
    let services = Services::from_env();
    let backend = Backend::s3(&services, "import");
    let events = order_events(10, 800);
    let key = format!("{}/exports/orders.ndjson", support::unique("legacy"));
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&services.s3_endpoint)
        .with_bucket_name(&services.s3_bucket)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_region("us-east-1")
        .with_allow_http(true)
        .build()
        .unwrap();
    object_store::ObjectStoreExt::put(
        &store,
        &object_store::path::Path::from(key.as_str()),
        ndjson(events.iter().map(|(v, _)| v.clone())).into(),
    )
    .await
    .unwrap();
    let uri = format!("s3://{}/{key}", services.s3_bucket);
    for (round, added) in [(1, 800), (2, 0)] {
        let out = support::archiver(&backend)
            .args([
                "import",
                "--quiet",
                "--table-uri",
                &backend.table_uri(),
                &uri,
            ])
            .output()
            .unwrap();
        let said = support::assert_success("import from S3", &out);
        assert!(
            said.contains(&format!("800 records, {added} added")),
            "round {round}: {said}"
        );
    }
    let expected: BTreeSet<String> = events.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(order_ids(&backend).await, expected);
}
