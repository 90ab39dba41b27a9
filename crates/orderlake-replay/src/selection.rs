//! What to replay, as filters on the archive: a time range on event time or the original Kafka
//! timestamp (event-time ranges also prune `event_date` partitions), source topics, partitions and
//! an offset range, and a SQL predicate over the archive's columns, parsed by DataFusion.

use datafusion::dataframe::DataFrame;
use datafusion::prelude::{Expr, SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use orderlake_archive::ArchiveTable;
use orderlake_archive::schema::{
    EVENT_DATE, EVENT_TIME, KAFKA_OFFSET, KAFKA_PARTITION, KAFKA_TIMESTAMP, KAFKA_TOPIC,
};
use orderlake_archive::time::{day_of, parse_timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{ReplayError, Result};

/// Which clock `--from`/`--to` refer to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeField {
    /// The order event's own time (`event_time`).
    #[default]
    Event,
    /// The original Kafka record timestamp (`kafka_timestamp`).
    Kafka,
}

/// A replay selection; every part is optional and they combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaySelection {
    /// Inclusive start, ISO-8601 (no zone means UTC).
    pub from: Option<String>,
    /// Exclusive end, ISO-8601.
    pub to: Option<String>,
    pub time_field: TimeField,
    pub topics: Vec<String>,
    pub partitions: Vec<i32>,
    /// Inclusive offset range: `A..B`, `A..` or `..B`.
    pub offsets: Option<String>,
    /// SQL predicate over the archive's columns.
    pub predicate: Option<String>,
}

fn time_literal(argument: &'static str, text: &str) -> Result<i64> {
    parse_timestamp(text).map_err(|reason| ReplayError::Selection { argument, reason })
}

fn ts(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some("UTC".into()),
    ))
}

/// Parses `A..B`, `A..`, `..B` or a single offset into an inclusive range.
pub fn parse_offsets(text: &str) -> Result<(Option<i64>, Option<i64>)> {
    let bad = || ReplayError::Selection {
        argument: "--offsets",
        reason: format!("`{text}` is not A..B, A.. or ..B"),
    };
    let num = |s: &str| -> Result<Option<i64>> {
        let s = s.trim();
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse().map(Some).map_err(|_| bad())
        }
    };
    match text.split_once("..") {
        Some((a, b)) => Ok((num(a)?, num(b)?)),
        None => {
            let single = num(text)?.ok_or_else(bad)?;
            Ok((Some(single), Some(single)))
        }
    }
}

impl ReplaySelection {
    /// The selected archive rows (Kafka records only; imported rows have no coordinates).
    pub async fn dataframe(&self, ctx: &SessionContext, table: &str) -> Result<DataFrame> {
        let mut df = ctx.table(table).await?;
        let mut filters = vec![col(KAFKA_TOPIC).is_not_null()];
        let time_col = match self.time_field {
            TimeField::Event => EVENT_TIME,
            TimeField::Kafka => KAFKA_TIMESTAMP,
        };
        if let Some(from) = &self.from {
            let us = time_literal("--from", from)?;
            filters.push(col(time_col).gt_eq(ts(us)));
            if self.time_field == TimeField::Event {
                filters.push(col(EVENT_DATE).gt_eq(lit(ScalarValue::Date32(Some(day_of(us))))));
            }
        }
        if let Some(to) = &self.to {
            let us = time_literal("--to", to)?;
            filters.push(col(time_col).lt(ts(us)));
            if self.time_field == TimeField::Event {
                filters.push(col(EVENT_DATE).lt_eq(lit(ScalarValue::Date32(Some(day_of(us))))));
            }
        }
        if !self.topics.is_empty() {
            filters.push(
                col(KAFKA_TOPIC)
                    .in_list(self.topics.iter().map(|t| lit(t.as_str())).collect(), false),
            );
        }
        if !self.partitions.is_empty() {
            filters.push(
                col(KAFKA_PARTITION)
                    .in_list(self.partitions.iter().map(|p| lit(*p)).collect(), false),
            );
        }
        if let Some(range) = &self.offsets {
            let (lo, hi) = parse_offsets(range)?;
            if let Some(lo) = lo {
                filters.push(col(KAFKA_OFFSET).gt_eq(lit(lo)));
            }
            if let Some(hi) = hi {
                filters.push(col(KAFKA_OFFSET).lt_eq(lit(hi)));
            }
        }
        if let Some(predicate) = &self.predicate {
            let expr = df
                .parse_sql_expr(predicate)
                .map_err(|e| ReplayError::Predicate {
                    predicate: predicate.clone(),
                    reason: e.strip_backtrace(),
                })?;
            filters.push(expr);
        }
        for f in filters {
            df = df.filter(f).map_err(|e| match &self.predicate {
                Some(p) => ReplayError::Predicate {
                    predicate: p.clone(),
                    reason: e.strip_backtrace(),
                },
                None => e.into(),
            })?;
        }
        Ok(df)
    }

    /// Opens a session over `table` with the archive registered as `archive`.
    pub async fn session(table: &ArchiveTable) -> Result<SessionContext> {
        Ok(table.session_with("archive").await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_ranges() {
        assert_eq!(parse_offsets("10..20").unwrap(), (Some(10), Some(20)));
        assert_eq!(parse_offsets("10..").unwrap(), (Some(10), None));
        assert_eq!(parse_offsets("..20").unwrap(), (None, Some(20)));
        assert_eq!(parse_offsets("7").unwrap(), (Some(7), Some(7)));
        assert!(
            parse_offsets("a..b")
                .unwrap_err()
                .to_string()
                .contains("--offsets")
        );
    }
}
