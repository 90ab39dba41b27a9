//! The index's upkeep as table operations: covering the files no segment covers and merging
//! (`maintain`), rebuilding from scratch (`maintain --reindex`), and checking it against the
//! table (`verify`).

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;

use super::merge::{MergeReport, index_files, key_rows, merge_all};
use super::{
    IndexEntry, KeyIndex, Segment, SegmentCache, delete_segments, entries_of_rows, list_segments,
    segment_err,
};
use crate::error::Result;
use crate::files::{ArchiveFile, ArchiveFiles};
use crate::table::ArchiveTable;
use object_store::path::Path;

/// Segments that cover no live file are kept this long before a merge drops them: their flush
/// may still be committing.
const YOUNG_SEGMENT_MS: i64 = 3_600_000;

/// What an index update did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexReport {
    /// Live files that no segment covered, now indexed.
    pub files_indexed: usize,
    pub live_files: usize,
    pub merge: MergeReport,
}

/// The verdict on the index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexCheck {
    pub segments: usize,
    pub entries: u64,
    pub live_files: usize,
    /// Live files the index covers: their keys must all be in it.
    pub covered_files: usize,
    /// Rows of covered files whose `(key, date)` the index lacks: lookups would miss them.
    pub missing_entries: u64,
    /// Some of the missing ones, as `column=key@date`.
    pub missing_examples: Vec<String>,
    /// Entries no row of a covered file has (harmless: a lookup reads a file more).
    pub stale_entries: u64,
}

impl IndexCheck {
    /// No lookup through the index can miss a row.
    pub fn is_clean(&self) -> bool {
        self.missing_entries == 0
    }
}

/// An entry's 128-bit fingerprint, so checks over tens of millions of entries fit in memory.
fn fingerprint(e: &IndexEntry) -> u128 {
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        salt.hash(&mut h);
        e.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

impl ArchiveTable {
    /// Indexes every live file no segment covers (files of compaction, of writers with the index
    /// off), then merges all segments into one.
    pub async fn update_index(&self) -> Result<IndexReport> {
        let files = self.files()?;
        let index = KeyIndex::load(&self.index_store(), &mut SegmentCache::new()).await?;
        let uncovered: Vec<_> = files
            .files
            .iter()
            .filter(|f| !index.covers(&f.relative_path))
            .cloned()
            .collect();
        self.index_and_merge(&files, &uncovered, &[]).await
    }

    /// Rebuilds the index from the live files alone: new segments first, then the old ones are
    /// deleted (a segment a writer adds meanwhile is kept), then everything is merged.
    pub async fn reindex(&self) -> Result<IndexReport> {
        let files = self.files()?;
        let old = list_segments(&self.index_store()).await?;
        let old: Vec<_> = old.into_iter().map(|(path, _)| path).collect();
        self.index_and_merge(&files, &files.files, &old).await
    }

    /// Writes segments for `to_index`, deletes the `replaced` segments, and merges what is left.
    async fn index_and_merge(
        &self,
        files: &ArchiveFiles,
        to_index: &[ArchiveFile],
        replaced: &[Path],
    ) -> Result<IndexReport> {
        let index_store = self.index_store();
        index_files(&files.store, &index_store, to_index).await?;
        delete_segments(&index_store, replaced).await?;
        let live: HashSet<String> = files
            .files
            .iter()
            .map(|f| f.relative_path.clone())
            .collect();
        let merge = merge_all(&index_store, &live, YOUNG_SEGMENT_MS).await?;
        Ok(IndexReport {
            files_indexed: to_index.len(),
            live_files: files.files.len(),
            merge,
        })
    }

    /// Checks every row of every covered live file against the index.
    pub async fn verify_index(&self) -> Result<IndexCheck> {
        let files = self.files()?;
        let index_store = self.index_store();
        let listed = list_segments(&index_store).await?;
        let mut covered = HashSet::new();
        let mut indexed: Vec<u128> = Vec::new();
        for (path, size) in &listed {
            let segment = Segment::open(&index_store, path.clone(), *size)
                .await
                .map_err(segment_err(path))?;
            covered.extend(segment.covers.iter().cloned());
            indexed.extend(
                segment
                    .read_all(&index_store)
                    .await
                    .map_err(segment_err(path))?
                    .iter()
                    .map(fingerprint),
            );
        }
        indexed.sort_unstable();
        indexed.dedup();
        let covered_files: Vec<_> = files
            .files
            .iter()
            .filter(|f| covered.contains(&f.relative_path))
            .collect();
        let mut check = IndexCheck {
            segments: listed.len(),
            entries: indexed.len() as u64,
            live_files: files.files.len(),
            covered_files: covered_files.len(),
            ..IndexCheck::default()
        };
        let mut present: Vec<u128> = Vec::new();
        let reads: Vec<_> = covered_files
            .iter()
            .map(|f| key_rows(&files.store, f))
            .collect();
        let mut reads = futures::stream::iter(reads).buffered(4);
        while let Some(batches) = reads.try_next().await? {
            for entry in entries_of_rows(&batches)? {
                let print = fingerprint(&entry);
                if indexed.binary_search(&print).is_ok() {
                    present.push(print);
                } else {
                    check.missing_entries += 1;
                    if check.missing_examples.len() < 20 {
                        check.missing_examples.push(format!(
                            "{}={}@{}",
                            entry.column.name(),
                            entry.key,
                            chrono::NaiveDate::from_num_days_from_ce_opt(entry.date + 719_163)
                                .map_or_else(|| entry.date.to_string(), |d| d.to_string())
                        ));
                    }
                }
            }
        }
        present.sort_unstable();
        present.dedup();
        check.stale_entries = (indexed.len() - present.len()) as u64;
        Ok(check)
    }
}
