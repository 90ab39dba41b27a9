//! The table's recent commits as an operator reads them: when, what operation, and how many
//! files and rows each added or removed (from the commit files of the Delta log).

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde::Serialize;

use crate::error::{ArchiveError, Result};
use crate::table::ArchiveTable;

/// One commit of the Delta log.
#[derive(Debug, Clone, Serialize)]
pub struct CommitSummary {
    pub version: u64,
    pub timestamp: Option<DateTime<Utc>>,
    /// Delta's operation name: WRITE for archived flushes and imports, OPTIMIZE for compaction,
    /// VACUUM START / VACUUM END, CREATE TABLE, …
    pub operation: String,
    pub files_added: u64,
    pub files_removed: u64,
    /// Rows in the files added (from their statistics).
    pub rows_added: u64,
    pub bytes_added: u64,
}

impl CommitSummary {
    /// Reads one commit file (newline-delimited actions).
    fn parse(version: u64, bytes: &[u8]) -> Self {
        let mut c = Self {
            version,
            timestamp: None,
            operation: String::new(),
            files_added: 0,
            files_removed: 0,
            rows_added: 0,
            bytes_added: 0,
        };
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(info) = action.get("commitInfo") {
                c.timestamp = info["timestamp"]
                    .as_i64()
                    .and_then(DateTime::<Utc>::from_timestamp_millis);
                c.operation = info["operation"].as_str().unwrap_or_default().to_owned();
            } else if let Some(add) = action.get("add") {
                c.files_added += 1;
                c.bytes_added += add["size"].as_u64().unwrap_or(0);
                c.rows_added += add["stats"]
                    .as_str()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                    .and_then(|s| s["numRecords"].as_u64())
                    .unwrap_or(0);
            } else if action.get("remove").is_some() {
                c.files_removed += 1;
            }
        }
        c
    }
}

impl ArchiveTable {
    /// The last `n` commits, newest first (commit files already cleaned up are skipped).
    pub async fn recent_commits(&self, n: u64) -> Result<Vec<CommitSummary>> {
        let Some(current) = self.version() else {
            return Ok(Vec::new());
        };
        let store = self.delta().log_store();
        let versions = (current.saturating_sub(n.saturating_sub(1))..=current).rev();
        let commits: Vec<Option<CommitSummary>> = futures::stream::iter(versions)
            .map(|v| {
                let store = store.clone();
                async move {
                    let bytes =
                        store
                            .read_commit_entry(v)
                            .await
                            .map_err(|e| ArchiveError::Delta {
                                uri: self.location().to_string(),
                                source: Box::new(e),
                            })?;
                    Ok::<_, ArchiveError>(bytes.map(|b| CommitSummary::parse(v, &b)))
                }
            })
            .buffered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        Ok(commits.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_file_is_summarised() {
        let log = br#"{"commitInfo":{"timestamp":1764115200000,"operation":"OPTIMIZE"}}
{"add":{"path":"a.parquet","size":100,"stats":"{\"numRecords\":7}"}}
{"add":{"path":"b.parquet","size":50,"stats":"{\"numRecords\":3}"}}
{"remove":{"path":"c.parquet"}}
{"txn":{"appId":"x","version":1}}
"#;
        let c = CommitSummary::parse(4, log);
        assert_eq!(c.version, 4);
        assert_eq!(c.operation, "OPTIMIZE");
        assert_eq!((c.files_added, c.files_removed), (2, 1));
        assert_eq!((c.rows_added, c.bytes_added), (10, 150));
        assert_eq!(
            c.timestamp.unwrap().to_rfc3339(),
            "2025-11-26T00:00:00+00:00"
        );
    }
}
