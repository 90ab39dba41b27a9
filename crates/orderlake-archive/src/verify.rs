//! What `orderlake-archiver verify` checks: per source partition, the offsets the table holds,
//! the offsets missing between the first and the last (on a topic that is not compacted, loss),
//! the offsets held more than once (duplicates), and whether the offset ledger agrees with the
//! rows. Reads every row's coordinates, nothing else.

use arrow::array::{Array, AsArray as _};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use serde::Serialize;

use crate::error::{ArchiveError, Result};
use crate::key_index::IndexCheck;
use crate::ledger::{ImportSource, OffsetLedger};
use crate::rollup::RollupCheck;
use crate::table::ArchiveTable;

/// How many gap ranges and duplicate offsets a report lists per table (the counts are exact).
pub const LISTED: usize = 1000;

/// The verdict on one source partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionCheck {
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub rows: i64,
    /// Offsets between first and last that no row holds.
    pub missing: i64,
    /// Rows beyond the first for an offset held more than once.
    pub duplicated: i64,
    /// The ledger's "archived through" offset.
    pub ledger_offset: Option<i64>,
    /// Missing offset ranges, inclusive (at most [`LISTED`] per table).
    pub gaps: Vec<(i64, i64)>,
    /// Offsets held more than once (at most [`LISTED`] per table).
    pub duplicate_offsets: Vec<i64>,
    /// With `--brokers`: the partition's end offset on the broker (the next offset it assigns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_end_offset: Option<i64>,
}

impl PartitionCheck {
    /// With `--brokers`: records on the broker the archive does not hold yet.
    pub fn behind(&self) -> Option<i64> {
        self.broker_end_offset
            .map(|end| (end - self.ledger_offset.map_or(0, |o| o + 1)).max(0))
    }

    /// The ledger claims offsets the table does not hold, or rows lie beyond the ledger.
    pub fn ledger_disagrees(&self) -> bool {
        self.ledger_offset != Some(self.last_offset)
    }

    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.duplicated == 0 && !self.ledger_disagrees()
    }
}

/// The verdict on one imported source: its rows against its ledger count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportCheck {
    /// The file or generator the rows came from.
    pub source: String,
    pub id: String,
    pub rows: i64,
    /// How many records of the source the ledger says the table holds.
    pub ledger_rows: Option<i64>,
}

impl ImportCheck {
    pub fn is_clean(&self) -> bool {
        self.ledger_rows == Some(self.rows)
    }
}

/// The verdict on the whole table.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub table_uri: String,
    pub version: Option<u64>,
    pub partitions: Vec<PartitionCheck>,
    /// Rows without Kafka coordinates (imported from legacy exports).
    pub imported_rows: i64,
    /// Per imported source: rows against the ledger (a source imported twice, or partly lost,
    /// disagrees).
    pub imports: Vec<ImportCheck>,
    /// The key index against the rows of the files it covers.
    pub index: IndexCheck,
    /// The daily rollup against the rows of the dates it serves.
    pub rollup: RollupCheck,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.partitions.iter().all(PartitionCheck::is_clean)
            && self.imports.iter().all(ImportCheck::is_clean)
            && self.index.is_clean()
            && self.rollup.is_clean()
    }

    pub fn missing(&self) -> i64 {
        self.partitions.iter().map(|p| p.missing).sum()
    }

    pub fn duplicated(&self) -> i64 {
        self.partitions.iter().map(|p| p.duplicated).sum()
    }
}

impl ArchiveTable {
    /// Checks every source partition for gaps and duplicates, and against the ledger.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let uri = self.location().to_string();
        let fail = ArchiveError::datafusion(&uri);
        let ctx = self.session_with("archive").await?;
        let run = |sql: String| {
            let ctx = ctx.clone();
            async move { ctx.sql(&sql).await?.collect().await }
        };
        let summary = run(
            "SELECT kafka_topic, kafka_partition, count(*), count(DISTINCT kafka_offset), \
                 min(kafka_offset), max(kafka_offset) FROM archive GROUP BY 1, 2 ORDER BY 1, 2"
                .into(),
        )
        .await
        .map_err(fail)?;
        let gaps = run(format!(
            "SELECT kafka_topic, kafka_partition, prev + 1, kafka_offset - 1 FROM (\
               SELECT kafka_topic, kafka_partition, kafka_offset, lag(kafka_offset) OVER (\
                 PARTITION BY kafka_topic, kafka_partition ORDER BY kafka_offset) AS prev \
               FROM (SELECT DISTINCT kafka_topic, kafka_partition, kafka_offset FROM archive \
                     WHERE kafka_topic IS NOT NULL) AS d) AS l \
             WHERE kafka_offset - prev > 1 ORDER BY 1, 2, 3 LIMIT {LISTED}"
        ))
        .await
        .map_err(fail)?;
        let dups = run(format!(
            "SELECT kafka_topic, kafka_partition, kafka_offset, 0 FROM archive \
             WHERE kafka_topic IS NOT NULL GROUP BY 1, 2, 3 HAVING count(*) > 1 \
             ORDER BY 1, 2, 3 LIMIT {LISTED}"
        ))
        .await
        .map_err(fail)?;

        let by_source = run("SELECT import_source, count(*) FROM archive \
             WHERE import_source IS NOT NULL GROUP BY 1 ORDER BY 1"
            .into())
        .await
        .map_err(fail)?;
        let mut imports = Vec::new();
        for batch in &by_source {
            let labels = arrow::compute::cast(batch.column(0), &DataType::Utf8)
                .map_err(|e| fail(e.into()))?;
            let labels = labels.as_string::<i32>();
            let rows = batch.column(1).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                let source = ImportSource::from_label(labels.value(i));
                imports.push(ImportCheck {
                    ledger_rows: source.imported(self).await?,
                    source: source.name,
                    id: source.id,
                    rows: rows.value(i),
                });
            }
        }

        let mut partitions = Vec::new();
        let mut imported_rows = 0;
        for batch in &summary {
            let topics = arrow::compute::cast(batch.column(0), &DataType::Utf8)
                .map_err(|e| fail(e.into()))?;
            let topics = topics.as_string::<i32>();
            let parts = batch.column(1).as_primitive::<Int32Type>();
            let count = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
            let (rows, distinct, first, last) = (count(2), count(3), count(4), count(5));
            for i in 0..batch.num_rows() {
                if topics.is_null(i) {
                    imported_rows += rows.value(i);
                    continue;
                }
                partitions.push(PartitionCheck {
                    topic: topics.value(i).to_owned(),
                    partition: parts.value(i),
                    first_offset: first.value(i),
                    last_offset: last.value(i),
                    rows: rows.value(i),
                    missing: last.value(i) - first.value(i) + 1 - distinct.value(i),
                    duplicated: rows.value(i) - distinct.value(i),
                    ledger_offset: None,
                    gaps: Vec::new(),
                    duplicate_offsets: Vec::new(),
                    broker_end_offset: None,
                });
            }
        }
        let find = |partitions: &mut Vec<PartitionCheck>, topic: &str, partition: i32| {
            partitions
                .iter_mut()
                .position(|p| p.topic == topic && p.partition == partition)
        };
        for (batches, is_gap) in [(&gaps, true), (&dups, false)] {
            for batch in batches {
                let topics = arrow::compute::cast(batch.column(0), &DataType::Utf8)
                    .map_err(|e| fail(e.into()))?;
                let topics = topics.as_string::<i32>();
                let parts = batch.column(1).as_primitive::<Int32Type>();
                let a = batch.column(2).as_primitive::<Int64Type>();
                let b = batch.column(3).as_primitive::<Int64Type>();
                for i in 0..batch.num_rows() {
                    if let Some(at) = find(&mut partitions, topics.value(i), parts.value(i)) {
                        if is_gap {
                            partitions[at].gaps.push((a.value(i), b.value(i)));
                        } else {
                            partitions[at].duplicate_offsets.push(a.value(i));
                        }
                    }
                }
            }
        }
        let offsets = OffsetLedger::offsets_of(
            self,
            partitions.iter().map(|p| (p.topic.as_str(), p.partition)),
        )
        .await?;
        for (p, offset) in partitions.iter_mut().zip(offsets) {
            p.ledger_offset = offset;
        }
        Ok(VerifyReport {
            table_uri: uri.clone(),
            version: self.version(),
            partitions,
            imported_rows,
            imports,
            index: self.verify_index().await?,
            rollup: self.verify_rollup().await?,
        })
    }
}
