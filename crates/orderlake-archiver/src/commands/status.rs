//! `orderlake-archiver status`: what the archive holds, per source partition.

use orderlake_archive::{ArchiveTable, TableStatus};

use crate::config::ArchiverConfig;
use crate::error::CliError;

pub async fn status(config: &ArchiverConfig) -> Result<TableStatus, CliError> {
    let table = ArchiveTable::open(super::table_location(config)?).await?;
    Ok(table.status().await?)
}

pub fn render(s: &TableStatus) -> String {
    let mut out = format!(
        "table      {}\nversion    {}\ncommitted  {}\nfiles      {}\nrows       {} ({} imported)\n\n",
        s.table_uri,
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
    out
}
