//! What the drain loop exports (`orderlake_telemetry::catalogue::archiver`): records in and out
//! per partition, lag, freshness, flushes and the buffer. Recording is a no-op unless the
//! binary installed a recorder (`[metrics] listen`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use metrics::{Counter, Gauge, counter, gauge, histogram};
use orderlake_archive::SourcePartition;
use orderlake_telemetry::catalogue::archiver as m;

use super::position::{PauseFor, Position, Watermarks};
use crate::decode::DecodeFailure;

/// What a flush carried, for the counters its commit moves.
#[derive(Debug, Default)]
pub(super) struct FlushSummary {
    pub(super) rows_by_partition: Vec<(SourcePartition, u64)>,
    /// The newest Kafka timestamp (ms) in the flush, per topic.
    pub(super) newest_by_topic: BTreeMap<String, i64>,
    /// Key and value bytes buffered.
    pub(super) bytes: usize,
}

struct PartitionMeters {
    consumed: Counter,
    consumed_bytes: Counter,
    archived: Counter,
    lag: Gauge,
    group_lag: Gauge,
}

impl PartitionMeters {
    fn new(sp: &SourcePartition, group: &str) -> Self {
        let labels = [
            ("topic", sp.topic.clone()),
            ("partition", sp.partition.to_string()),
        ];
        Self {
            consumed: counter!(m::RECORDS_CONSUMED, &labels),
            consumed_bytes: counter!(m::BYTES_CONSUMED, &labels),
            archived: counter!(m::RECORDS_ARCHIVED, &labels),
            lag: gauge!(m::PARTITION_LAG, &labels),
            group_lag: gauge!(
                m::CONSUMERGROUP_LAG,
                "consumergroup" => group.to_owned(),
                "topic" => sp.topic.clone(),
                "partition" => sp.partition.to_string()
            ),
        }
    }
}

/// The drain loop's meters, kept with its state.
pub(super) struct Meters {
    group: String,
    partitions: HashMap<SourcePartition, PartitionMeters>,
    /// Newest archived Kafka timestamp (ms) per topic.
    newest: BTreeMap<String, i64>,
}

impl Meters {
    pub(super) fn new(group: &str, budget_bytes: usize) -> Self {
        gauge!(m::BUFFER_BUDGET_BYTES).set(budget_bytes as f64);
        Self {
            group: group.to_owned(),
            partitions: HashMap::new(),
            newest: BTreeMap::new(),
        }
    }

    fn partition(&mut self, sp: &SourcePartition) -> &PartitionMeters {
        let group = &self.group;
        self.partitions
            .entry(sp.clone())
            .or_insert_with(|| PartitionMeters::new(sp, group))
    }

    pub(super) fn consumed(&mut self, sp: &SourcePartition, bytes: usize) {
        let p = self.partition(sp);
        p.consumed.increment(1);
        p.consumed_bytes.increment(bytes as u64);
    }

    pub(super) fn decode_failed(topic: &str, failure: Option<DecodeFailure>) {
        let reason = failure.map_or("unknown", DecodeFailure::as_str);
        counter!(m::DECODE_FAILURES, "topic" => topic.to_owned(), "reason" => reason).increment(1);
    }

    /// A flush was committed (or found already committed).
    pub(super) fn archived(&mut self, summary: &FlushSummary) {
        for (sp, rows) in &summary.rows_by_partition {
            self.partition(sp).archived.increment(*rows);
        }
        for (topic, ts) in &summary.newest_by_topic {
            let newest = self.newest.entry(topic.clone()).or_insert(*ts);
            *newest = (*newest).max(*ts);
            gauge!(m::NEWEST_ARCHIVED_TIMESTAMP, "topic" => topic.clone())
                .set(*newest as f64 / 1000.0);
        }
        let rows: u64 = summary.rows_by_partition.iter().map(|(_, r)| r).sum();
        histogram!(m::FLUSH_ROWS).record(rows as f64);
        histogram!(m::FLUSH_BYTES).record(summary.bytes as f64);
    }

    /// Partitions given up: their lag is the next owner's to report.
    pub(super) fn revoked(&mut self, partitions: &[SourcePartition]) {
        for sp in partitions {
            if let Some(p) = self.partitions.get(sp) {
                p.lag.set(0.0);
                p.group_lag.set(0.0);
            }
        }
    }

    /// Gauges that follow time or the buffer: lag by the latest fetch responses, freshness, the
    /// buffer's size and the partitions paused.
    pub(super) fn publish(
        &mut self,
        positions: &BTreeMap<SourcePartition, Position>,
        marks: &HashMap<SourcePartition, Watermarks>,
        buffer: (usize, usize),
    ) {
        let (mut writer, mut starved, mut schema) = (0, 0, 0);
        for (sp, pos) in positions {
            match pos.paused {
                Some((_, PauseFor::Writer)) => writer += 1,
                Some((_, PauseFor::Starved(_))) => starved += 1,
                Some((_, PauseFor::Schema(_))) => schema += 1,
                None => {}
            }
            let Some(w) = marks.get(sp).filter(|w| w.high >= 0) else {
                continue;
            };
            // Next offset to archive: after the ledger's, or the log's start for a new partition.
            let next = pos.after.map_or(w.low.max(0), |o| o + 1);
            let lag = (w.high - next).max(0) as f64;
            let p = self.partition(sp);
            p.lag.set(lag);
            p.group_lag.set(lag);
        }
        gauge!(m::PAUSED_PARTITIONS, "why" => "writer").set(f64::from(writer));
        gauge!(m::PAUSED_PARTITIONS, "why" => "starved").set(f64::from(starved));
        gauge!(m::PAUSED_PARTITIONS, "why" => "schema").set(f64::from(schema));
        gauge!(m::ASSIGNED_PARTITIONS).set(positions.len() as f64);
        gauge!(m::BUFFERED_RECORDS).set(buffer.0 as f64);
        gauge!(m::BUFFERED_BYTES).set(buffer.1 as f64);
        let now_ms = chrono::Utc::now().timestamp_millis();
        for (topic, ts) in &self.newest {
            gauge!(m::FRESHNESS, "topic" => topic.clone())
                .set((now_ms - ts).max(0) as f64 / 1000.0);
        }
    }
}

/// The writer's answer to one flush.
pub(super) fn flush_outcome(outcome: &'static str, took: Option<Duration>) {
    counter!(m::FLUSHES, "outcome" => outcome).increment(1);
    if let Some(took) = took {
        histogram!(m::FLUSH_DURATION).record(took.as_secs_f64());
    }
}

pub(super) fn rebalanced() {
    counter!(m::REBALANCES).increment(1);
}
