//! `orderlake-archiver status`: what the archive holds, per source partition.

use std::time::Duration;

use orderlake_archive::{ArchiveTable, SourcePartition, TableStatus, VerifyReport};

use crate::config::ArchiverConfig;
use crate::error::CliError;

pub async fn status(config: &ArchiverConfig) -> Result<TableStatus, CliError> {
    let table = ArchiveTable::open(super::table_location(config)?).await?;
    Ok(table.status().await?)
}

pub async fn verify(
    config: &ArchiverConfig,
    brokers: Option<&str>,
) -> Result<VerifyReport, CliError> {
    let table = ArchiveTable::open(super::table_location(config)?).await?;
    let mut report = table.verify().await?;
    if let Some(brokers) = brokers {
        let from: Vec<(SourcePartition, i64)> = report
            .partitions
            .iter()
            .map(|p| {
                let sp = SourcePartition::new(p.topic.as_str(), p.partition);
                (sp, p.ledger_offset.map_or(0, |o| o + 1))
            })
            .collect();
        let brokers = brokers.to_owned();
        let ends = tokio::task::spawn_blocking(move || {
            orderlake_ingest::lag::end_offsets(&brokers, &from, Duration::from_secs(20))
        })
        .await
        .map_err(|e| CliError::Usage(format!("reading end offsets: {e}")))??;
        for p in &mut report.partitions {
            p.broker_end_offset = ends
                .get(&SourcePartition::new(p.topic.as_str(), p.partition))
                .copied();
        }
    }
    Ok(report)
}

/// The verify report for people: one line per partition, then what is wrong, in full.
pub fn render_verify(r: &VerifyReport) -> String {
    let mut out = format!(
        "table      {}\nversion    {}\n\n",
        r.table_uri,
        r.version.map_or("-".into(), |v| v.to_string()),
    );
    if !r.partitions.is_empty() {
        out.push_str(&format!(
            "{:<32} {:>9} {:>14} {:>14} {:>12} {:>9} {:>10} {:>14} {:>10}\n",
            "topic",
            "partition",
            "first offset",
            "last offset",
            "rows",
            "missing",
            "duplicated",
            "ledger",
            "behind",
        ));
    }
    for p in &r.partitions {
        out.push_str(&format!(
            "{:<32} {:>9} {:>14} {:>14} {:>12} {:>9} {:>10} {:>14} {:>10}\n",
            p.topic,
            p.partition,
            p.first_offset,
            p.last_offset,
            p.rows,
            p.missing,
            p.duplicated,
            p.ledger_offset.map_or("-".into(), |o| o.to_string()),
            p.behind().map_or("-".into(), |b| b.to_string()),
        ));
    }
    for p in r.partitions.iter().filter(|p| !p.is_clean()) {
        let name = format!("{}[{}]", p.topic, p.partition);
        for (from, to) in &p.gaps {
            out.push_str(&format!("MISSING    {name}: offsets {from}..={to}\n"));
        }
        for o in &p.duplicate_offsets {
            out.push_str(&format!("DUPLICATED {name}: offset {o}\n"));
        }
        if p.ledger_disagrees() {
            out.push_str(&format!(
                "LEDGER     {name}: the ledger says archived through {} but the last row is offset {}\n",
                p.ledger_offset.map_or("nothing".into(), |o| o.to_string()),
                p.last_offset
            ));
        }
    }
    for i in &r.imports {
        out.push_str(&format!(
            "{} {}: {} rows, the ledger says {} records imported\n",
            if i.is_clean() {
                "IMPORTED  "
            } else {
                "IMPORT    "
            },
            i.source,
            i.rows,
            i.ledger_rows.map_or("no".into(), |n| n.to_string())
        ));
    }
    let ix = &r.index;
    out.push_str(&format!(
        "{} {} segments, {} entries; {} of {} live files covered, {} rows' keys missing, {} stale entries\n",
        if ix.is_clean() { "INDEX     " } else { "INDEX BAD " },
        ix.segments,
        ix.entries,
        ix.covered_files,
        ix.live_files,
        ix.missing_entries,
        ix.stale_entries,
    ));
    for example in &ix.missing_examples {
        out.push_str(&format!(
            "UNINDEXED  {example}: a row the index does not name (`maintain --reindex` rebuilds it)\n"
        ));
    }
    let ru = &r.rollup;
    out.push_str(&match &ru.unreadable {
        Some(why) => format!(
            "ROLLUP     unreadable, so not served (`maintain --rollup` rebuilds it): {why}\n"
        ),
        None => format!(
            "{} {} dates served, {} of them wrong\n",
            if ru.is_clean() {
                "ROLLUP    "
            } else {
                "ROLLUP BAD"
            },
            ru.current_dates,
            ru.wrong_dates.len()
        ),
    });
    for date in &ru.wrong_dates {
        out.push_str(&format!(
            "WRONG      rollup of {date}: differs from its rows (`maintain --rebuild-rollup` recomputes it)\n"
        ));
    }
    out.push_str(&if r.is_clean() {
        format!(
            "OK: {} partitions, no offset missing or duplicated, ledger agrees; {} imported sources agree with the ledger; the key index names every row; the rollup agrees with the rows\n",
            r.partitions.len(),
            r.imports.len()
        )
    } else {
        format!(
            "FAILED: {} offsets missing, {} duplicated, {} imported sources disagree with the ledger, {} rows' keys missing from the index, {} rollup dates wrong\n",
            r.missing(),
            r.duplicated(),
            r.imports.iter().filter(|i| !i.is_clean()).count(),
            r.index.missing_entries,
            r.rollup.wrong_dates.len()
        )
    });
    out
}

pub fn render(s: &TableStatus) -> String {
    let mut out = format!(
        "table      {} ({} partitions, columns in {})\nversion    {}\ncommitted  {}\nfiles      {}\nrows       {} ({} imported)\n\n",
        s.table_uri,
        s.partitioning,
        s.codec,
        s.version.map_or("-".into(), |v| v.to_string()),
        s.last_commit.map_or("-".into(), |t| t.to_rfc3339()),
        s.files,
        s.rows,
        s.imported_rows,
    );
    out.push_str(&format!(
        "{:<32} {:>9} {:>14} {:>12} {:>14} {:>7} {:>10}\n",
        "topic", "partition", "archived to", "rows", "first offset", "files", "undecoded"
    ));
    for p in &s.partitions {
        out.push_str(&format!(
            "{:<32} {:>9} {:>14} {:>12} {:>14} {:>7} {:>10}\n",
            p.topic,
            p.partition,
            p.archived_offset.map_or("-".into(), |o| o.to_string()),
            p.rows,
            p.first_offset,
            p.files,
            p.undecoded_rows,
        ));
    }
    let ix = &s.index;
    out.push_str(&format!(
        "\nkey index  {} segments, {} entries, {} bytes; covers {} of {} live files\n",
        ix.summary.segments, ix.summary.entries, ix.summary.bytes, ix.covered_live_files, s.files
    ));
    let r = &s.rollup;
    out.push_str(&format!(
        "rollup     {} dates ({} to {}), {} rows, {} bytes; {} of {} live partitions current\n",
        r.summary.dates,
        r.summary.first_date.as_deref().unwrap_or("-"),
        r.summary.last_date.as_deref().unwrap_or("-"),
        r.summary.rows,
        r.summary.bytes,
        r.current_partitions,
        r.live_partitions
    ));
    if let Some(why) = &r.unreadable {
        out.push_str(&format!(
            "           unreadable, served from rows until maintenance rebuilds it: {why}\n"
        ));
    }
    out
}
