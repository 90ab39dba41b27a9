//! `orderlake-archiver import`: load legacy exports (newline-delimited JSON or Parquet, local or
//! on S3) into the archive through the source mappings, idempotently per file.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use orderlake_archive::ArchiveTable;
use orderlake_ingest::decode::TopicDecoder;
use orderlake_ingest::{ArchiveWriter, ImportFile, MappingSet};

use crate::cli::ImportArgs;
use crate::config::ArchiverConfig;
use crate::error::CliError;

/// What became of one input file.
#[derive(Debug, Clone)]
pub struct ImportedFile {
    pub uri: String,
    pub records: u64,
    pub added: u64,
    pub undecodable: u64,
    pub seconds: f64,
}

/// Imports every input in order and returns the summary to print.
pub async fn import(config: &ArchiverConfig, args: &ImportArgs) -> Result<String, CliError> {
    let options: HashMap<String, String> = config
        .archive
        .storage_options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Open every input first: a typo in the last name fails before anything is written.
    let files = args
        .inputs
        .iter()
        .map(|uri| ImportFile::open(uri, &options, args.format))
        .collect::<Result<Vec<_>, _>>()?;
    let table =
        ArchiveTable::open_or_create_with(super::table_location(config)?, config.table_layout())
            .await?;
    let mut writer = ArchiveWriter::new(table, config.writer_settings());
    let mut decoder = TopicDecoder::new(
        MappingSet::new(config.all_mappings())?,
        config.decode.max_value_bytes,
    );
    let mut done = Vec::new();
    for file in &files {
        let started = Instant::now();
        let size = file.size().await?;
        let bar = bar(args.quiet, size, "identifying", "{bytes}/{total_bytes}");
        let source = file.source(|n| bar.inc(n)).await?;
        bar.finish_and_clear();
        let bar = bar_for_records(args.quiet, &file.uri);
        let records = file.records(&args.topic).await?;
        let report = orderlake_ingest::import_records(
            &mut writer,
            &mut decoder,
            &source,
            records,
            args.chunk_rows,
            |n| bar.inc(n),
        )
        .await?;
        bar.finish_and_clear();
        tracing::info!(
            input = %file.uri, id = %source.id, records = report.records, added = report.added,
            commits = report.commits, "imported"
        );
        done.push(ImportedFile {
            uri: file.uri.clone(),
            records: report.records,
            added: report.added,
            undecodable: report.undecodable,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok(render(&done))
}

fn bar(quiet: bool, len: u64, what: &str, counts: &str) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len)
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {counts} {{per_sec}} eta {{eta}} {{wide_bar}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn bar_for_records(quiet: bool, uri: &str) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}: {pos} records {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(format!("importing {uri}"));
    bar
}

/// One line per file, then the totals.
pub fn render(files: &[ImportedFile]) -> String {
    let mut out = String::new();
    for f in files {
        let _ = writeln!(
            out,
            "{}: {} records, {} added{} ({} undecodable, kept raw) in {:.1}s",
            f.uri,
            f.records,
            f.added,
            if f.added < f.records {
                format!(", {} imported before", f.records - f.added)
            } else {
                String::new()
            },
            f.undecodable,
            f.seconds
        );
    }
    let (records, added): (u64, u64) = files
        .iter()
        .fold((0, 0), |(r, a), f| (r + f.records, a + f.added));
    let _ = writeln!(
        out,
        "imported {} files: {records} records, {added} added",
        files.len()
    );
    out
}
