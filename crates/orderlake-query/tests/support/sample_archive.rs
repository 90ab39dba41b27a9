//! A sample archive for the engine's tests: generated order events over the last 90 days,
//! archived through the archiver's own decoding and writer.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use orderlake_archive::{ArchiveTable, Partitioning, TableLayout, TableLocation};
use orderlake_ingest::{ArchiveWriter, MappingSet, SourceMapping, SourceRecord, WriterSettings};
use orderlake_query::{ColdQueryEngine, EngineSettings};
use orderlake_samples::{OrderEventGenerator, RecordKind, SampleSettings};

pub fn location(dir: &Path) -> TableLocation {
    TableLocation::parse(&dir.display().to_string(), HashMap::new()).unwrap()
}

/// Sample records over 90 days ending today, with Kafka coordinates on 3 partitions; with the
/// order and customer ids they hold.
pub fn records(events: u64) -> (Vec<SourceRecord>, Vec<String>, Vec<String>) {
    let now = chrono::Utc::now();
    let settings = SampleSettings {
        seed: 7,
        start: now - chrono::Duration::days(90),
        span: chrono::Duration::days(90),
        customers: 300,
        expected_events: events,
        malformed_share: 0.03,
        oversize_bytes: 2048,
        ..SampleSettings::default()
    };
    records_after(settings, &mut HashMap::new())
}

/// `settings.expected_events` sample records, their offsets continuing from `offsets` (next
/// offset per topic and partition), which is left at the next ones.
pub fn records_after(
    settings: SampleSettings,
    offsets: &mut HashMap<(String, i32), i64>,
) -> (Vec<SourceRecord>, Vec<String>, Vec<String>) {
    let events = settings.expected_events;
    let (mut orders, mut customers) = (Vec::new(), Vec::new());
    let records = OrderEventGenerator::new(settings)
        .take(events as usize)
        .enumerate()
        .map(|(i, r)| {
            if let RecordKind::Valid(o) = &r.kind {
                orders.push(o.order_id.clone());
                customers.push(o.customer_id.clone());
            }
            let partition = r.partition.unwrap_or((i % 3) as i32);
            let offset = offsets.entry((r.topic.clone(), partition)).or_default();
            let record = SourceRecord {
                topic: r.topic,
                partition,
                offset: *offset,
                timestamp_ms: Some(r.timestamp_ms),
                key: r.key,
                value: r.value,
                headers: r.headers,
            };
            *offset += 1;
            record
        })
        .collect();
    orders.sort();
    orders.dedup();
    customers.sort();
    customers.dedup();
    (records, orders, customers)
}

/// Creates the archive table in `dir` with `partitioning`; [`archive`] then writes to it.
pub async fn create(dir: &Path, partitioning: Partitioning) {
    let layout = TableLayout {
        partitioning,
        ..TableLayout::default()
    };
    ArchiveTable::open_or_create_with(location(dir), layout)
        .await
        .unwrap();
}

pub async fn archive(dir: &Path, records: &[SourceRecord], key_index: bool) {
    let table = ArchiveTable::open_or_create(location(dir)).await.unwrap();
    let settings = WriterSettings {
        key_index,
        ..WriterSettings::default()
    };
    let mut writer = ArchiveWriter::new(table, settings);
    let mappings = MappingSet::new(SourceMapping::defaults()).unwrap();
    orderlake_ingest::archive_records(&mut writer, &mappings, records)
        .await
        .unwrap();
}

/// An engine over the archive in `dir`; `indexed`: with the key index and orderlake's lookup
/// reader, else with neither (DataFusion's scan of every file the statistics leave).
pub async fn engine(dir: &Path, indexed: bool) -> Arc<ColdQueryEngine> {
    engine_with(dir, |s| {
        s.use_key_index = indexed;
        s.lookup_reader = indexed;
    })
    .await
}

/// An engine over the archive in `dir` with the views, settings changed by `configure`.
pub async fn engine_with(
    dir: &Path,
    configure: impl FnOnce(&mut EngineSettings),
) -> Arc<ColdQueryEngine> {
    let mut settings = EngineSettings {
        views_dir: Some(
            // Read when the test runs: the binary may come from another checkout.
            Path::new(
                &std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
            )
            .join("../../sql"),
        ),
        target_partitions: 2,
        ..EngineSettings::default()
    };
    configure(&mut settings);
    Arc::new(
        ColdQueryEngine::open(location(dir), settings)
            .await
            .unwrap(),
    )
}
