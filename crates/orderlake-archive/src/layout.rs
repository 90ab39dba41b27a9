//! How the archive's files are partitioned by event time, chosen when the table is created.
//!
//! - **Daily** (`event_date=YYYY-MM-DD/`): the table is partitioned by `event_date` itself; every
//!   file holds one date and the date is a partition value, not stored in the files.
//! - **Monthly** (`event_month=YYYY-MM-01/`): the table gains a partition column `event_month`
//!   (the first day of the event's month); `event_date` is an ordinary column stored in the files,
//!   with min/max statistics in the log, so date predicates still prune files.
//!
//! Both keep `event_date` a column of every row; SQL over the archive is the same either way (the
//! query server does not show `event_month`). The layout of a table is read from its partition
//! columns, so existing daily tables keep working. `docs/benchmarks.md` measures one against the
//! other.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray as _, Date32Array, RecordBatch};
use arrow::datatypes::{Date32Type, Field, Schema};
use chrono::{Datelike as _, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::schema::{EVENT_DATE, EVENT_MONTH};

/// What is chosen when a table is created and kept with it: its partitioning (read from its
/// partition columns) and its columns' codec (read from its configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableLayout {
    pub partitioning: Partitioning,
    pub codec: crate::codec::ColumnCodec,
}

/// The table's partitioning by event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Partitioning {
    /// One partition per event date.
    Daily,
    /// One partition per event month.
    #[default]
    Monthly,
}

impl Partitioning {
    pub const ALL: [Partitioning; 2] = [Partitioning::Daily, Partitioning::Monthly];

    pub fn name(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Monthly => "monthly",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The table's partition column.
    pub fn column(self) -> &'static str {
        match self {
            Self::Daily => EVENT_DATE,
            Self::Monthly => EVENT_MONTH,
        }
    }

    /// The layout of a table partitioned by `columns`, if it is one of ours.
    pub fn from_partition_columns<S: AsRef<str>>(columns: &[S]) -> Option<Self> {
        match columns {
            [one] => Self::ALL.into_iter().find(|p| p.column() == one.as_ref()),
            _ => None,
        }
    }

    /// The partition (as the days since 1970-01-01 of its first date) holding event date `day`.
    pub fn partition_of(self, day: i32) -> i32 {
        match self {
            Self::Daily => day,
            Self::Monthly => crate::files::date_of_days(day)
                .and_then(|d| d.with_day(1))
                .map_or(day, crate::files::days_since_epoch),
        }
    }

    /// The first and last event date a partition can hold.
    pub fn dates_of(self, partition: i32) -> (i32, i32) {
        match self {
            Self::Daily => (partition, partition),
            Self::Monthly => {
                let last = crate::files::date_of_days(partition)
                    .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
                    .map_or(partition, |next| crate::files::days_since_epoch(next) - 1);
                (partition, last)
            }
        }
    }

    /// Whether the files store `event_date` (it is not the partition column).
    pub fn stores_event_date(self) -> bool {
        self != Self::Daily
    }

    /// `batch` (archive rows, [`crate::schema::arrow_schema`]) with the partition column the
    /// table's writer expects: unchanged when partitioned by `event_date`, `event_month` appended
    /// otherwise.
    fn with_partition_column(
        self,
        batch: &RecordBatch,
    ) -> Result<RecordBatch, arrow::error::ArrowError> {
        if self == Self::Daily {
            return Ok(batch.clone());
        }
        let months: Date32Array = date_column(batch, EVENT_DATE)?
            .iter()
            .map(|d| d.map(|d| self.partition_of(d)))
            .collect();
        let mut fields: Vec<_> = batch.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(partition_field(self)));
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(months) as ArrayRef);
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
    }

    /// The batch's rows with the partition column the table's writer expects (see
    /// [`Self::with_partition_column`]), grouped by partition: one slice per partition, in
    /// partition order.
    pub fn split(self, batch: &RecordBatch) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
        let batch = self.with_partition_column(batch)?;
        let partitions = date_column(&batch, self.column())?;
        let order = arrow::compute::sort_to_indices(partitions, None, None)?;
        let sorted = arrow::compute::take_record_batch(&batch, &order)?;
        let keys = date_column(&sorted, self.column())?;
        let mut slices = Vec::new();
        let mut start = 0;
        for i in 1..=keys.len() {
            if i == keys.len() || keys.value(i) != keys.value(start) {
                slices.push(sorted.slice(start, i - start));
                start = i;
            }
        }
        Ok(slices)
    }
}

impl std::fmt::Display for Partitioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Partitioning {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| format!("`{s}` is not a partitioning: daily or monthly"))
    }
}

/// The partition column's Arrow field, as the table's schema holds it.
fn partition_field(partitioning: Partitioning) -> Field {
    Field::new(
        partitioning.column(),
        arrow::datatypes::DataType::Date32,
        false,
    )
}

fn date_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a Date32Array, arrow::error::ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Date32Type>())
        .ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("no `{name}` date column")))
}

/// A partition value as the Delta log writes it (`YYYY-MM-DD`).
pub fn partition_value(days: i32) -> String {
    crate::files::date_of_days(days).map_or_else(|| days.to_string(), |d| d.to_string())
}

/// A partition value read from the Delta log.
pub fn parse_partition_value(value: &str) -> Option<i32> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .map(crate::files::days_since_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> i32 {
        parse_partition_value(s).unwrap()
    }

    #[test]
    fn months_run_from_their_first_to_their_last_day() {
        let m = Partitioning::Monthly;
        assert_eq!(m.partition_of(day("2024-02-29")), day("2024-02-01"));
        assert_eq!(m.partition_of(day("2024-02-01")), day("2024-02-01"));
        assert_eq!(
            m.dates_of(day("2024-02-01")),
            (day("2024-02-01"), day("2024-02-29"))
        );
        assert_eq!(
            m.dates_of(day("2023-12-01")),
            (day("2023-12-01"), day("2023-12-31"))
        );
        assert_eq!(m.partition_of(day("1969-12-31")), day("1969-12-01"));
        let d = Partitioning::Daily;
        assert_eq!(d.partition_of(day("2024-02-29")), day("2024-02-29"));
        assert_eq!(
            d.dates_of(day("2024-02-29")),
            (day("2024-02-29"), day("2024-02-29"))
        );
        assert_eq!(partition_value(day("2024-02-29")), "2024-02-29");
    }

    #[test]
    fn layouts_are_read_from_partition_columns_and_names() {
        assert_eq!(
            Partitioning::from_partition_columns(&["event_date"]),
            Some(Partitioning::Daily)
        );
        assert_eq!(
            Partitioning::from_partition_columns(&["event_month"]),
            Some(Partitioning::Monthly)
        );
        assert_eq!(Partitioning::from_partition_columns(&["status"]), None);
        assert_eq!(Partitioning::from_partition_columns::<&str>(&[]), None);
        assert_eq!("monthly".parse(), Ok(Partitioning::Monthly));
        assert!(
            "weekly"
                .parse::<Partitioning>()
                .unwrap_err()
                .contains("daily or monthly")
        );
    }

    #[test]
    fn a_batch_splits_by_partition_and_gains_the_month_column() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", arrow::datatypes::DataType::Int32, false),
            Field::new(EVENT_DATE, arrow::datatypes::DataType::Date32, false),
        ]));
        let dates = [
            "2024-03-02",
            "2024-01-31",
            "2024-03-30",
            "2024-01-01",
            "2024-03-02",
        ];
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(arrow::array::Int32Array::from_iter_values(0..5)),
                Arc::new(Date32Array::from_iter_values(dates.iter().map(|d| day(d)))),
            ],
        )
        .unwrap();
        let sizes = |p: Partitioning| -> Vec<usize> {
            p.split(&batch)
                .unwrap()
                .iter()
                .map(RecordBatch::num_rows)
                .collect()
        };
        assert_eq!(sizes(Partitioning::Daily), [1, 1, 2, 1]);
        assert_eq!(sizes(Partitioning::Monthly), [2, 3]);
        let slices = Partitioning::Monthly.split(&batch).unwrap();
        let month_of = |slice: &RecordBatch| {
            let months = slice
                .column_by_name(EVENT_MONTH)
                .unwrap()
                .as_primitive::<Date32Type>();
            months.iter().collect::<Vec<_>>()
        };
        assert_eq!(month_of(&slices[0]), [Some(day("2024-01-01")); 2]);
        assert_eq!(month_of(&slices[1]), [Some(day("2024-03-01")); 3]);
        let with = Partitioning::Monthly.with_partition_column(&batch).unwrap();
        let months = with
            .column_by_name(EVENT_MONTH)
            .unwrap()
            .as_primitive::<Date32Type>();
        assert_eq!(months.value(1), day("2024-01-01"));
        assert_eq!(months.value(2), day("2024-03-01"));
        assert_eq!(
            Partitioning::Daily.with_partition_column(&batch).unwrap(),
            batch
        );
    }
}
