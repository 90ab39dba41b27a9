//! Maintenance and verification on real archive tables: `verify` finds gaps, duplicates and a
//! ledger that disagrees; compaction drops the file count and changes no answer, also while
//! another writer keeps committing; a closed partition of one unsorted file is sorted once, in
//! either layout; a table's column codec, chosen at its creation, holds for every file written
//! to it, compacted or not; vacuum never removes a file the current or a retained version
//! references, and refuses a short retention unless forced; `verify` catches a rollup that
//! disagrees with its rows and `maintain --rebuild-rollup` repairs it.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use orderlake_archive::{ArchiveTable, ColumnCodec, Partitioning, SourcePartition, TableLocation};
use orderlake_ingest::rowbuf::{ArchiveRowBuffer, Envelope};
use orderlake_ingest::writer::{Flush, FlushOutcome, LedgerAdvance};
use orderlake_ingest::{ArchiveWriter, WriterSettings};

fn archiver(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_orderlake-archiver"))
        .args(args)
        .env("ORDERLAKE_LOG", "warn")
        .output()
        .unwrap();
    eprintln!(
        "orderlake-archiver {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Compacts every date older than today.
fn compact(uri: &str) -> Output {
    archiver(&[
        "maintain",
        "--table-uri",
        uri,
        "--compact",
        "--closed-after-days",
        "0",
    ])
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn generate(table: &str, events: &str, seed: &str) {
    generate_with(table, events, seed, Partitioning::default());
}

/// `events` generated events over the last 0.2 years into `table`, created with `partitioning`.
fn generate_with(table: &str, events: &str, seed: &str, partitioning: Partitioning) {
    generate_layout(table, events, seed, partitioning, ColumnCodec::default());
}

/// As [`generate_with`], a table created with `codec` too.
fn generate_layout(
    table: &str,
    events: &str,
    seed: &str,
    partitioning: Partitioning,
    codec: ColumnCodec,
) {
    let (partitioning, codec) = (partitioning.to_string(), codec.to_string());
    let out = archiver(&[
        "generate",
        "--into-table",
        table,
        "--events",
        events,
        "--years",
        "0.2",
        "--seed",
        seed,
        "--partitioning",
        &partitioning,
        "--codec",
        &codec,
        "--quiet",
    ]);
    assert!(out.status.success());
}

/// The partitions and files a `maintain --compact` reported compacting.
fn compacted(out: &Output) -> (u64, u64, u64) {
    let text = stdout(out);
    // "compact     2 monthly partitions in 1 commits (0.0s): files 6 -> 2, bytes …"
    let number = |s: &str| s.trim().parse::<u64>().unwrap();
    let partitions = text
        .split_once("compact")
        .and_then(|(_, rest)| rest.trim_start().split_once(' '))
        .map(|(n, _)| number(n))
        .unwrap_or_else(|| panic!("no partition count in {text}"));
    let (before, after) = text
        .split_once("files ")
        .and_then(|(_, rest)| rest.split_once(','))
        .and_then(|(files, _)| files.split_once(" -> "))
        .map(|(a, b)| (number(a), number(b)))
        .unwrap_or_else(|| panic!("no file counts in {text}"));
    (partitions, before, after)
}

async fn open(dir: &Path) -> ArchiveTable {
    ArchiveTable::open(TableLocation::parse(&dir.display().to_string(), HashMap::new()).unwrap())
        .await
        .unwrap()
}

/// Answers that must not change when files are rewritten.
async fn answers(table: &ArchiveTable) -> Vec<String> {
    let ctx = table.session_with("t").await.unwrap();
    let batches = ctx
        .sql(
            "SELECT event_date, count(*), count(DISTINCT order_id), sum(total_amount), \
             min(kafka_offset), max(kafka_offset), count(decode_error) \
             FROM t GROUP BY event_date ORDER BY event_date",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_gaps_duplicates_and_ledger_disagreement() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    generate(&uri, "2000", "1");
    let clean = archiver(&["verify", "--table-uri", &uri]);
    assert!(clean.status.success());
    assert!(
        stdout(&clean).contains("1 imported sources agree with the ledger"),
        "{}",
        stdout(&clean)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&archiver(&["verify", "--table-uri", &uri, "--json"]).stdout)
            .unwrap();
    let label = format!(
        "{}#{}",
        json["imports"][0]["source"].as_str().unwrap(),
        json["imports"][0]["id"].as_str().unwrap()
    );

    // A writer bug, simulated: offsets 0, 1, 1, 4 of a new partition with the ledger through 6,
    // and three more rows of the imported source that its ledger entry does not count.
    let table = open(dir.path()).await;
    let mut writer = ArchiveWriter::new(table, WriterSettings::default());
    let mut rows = ArchiveRowBuffer::new();
    for _ in 0..3 {
        let env = Envelope {
            value: Some(b"{}"),
            import_source: Some(&label),
            ..Envelope::default()
        };
        let order = orderlake_ingest::decode::decode(Some(b"{}"), None, 1024);
        rows.append(&env, [], &order, 0);
    }
    for offset in [0, 1, 1, 4] {
        let env = Envelope {
            topic: Some("oms.broken"),
            partition: Some(0),
            offset: Some(offset),
            timestamp_ms: Some(1_700_000_000_000),
            value: Some(b"{}"),
            ..Envelope::default()
        };
        let order = orderlake_ingest::decode::decode(Some(b"{}"), None, 1024);
        rows.append(&env, [], &order, 0);
    }
    let flush = Flush {
        batch: rows.finish(),
        advances: vec![LedgerAdvance {
            partition: SourcePartition::new("oms.broken", 0),
            after: None,
            through: 6,
        }],
        import: None,
    };
    assert!(matches!(
        writer.commit(&flush).await.unwrap(),
        FlushOutcome::Committed { .. }
    ));

    let broken = archiver(&["verify", "--table-uri", &uri]);
    assert_eq!(broken.status.code(), Some(1));
    let text = stdout(&broken);
    assert!(
        text.contains("MISSING    oms.broken[0]: offsets 2..=3"),
        "{text}"
    );
    assert!(
        text.contains("DUPLICATED oms.broken[0]: offset 1"),
        "{text}"
    );
    assert!(text.contains("LEDGER     oms.broken[0]: the ledger says archived through 6 but the last row is offset 4"), "{text}");
    assert!(
        text.contains("IMPORT     orderlake-archiver generate --seed 1 --events 2000 --years 0.2: 2003 rows, the ledger says 2000 records imported"),
        "{text}"
    );
    assert!(
        text.contains("FAILED: 2 offsets missing, 1 duplicated, 1 imported sources disagree"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&archiver(&["verify", "--table-uri", &uri, "--json"]).stdout)
            .unwrap();
    let p = json["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == "oms.broken")
        .unwrap();
    assert_eq!(
        (p["missing"].as_i64(), p["duplicated"].as_i64()),
        (Some(2), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_changes_no_answer_even_while_another_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    for seed in ["1", "2", "3"] {
        generate(&uri, "3000", seed);
    }
    let table = open(dir.path()).await;
    let before = answers(&table).await;
    let files_before = table.status().await.unwrap().files;

    let out = compact(&uri);
    assert!(out.status.success());
    let text = stdout(&out);
    let (_, compacted_before, compacted_after) = compacted(&out);
    let (compacted_before, compacted_after) = (compacted_before as usize, compacted_after as usize);
    let mut table = open(dir.path()).await;
    assert_eq!(
        answers(&table).await,
        before,
        "compaction changed an answer"
    );
    let files_after = table.status().await.unwrap().files;
    assert!(
        compacted_after * 2 <= compacted_before && compacted_after > 0,
        "{text}"
    );
    assert_eq!(
        files_before - files_after,
        compacted_before - compacted_after,
        "{text}"
    );

    // Compaction and another writer at the same time: every record once, nothing lost.
    for seed in ["4", "5"] {
        generate(&uri, "3000", seed);
    }
    let (writing_uri, compact_uri) = (uri.clone(), uri.clone());
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let still_writing = std::sync::Arc::clone(&writing);
    let writer = std::thread::spawn(move || {
        for seed in ["6", "7", "8"] {
            generate(&writing_uri, "2000", seed);
        }
        still_writing.store(false, std::sync::atomic::Ordering::SeqCst);
    });
    // Compact again and again for as long as the writer writes.
    let compactor = std::thread::spawn(move || {
        let mut runs = 0;
        while writing.load(std::sync::atomic::Ordering::SeqCst) || runs == 0 {
            let out = compact(&compact_uri);
            assert!(out.status.success());
            runs += 1;
        }
        runs
    });
    writer.join().unwrap();
    assert!(compactor.join().unwrap() >= 1);
    let verified = archiver(&["verify", "--table-uri", &uri]);
    assert!(verified.status.success(), "{}", stdout(&verified));
    table.refresh().await.unwrap();
    assert_eq!(
        table.status().await.unwrap().rows,
        3 * 3000 + 2 * 3000 + 3 * 2000
    );
}

/// The footer of the Parquet file at `path`, with its page index when it has one.
fn parquet_metadata(path: &Path) -> std::sync::Arc<parquet::file::metadata::ParquetMetaData> {
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    let file = std::fs::File::open(path).unwrap();
    let options = ArrowReaderOptions::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
    std::sync::Arc::clone(
        ArrowReaderMetadata::load(&file, options)
            .unwrap()
            .metadata(),
    )
}

/// Whether compaction marked the Parquet file at `path` as written in its sort order, with the
/// default rows per row group.
fn marked_sorted(path: &Path) -> bool {
    parquet_metadata(path)
        .file_metadata()
        .key_value_metadata()
        .is_some_and(|kv| {
            kv.iter().any(|e| {
                e.key == orderlake_archive::schema::SORT_ORDER_KEY
                    && e.value.as_deref()
                        == Some(&orderlake_archive::schema::compacted_layout(
                            orderlake_archive::schema::ROW_GROUP_ROWS,
                        ))
            })
        })
}

/// The columns of the Parquet file at `path` of which some row group has a dictionary page.
fn dictionary_columns(path: &Path) -> std::collections::BTreeSet<String> {
    parquet_metadata(path)
        .row_groups()
        .iter()
        .flat_map(|group| group.columns())
        .filter(|chunk| chunk.dictionary_page_offset().is_some())
        .map(|chunk| chunk.column_path().string())
        .collect()
}

/// The most rows a data page of any column holds in the Parquet file at `path`, and the most
/// pages a column chunk is cut into (from the file's offset index).
fn page_rows(path: &Path) -> (i64, usize) {
    let metadata = parquet_metadata(path);
    let offsets = metadata
        .offset_index()
        .expect("compacted files have an offset index");
    let (mut most_rows, mut most_pages) = (0, 0);
    for (group, columns) in metadata.row_groups().iter().zip(offsets) {
        for column in columns {
            let starts: Vec<i64> = column
                .page_locations()
                .iter()
                .map(|p| p.first_row_index)
                .chain([group.num_rows()])
                .collect();
            most_pages = most_pages.max(starts.len() - 1);
            for pair in starts.windows(2) {
                most_rows = most_rows.max(pair[1] - pair[0]);
            }
        }
    }
    (most_rows, most_pages)
}

/// Whether the rows of the Parquet file at `path` come in compaction's order: by customer, then
/// order, then event time, ascending, nulls last.
fn rows_in_compaction_order(path: &Path) -> bool {
    use arrow::compute::SortOptions;
    use arrow::row::{RowConverter, SortField};
    let file = std::fs::File::open(path).unwrap();
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let columns = orderlake_archive::schema::COMPACTION_SORT;
    let indices: Vec<usize> = columns
        .iter()
        .map(|c| builder.schema().index_of(c).unwrap())
        .collect();
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), indices);
    let batches: Vec<_> = builder
        .with_projection(mask)
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let options = SortOptions {
        descending: false,
        nulls_first: false,
    };
    let schema = batches[0].schema();
    let fields = columns
        .iter()
        .map(|c| {
            SortField::new_with_options(
                schema.field_with_name(c).unwrap().data_type().clone(),
                options,
            )
        })
        .collect();
    let converter = RowConverter::new(fields).unwrap();
    let mut previous: Option<arrow::row::OwnedRow> = None;
    for batch in &batches {
        let keys: Vec<_> = columns
            .iter()
            .map(|c| batch.column_by_name(c).unwrap().clone())
            .collect();
        let rows = converter.convert_columns(&keys).unwrap();
        for row in rows.iter() {
            if previous.as_ref().is_some_and(|p| p.row() > row) {
                return false;
            }
            previous = Some(row.owned());
        }
    }
    true
}

/// A closed partition held by one file the archiver wrote is sorted too, once: the next
/// compaction finds nothing to do. Both layouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_partition_of_one_unsorted_file_is_sorted_once() {
    for partitioning in Partitioning::ALL {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().display().to_string();
        generate_with(&uri, "3000", "1", partitioning);
        let table = open(dir.path()).await;
        assert_eq!(table.partitioning(), partitioning);
        let before = answers(&table).await;
        let files = table.files().unwrap();
        let closed_before =
            orderlake_archive::files::days_since_epoch(chrono::Utc::now().date_naive());
        let closed: Vec<_> = files
            .files
            .iter()
            .filter(|f| partitioning.dates_of(f.partition.unwrap()).1 < closed_before)
            .collect();
        let partitions: std::collections::HashSet<_> = closed.iter().map(|f| f.partition).collect();
        assert_eq!(closed.len(), partitions.len(), "one file per partition");
        assert!(
            closed.len() >= 2,
            "{partitioning}: {} closed partitions",
            closed.len()
        );

        assert!(
            closed
                .iter()
                .any(|f| !rows_in_compaction_order(&dir.path().join(&f.relative_path))),
            "the archiver writes in arrival order"
        );

        let out = compact(&uri);
        assert!(out.status.success());
        assert!(
            stdout(&out).contains(&format!("{partitioning} partitions")),
            "{}",
            stdout(&out)
        );
        assert_eq!(
            compacted(&out),
            (
                closed.len() as u64,
                closed.len() as u64,
                closed.len() as u64
            )
        );
        let table = open(dir.path()).await;
        assert_eq!(
            answers(&table).await,
            before,
            "compaction changed an answer"
        );
        let mut most_pages = 0;
        for file in table.files().unwrap().files {
            let local = dir.path().join(&file.relative_path);
            let is_closed = partitioning.dates_of(file.partition.unwrap()).1 < closed_before;
            assert_eq!(marked_sorted(&local), is_closed, "{}", file.relative_path);
            if is_closed {
                assert!(
                    rows_in_compaction_order(&local),
                    "{}: rows out of order",
                    file.relative_path
                );
                // Every column is cut into small pages, so a lookup decodes few rows of each.
                let (rows, pages) = page_rows(&local);
                assert!(
                    rows as usize <= orderlake_archive::schema::COMPACTED_PAGE_ROWS,
                    "{}: a page of {rows} rows",
                    file.relative_path
                );
                most_pages = most_pages.max(pages);
                // Near-unique columns are written plain: a lookup reading one of their pages
                // does not decode a dictionary first. Others keep theirs.
                let dictionaries = dictionary_columns(&local);
                for column in orderlake_archive::schema::COMPACTED_PLAIN_COLUMNS {
                    assert!(
                        !dictionaries.contains(column),
                        "{}: {column} has a dictionary",
                        file.relative_path
                    );
                }
                assert!(dictionaries.contains("customer_id"), "{dictionaries:?}");
            }
        }
        if partitioning == Partitioning::Monthly {
            assert!(most_pages > 1, "a month of these events spans pages");
        }
        assert_eq!(
            compacted(&compact(&uri)),
            (0, 0, 0),
            "sorted partitions are left alone"
        );

        // Other row groups configured: each closed partition is written again, once.
        let config = dir.path().join("archiver.toml");
        std::fs::write(&config, "[parquet]\nrow_group_rows = 4096\n").unwrap();
        let config = config.display().to_string();
        let smaller = || {
            let out = archiver(&[
                "maintain",
                "--config",
                &config,
                "--table-uri",
                &uri,
                "--compact",
                "--closed-after-days",
                "0",
            ]);
            assert!(out.status.success());
            compacted(&out)
        };
        let n = closed.len() as u64;
        assert_eq!(smaller(), (n, n, n));
        assert_eq!(smaller(), (0, 0, 0));
        assert_eq!(answers(&open(dir.path()).await).await, before);
    }
}

/// The codecs of the Parquet file at `path`: (column path, codec name) of every column chunk,
/// once each.
fn codecs(path: &Path) -> std::collections::BTreeSet<(String, String)> {
    parquet_metadata(path)
        .row_groups()
        .iter()
        .flat_map(|g| g.columns())
        .map(|c| {
            let codec = match c.compression() {
                parquet::basic::Compression::ZSTD(_) => "zstd".to_owned(),
                other => other.to_string(),
            };
            (c.column_path().string(), codec)
        })
        .collect()
}

/// Asserts that every live file of the table in `dir` keeps the raw record in zstd and every
/// other column in `columns` (a Parquet codec's name).
async fn assert_codecs(dir: &Path, columns: &str) {
    let table = open(dir).await;
    let files = table.files().unwrap().files;
    assert!(!files.is_empty());
    for file in files {
        for (column, codec) in codecs(&dir.join(&file.relative_path)) {
            let expected = if column == orderlake_archive::schema::KAFKA_VALUE {
                "zstd"
            } else {
                columns
            };
            assert_eq!(codec, expected, "{}: {column}", file.relative_path);
        }
    }
}

/// A table created with `--codec lz4` (the default) says so, writes its columns but the raw
/// record in LZ4 (a zstd table all in zstd), keeps its codec when a writer configured otherwise
/// adds to it and when compaction rewrites its files, and `status` shows it. An unknown codec
/// in a config file is refused with the key and the file named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tables_column_codec_holds_for_every_file_written_to_it() {
    let zstd = tempfile::tempdir().unwrap();
    let zstd_uri = zstd.path().display().to_string();
    generate_layout(
        &zstd_uri,
        "1500",
        "1",
        Partitioning::Monthly,
        ColumnCodec::Zstd,
    );
    assert_eq!(open(zstd.path()).await.codec(), ColumnCodec::Zstd);
    assert_codecs(zstd.path(), "zstd").await;

    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    generate_layout(&uri, "1500", "1", Partitioning::Daily, ColumnCodec::Lz4);
    let table = open(dir.path()).await;
    assert_eq!(table.codec(), ColumnCodec::Lz4);
    assert_eq!(table.partitioning(), Partitioning::Daily);
    assert_codecs(dir.path(), "LZ4_RAW").await;
    // More of the same stream, by a writer that would create zstd tables.
    generate_layout(&uri, "3000", "1", Partitioning::Daily, ColumnCodec::Zstd);
    assert_eq!(open(dir.path()).await.codec(), ColumnCodec::Lz4);
    assert_codecs(dir.path(), "LZ4_RAW").await;
    let before = answers(&open(dir.path()).await).await;

    let (_, files_before, files_after) = compacted(&compact(&uri));
    assert!(
        files_after < files_before,
        "{files_before} -> {files_after}"
    );
    assert_eq!(answers(&open(dir.path()).await).await, before);
    assert_codecs(dir.path(), "LZ4_RAW").await;

    let status = stdout(&archiver(&["status", "--table-uri", &uri]));
    assert!(
        status.contains("(daily partitions, columns in lz4)"),
        "{status}"
    );

    let config = dir.path().join("archiver.toml");
    std::fs::write(&config, "[parquet]\ncodec = \"snappy\"\n").unwrap();
    let config = config.display().to_string();
    let out = archiver(&["maintain", "--config", &config, "--table-uri", &uri]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("parquet.codec") && stderr.contains(&config) && stderr.contains("snappy"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_keeps_every_file_a_retained_version_needs() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    generate(&uri, "2000", "1");
    generate(&uri, "2000", "2");
    // An orphan, as a crashed writer leaves: uploaded, never committed.
    let orphan = dir.path().join("event_date=2020-01-01/part-orphan.parquet");
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"never committed").unwrap();
    let out = compact(&uri);
    assert!(out.status.success());
    let table = open(dir.path()).await;
    let compacted = table.version().unwrap();
    let before = answers(&table).await;

    // Default retention (7 days): the files compaction replaced are younger, so they stay and the
    // version before compaction still reads; so does the orphan.
    let out = archiver(&["maintain", "--table-uri", &uri, "--vacuum"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("vacuum      0 unreferenced files"),
        "{}",
        stdout(&out)
    );
    let mut old = open(dir.path()).await;
    let old_rows = {
        let mut t = old.delta().clone();
        t.load_version(compacted - 1).await.unwrap();
        t.snapshot().unwrap().log_data().iter().count()
    };
    assert!(old_rows > 0);
    assert!(orphan.exists());

    // A short retention is refused without --force.
    let refused = archiver(&[
        "maintain",
        "--table-uri",
        &uri,
        "--vacuum",
        "--retention-hours",
        "1",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));

    // Forced to zero: replaced files and the orphan go, every current file stays.
    let out = archiver(&[
        "maintain",
        "--table-uri",
        &uri,
        "--vacuum",
        "--retention-hours",
        "0",
        "--force",
    ]);
    assert!(out.status.success());
    assert!(!orphan.exists(), "the orphan is removed");
    old.refresh().await.unwrap();
    for file in old.delta().snapshot().unwrap().log_data().iter() {
        let path = dir.path().join(file.path().as_ref());
        assert!(
            path.exists(),
            "vacuum removed a referenced file: {}",
            path.display()
        );
    }
    assert_eq!(answers(&old).await, before);
}

/// One writer, several direct commits in a row (as `generate --into-table` makes them): each
/// commit sees the one before, so none is fenced and every record lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_direct_commits_through_one_writer_keep_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let location = TableLocation::parse(&dir.path().display().to_string(), HashMap::new()).unwrap();
    let table = ArchiveTable::open_or_create(location).await.unwrap();
    let mut writer = ArchiveWriter::new(table, WriterSettings::default());
    let mappings =
        orderlake_ingest::MappingSet::new(orderlake_ingest::SourceMapping::defaults()).unwrap();
    for chunk in 0..3i64 {
        let records: Vec<orderlake_ingest::SourceRecord> = (0..100)
            .map(|i| orderlake_ingest::SourceRecord {
                topic: "oms.orders".into(),
                partition: 0,
                offset: chunk * 100 + i,
                timestamp_ms: Some(1_700_000_000_000),
                value: Some(
                    format!(r#"{{"order_id":"O-{chunk}-{i}","status":"placed"}}"#).into_bytes(),
                ),
                ..Default::default()
            })
            .collect();
        let outcome = orderlake_ingest::archive_records(&mut writer, &mappings, &records)
            .await
            .unwrap();
        assert!(
            matches!(outcome, FlushOutcome::Committed { .. }),
            "chunk {chunk}: {outcome:?}"
        );
    }
    writer.table_mut().refresh().await.unwrap();
    let report = writer.table().verify().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.partitions[0].rows, 300);
}

/// Adds one to the `orders` of the stored rollup's first row, keeping everything else, as a bug or
/// a hand edit would: the row count still matches, so only `verify` can tell.
fn tamper_with_rollup(table_dir: &Path) {
    use arrow::array::{AsArray as _, Int64Array};
    let path = table_dir.join("_orderlake_rollup/daily.parquet");
    let file = std::fs::File::open(&path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let at = batch.schema().index_of("orders").unwrap();
    let orders = batch
        .column(at)
        .as_primitive::<arrow::datatypes::Int64Type>();
    let changed: Int64Array = (0..orders.len())
        .map(|i| Some(orders.value(i) + i64::from(i == 0)))
        .collect();
    let mut columns = batch.columns().to_vec();
    columns[at] = std::sync::Arc::new(changed);
    let batch = arrow::array::RecordBatch::try_new(batch.schema(), columns).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_a_wrong_rollup_and_rebuild_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().display().to_string();
    generate(&uri, "3000", "5");
    let rollup = |flag: &str| {
        let out = archiver(&[
            "maintain",
            "--table-uri",
            &uri,
            flag,
            "--closed-after-days",
            "0",
        ]);
        assert!(out.status.success());
        stdout(&out)
    };
    let first = rollup("--rollup");
    assert!(first.contains("closed dates computed"), "{first}");
    let clean = archiver(&["verify", "--table-uri", &uri]);
    assert!(clean.status.success(), "{}", stdout(&clean));
    assert!(stdout(&clean).contains("the rollup agrees with the rows"));

    tamper_with_rollup(dir.path());
    let broken = archiver(&["verify", "--table-uri", &uri]);
    assert_eq!(broken.status.code(), Some(1), "{}", stdout(&broken));
    assert!(
        stdout(&broken).contains("ROLLUP BAD"),
        "{}",
        stdout(&broken)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&archiver(&["verify", "--table-uri", &uri, "--json"]).stdout)
            .unwrap();
    assert_eq!(report["rollup"]["wrong_dates"].as_array().unwrap().len(), 1);
    // An update keeps it (its row counts still match); a rebuild recomputes it.
    rollup("--rollup");
    assert_eq!(
        archiver(&["verify", "--table-uri", &uri]).status.code(),
        Some(1)
    );
    rollup("--rebuild-rollup");
    let repaired = archiver(&["verify", "--table-uri", &uri]);
    assert!(repaired.status.success(), "{}", stdout(&repaired));
}
