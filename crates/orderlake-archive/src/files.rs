//! The live data files of one table version, read from the Delta log once: where each file lives
//! in its object store, its event date, its row count and the min/max statistics the log keeps.
//! Queries prune with these before opening a single file; nothing here is Delta-specific once
//! built, so a plain Parquet scan (locally or on remote executors) can be planned from it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray as _, Date32Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Date32Type, SchemaRef, TimeUnit};
use chrono::NaiveDate;
use datafusion::execution::object_store::ObjectStoreUrl;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::Deserialize;

use crate::error::{ArchiveError, Result};
use crate::layout::{Partitioning, parse_partition_value};
use crate::schema::{self, EVENT_DATE};
use crate::table::ArchiveTable;

/// One live Parquet file of the archive.
#[derive(Debug, Clone)]
pub struct ArchiveFile {
    /// The file's path inside [`ArchiveFiles::store`].
    pub path: Path,
    /// The path relative to the table root, as the Delta log names it.
    pub relative_path: String,
    pub size: u64,
    /// The partition value (`event_date`, or the first day of `event_month`), in days since
    /// 1970-01-01.
    pub partition: Option<i32>,
    /// The first and last event date of the file's rows: its date when partitioned by date,
    /// otherwise the log's statistics narrowed to the partition's dates (the whole partition
    /// without statistics).
    pub dates: Option<(i32, i32)>,
    /// Rows in the file, from the log's statistics.
    pub rows: Option<u64>,
}

impl ArchiveFile {
    /// Whether the file can hold rows of event date `day`.
    pub fn may_hold(&self, day: i32) -> bool {
        self.dates
            .is_some_and(|(first, last)| first <= day && day <= last)
    }

    /// Whether the file can hold rows of any of `days`.
    pub fn may_hold_any<'a>(&self, mut days: impl Iterator<Item = &'a i32>) -> bool {
        days.any(|d| self.may_hold(*d))
    }

    /// Each row's event date, for a `batch` read from this file: its `event_date` column where
    /// the file stores one (read it along), else the file's one date. `None` when neither is known.
    pub fn row_dates(&self, batch: &RecordBatch) -> Option<Date32Array> {
        if let Some(column) = batch.column_by_name(EVENT_DATE) {
            let dates = arrow::compute::cast(column, &DataType::Date32).ok()?;
            return Some(dates.as_primitive::<Date32Type>().clone());
        }
        match self.dates? {
            (first, last) if first == last => {
                Some(Date32Array::from_value(first, batch.num_rows()))
            }
            _ => None,
        }
    }
}

/// Per-file min, max and null count of one column, aligned with [`ArchiveFiles::files`]; null
/// where the log has no statistic for a file.
#[derive(Debug, Clone)]
pub struct ColumnStatistics {
    pub min: ArrayRef,
    pub max: ArrayRef,
    pub null_count: UInt64Array,
}

/// Every live file of one table version, with what the log says about each.
#[derive(Debug, Clone)]
pub struct ArchiveFiles {
    pub version: u64,
    /// Where the files are: `file:///` or `s3://bucket/`, registered with [`Self::store`].
    pub store_url: ObjectStoreUrl,
    pub store: Arc<dyn ObjectStore>,
    /// How the table is partitioned.
    pub partitioning: Partitioning,
    /// The archive rows' columns (`event_date` last; a monthly table's `event_month` is left
    /// out: it only repeats `event_date`'s month).
    pub schema: SchemaRef,
    pub files: Vec<ArchiveFile>,
    /// Statistics of the columns the log keeps them for (`schema::STATS_COLUMNS`).
    pub statistics: HashMap<String, ColumnStatistics>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct FileStats {
    num_records: Option<u64>,
    #[serde(default)]
    min_values: HashMap<String, serde_json::Value>,
    #[serde(default)]
    max_values: HashMap<String, serde_json::Value>,
    #[serde(default)]
    null_count: HashMap<String, serde_json::Value>,
}

impl ArchiveTable {
    /// The live files of the table's current version and their statistics.
    pub fn files(&self) -> Result<ArchiveFiles> {
        let uri = self.location().to_string();
        let delta = self.delta();
        let snapshot = delta.snapshot().map_err(ArchiveError::delta(&uri))?;
        let mut root = delta.table_url().clone();
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let invalid = |reason: String| ArchiveError::InvalidLocation {
            uri: uri.clone(),
            reason,
        };
        let store_url = ObjectStoreUrl::parse(format!(
            "{}://{}",
            root.scheme(),
            root.host_str().unwrap_or_default()
        ))
        .map_err(|e| invalid(e.to_string()))?;

        let partitioning = self.partitioning();
        let mut files = Vec::new();
        let mut stats = Vec::new();
        for view in snapshot.log_data().iter() {
            let relative = view.path().into_owned();
            let url = root
                .join(&relative)
                .map_err(|e| invalid(format!("file `{relative}`: {e}")))?;
            let path =
                Path::from_url_path(url.path()).map_err(|e| invalid(format!("{relative}: {e}")))?;
            let partition = view
                .partition_values_map()
                .get(partitioning.column())
                .and_then(|v| v.as_deref())
                .and_then(parse_partition_value);
            let parsed: FileStats = view
                .stats()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
            let dates = partition.map(|p| {
                let (first, last) = partitioning.dates_of(p);
                let stat = |m: &HashMap<String, serde_json::Value>| {
                    m.get(EVENT_DATE)
                        .and_then(serde_json::Value::as_str)
                        .and_then(parse_partition_value)
                };
                (
                    stat(&parsed.min_values).map_or(first, |d| d.max(first)),
                    stat(&parsed.max_values).map_or(last, |d| d.min(last)),
                )
            });
            files.push(ArchiveFile {
                path,
                relative_path: relative,
                size: u64::try_from(view.size()).unwrap_or_default(),
                partition,
                dates,
                rows: parsed.num_records,
            });
            stats.push(parsed);
        }
        let table_schema = schema::arrow_schema();
        let mut statistics = HashMap::new();
        for column in schema::STATS_COLUMNS {
            let Ok(field) = table_schema.field_with_name(column) else {
                continue;
            };
            let column_stats = column_statistics(&stats, column, field.data_type())
                .map_err(|e| invalid(format!("statistics of `{column}`: {e}")))?;
            statistics.insert(column.to_owned(), column_stats);
        }
        Ok(ArchiveFiles {
            partitioning,
            version: delta.version().unwrap_or_default(),
            store_url,
            store: delta.log_store().root_object_store(None),
            schema: table_schema,
            files,
            statistics,
        })
    }
}

/// Days since 1970-01-01 (Arrow's `Date32`).
pub fn days_since_epoch(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    i32::try_from(date.signed_duration_since(epoch).num_days()).unwrap_or(i32::MAX)
}

/// The date `days` after 1970-01-01 (`None` out of chrono's range).
pub fn date_of_days(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(days.into()))
}

/// One column's statistics across files, cast from the log's JSON to the column's type.
fn column_statistics(
    stats: &[FileStats],
    column: &str,
    data_type: &DataType,
) -> std::result::Result<ColumnStatistics, arrow::error::ArrowError> {
    let text = |m: &HashMap<String, serde_json::Value>| -> Option<String> {
        match m.get(column)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let min: StringArray = stats.iter().map(|s| text(&s.min_values)).collect();
    let max: StringArray = stats.iter().map(|s| text(&s.max_values)).collect();
    let min = arrow::compute::cast(&min, data_type)?;
    let mut max = arrow::compute::cast(&max, data_type)?;
    // The log keeps timestamps to the millisecond, truncated: a file's true maximum can lie up to
    // 999 µs past what it says.
    if let DataType::Timestamp(TimeUnit::Microsecond, tz) = data_type {
        let widened: arrow::array::TimestampMicrosecondArray = max
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .expect("cast to a microsecond timestamp")
            .iter()
            .map(|v| v.map(|v| v.saturating_add(999)))
            .collect();
        max = Arc::new(widened.with_timezone_opt(tz.clone()));
    }
    let null_count = stats
        .iter()
        .map(|s| s.null_count.get(column).and_then(serde_json::Value::as_u64))
        .collect();
    Ok(ColumnStatistics {
        min,
        max,
        null_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::TimestampMicrosecondType;

    #[test]
    fn statistics_cast_to_column_types_and_widen_timestamp_maxima() {
        let stats: Vec<FileStats> = [
            r#"{"numRecords":3,"minValues":{"order_id":"A-1","kafka_offset":5,"event_time":"2024-01-01T00:00:00.000Z"},"maxValues":{"order_id":"A-9","kafka_offset":9,"event_time":"2024-01-02T00:00:00.123Z"},"nullCount":{"order_id":1}}"#,
            r#"{"numRecords":1}"#,
        ]
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
        let ids = column_statistics(&stats, "order_id", &DataType::Utf8).unwrap();
        assert_eq!(ids.min.as_string::<i32>().value(0), "A-1");
        assert!(ids.max.is_null(1));
        assert_eq!(ids.null_count.value(0), 1);
        assert!(ids.null_count.is_null(1));
        let offsets = column_statistics(&stats, "kafka_offset", &DataType::Int64).unwrap();
        assert_eq!(
            offsets
                .max
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            9
        );
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let times = column_statistics(&stats, "event_time", &ts).unwrap();
        let max = times
            .max
            .as_primitive::<TimestampMicrosecondType>()
            .value(0);
        assert_eq!(max, 1_704_153_600_123_999);
        assert_eq!(times.max.data_type(), &ts);
    }

    #[test]
    fn dates_count_days_from_the_epoch() {
        assert_eq!(
            days_since_epoch(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()),
            1
        );
        assert_eq!(
            days_since_epoch(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()),
            19_723
        );
    }
}
