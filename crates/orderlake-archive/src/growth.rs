//! How the table grew: its live rows, files and bytes at the end of each day, for as far back as
//! the Delta log still reaches (maintenance keeps `retention_hours` of it).
//!
//! A day's size is the size of the last version committed that day. Which versions a day holds
//! comes from listing `_delta_log/` (a commit file's modification time is its commit time, as
//! Delta readers take it); listing resumes after the last name seen, so each commit file is
//! listed once. A closed day's size is read once, by loading that version's snapshot (the last
//! checkpoint before it and the commits after), and kept: a version never changes.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use deltalake::DeltaTableBuilder;
use futures::TryStreamExt as _;
use object_store::path::Path;
use serde::Serialize;

use crate::error::{ArchiveError, Result};
use crate::table::ArchiveTable;

/// The table's size at the end of one day (or now, for the day of the current version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DaySize {
    pub day: NaiveDate,
    /// The version this size was read at: the day's last commit.
    pub version: u64,
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// Day-end sizes, kept between calls so each commit file is listed once and each closed day's
/// version is loaded once.
#[derive(Debug, Default)]
pub struct Growth {
    /// The last `_delta_log/` entry listed.
    listed_through: Option<Path>,
    /// First and last version committed on each day.
    versions: BTreeMap<NaiveDate, (u64, u64)>,
    /// Sizes of closed days, by day.
    closed: BTreeMap<NaiveDate, DaySize>,
}

impl Growth {
    pub fn new() -> Self {
        Self::default()
    }

    /// The table's size at the end of each of the last `days` days that have commits in the log,
    /// oldest first; the day of `table`'s version ends at that version.
    pub async fn sizes(&mut self, table: &ArchiveTable, days: usize) -> Result<Vec<DaySize>> {
        let Some(current) = table.version() else {
            return Ok(Vec::new());
        };
        self.list_new_commits(table).await?;
        let today = self
            .versions
            .iter()
            .find(|(_, (first, last))| *first <= current && current <= *last)
            .map(|(day, _)| *day);
        let wanted: Vec<(NaiveDate, u64)> = self
            .versions
            .iter()
            .filter(|(day, (_, last))| *last <= current && Some(**day) != today)
            .map(|(day, (_, last))| (*day, *last))
            .rev()
            .take(days.saturating_sub(usize::from(today.is_some())))
            .collect();
        for (day, version) in wanted.iter().rev() {
            if self.closed.get(day).is_some_and(|s| s.version == *version) {
                continue;
            }
            match table.at_version(*version).await {
                Ok(then) => {
                    self.closed.insert(*day, size_of(&then, *day)?);
                }
                // The log no longer reaches back to this version (cleaned up since it was
                // listed): the day is past the log's horizon.
                Err(e) => {
                    tracing::debug!(%day, version, error = %e, "growth: version no longer loadable");
                    self.versions.remove(day);
                    self.closed.remove(day);
                }
            }
        }
        let mut sizes: Vec<DaySize> = wanted
            .iter()
            .filter_map(|(day, _)| self.closed.get(day).copied())
            .collect();
        sizes.sort_by_key(|s| s.day);
        if let Some(day) = today {
            sizes.push(size_of(table, day)?);
        }
        Ok(sizes)
    }

    /// Lists the commit files added to the log since the last call.
    async fn list_new_commits(&mut self, table: &ArchiveTable) -> Result<()> {
        let uri = table.location().to_string();
        let log_store = table.delta().log_store();
        let store = log_store.object_store(None);
        let prefix = Path::from("_delta_log");
        let listing = match &self.listed_through {
            Some(after) => store.list_with_offset(Some(&prefix), after),
            None => store.list(Some(&prefix)),
        };
        let mut entries: Vec<_> = listing
            .try_collect()
            .await
            .map_err(|e| ArchiveError::delta(&uri)(e.into()))?;
        entries.sort_by(|a, b| a.location.cmp(&b.location));
        for entry in &entries {
            let Some(version) = commit_version(&entry.location) else {
                continue;
            };
            let day = entry.last_modified.date_naive();
            let span = self.versions.entry(day).or_insert((version, version));
            span.0 = span.0.min(version);
            span.1 = span.1.max(version);
        }
        if let Some(last) = entries.last() {
            self.listed_through = Some(last.location.clone());
        }
        Ok(())
    }
}

/// The version a log entry commits, when it is a commit file (`00000000000000000042.json`).
fn commit_version(path: &Path) -> Option<u64> {
    let name = path.filename()?;
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn size_of(table: &ArchiveTable, day: NaiveDate) -> Result<DaySize> {
    let live = table.files()?;
    Ok(DaySize {
        day,
        version: live.version,
        files: live.files.len() as u64,
        rows: live.files.iter().filter_map(|f| f.rows).sum(),
        bytes: live.files.iter().map(|f| f.size).sum(),
    })
}

impl ArchiveTable {
    /// The same table as it was at `version`.
    pub async fn at_version(&self, version: u64) -> Result<ArchiveTable> {
        let location = self.location().clone();
        let uri = location.to_string();
        let table = DeltaTableBuilder::from_url(location.url().clone())
            .map_err(ArchiveError::delta(&uri))?
            .with_storage_options(location.options().clone())
            .with_version(version)
            .load()
            .await
            .map_err(ArchiveError::delta(&uri))?;
        Ok(self.with_delta(table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_commit_files_name_versions() {
        assert_eq!(
            commit_version(&Path::from("_delta_log/00000000000000000042.json")),
            Some(42)
        );
        for other in [
            "_delta_log/00000000000000000040.checkpoint.parquet",
            "_delta_log/_last_checkpoint",
            "_delta_log/00000000000000000042.crc",
            "_delta_log/42.json",
            "_delta_log/.tmp/00000000000000000043.json.tmp",
        ] {
            assert_eq!(commit_version(&Path::from(other)), None, "{other}");
        }
    }
}
