//! Every metric either binary exports: its name, kind, labels and meaning. Code records through
//! these constants, the listener describes them (`# HELP` lines), and a test holds the Grafana
//! dashboard and the alerting rules in `ops/` to names listed here.

/// How Prometheus reads a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram(Buckets),
}

/// Bucket bounds of a histogram, by what it measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buckets {
    Seconds,
    Rows,
    Bytes,
}

impl Buckets {
    pub fn bounds(self) -> &'static [f64] {
        match self {
            Self::Seconds => &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 120.0, 300.0,
            ],
            Self::Rows => &[
                1.0, 10.0, 100.0, 1e3, 1e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 5e6, 1e7,
            ],
            Self::Bytes => &[
                1024.0,
                65_536.0,
                262_144.0,
                1_048_576.0,
                4_194_304.0,
                16_777_216.0,
                67_108_864.0,
                268_435_456.0,
                1_073_741_824.0,
            ],
        }
    }
}

/// One exported metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn counter(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        labels,
        help,
    }
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        labels,
        help,
    }
}

const fn histogram(
    name: &'static str,
    buckets: Buckets,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind: Kind::Histogram(buckets),
        labels,
        help,
    }
}

const TP: &[&str] = &["topic", "partition"];

/// What `orderlake-archiver run` exports.
pub mod archiver {
    use super::{Buckets, Metric, TP, counter, gauge, histogram};

    pub const RECORDS_CONSUMED: &str = "orderlake_archiver_records_consumed_total";
    pub const BYTES_CONSUMED: &str = "orderlake_archiver_bytes_consumed_total";
    pub const RECORDS_ARCHIVED: &str = "orderlake_archiver_records_archived_total";
    pub const BYTES_ARCHIVED: &str = "orderlake_archiver_bytes_archived_total";
    pub const PARTITION_LAG: &str = "orderlake_archiver_partition_lag_records";
    /// The name kafka_exporter and KMinion give a consumer group's lag, for dashboards built on
    /// them.
    pub const CONSUMERGROUP_LAG: &str = "kafka_consumergroup_lag";
    pub const NEWEST_ARCHIVED_TIMESTAMP: &str =
        "orderlake_archiver_newest_archived_timestamp_seconds";
    pub const FRESHNESS: &str = "orderlake_archiver_freshness_seconds";
    pub const FLUSH_ROWS: &str = "orderlake_archiver_flush_rows";
    pub const FLUSH_BYTES: &str = "orderlake_archiver_flush_bytes";
    pub const FLUSH_DURATION: &str = "orderlake_archiver_flush_duration_seconds";
    pub const COMMIT_DURATION: &str = "orderlake_archiver_commit_duration_seconds";
    pub const STORAGE_RETRIES: &str = "orderlake_archiver_storage_retries_total";
    pub const FLUSHES: &str = "orderlake_archiver_flushes_total";
    pub const DECODE_FAILURES: &str = "orderlake_archiver_decode_failures_total";
    pub const PAUSED_PARTITIONS: &str = "orderlake_archiver_paused_partitions";
    pub const SCHEMA_REGISTRY_REQUESTS: &str = "orderlake_archiver_schema_registry_requests_total";
    pub const BUFFERED_BYTES: &str = "orderlake_archiver_buffered_bytes";
    pub const BUFFERED_RECORDS: &str = "orderlake_archiver_buffered_records";
    pub const BUFFER_BUDGET_BYTES: &str = "orderlake_archiver_buffer_budget_bytes";
    pub const ASSIGNED_PARTITIONS: &str = "orderlake_archiver_assigned_partitions";
    pub const REBALANCES: &str = "orderlake_archiver_rebalances_total";
    pub const TABLE_VERSION: &str = "orderlake_archiver_table_version";
    pub const MAINTENANCE_RUNS: &str = "orderlake_archiver_maintenance_runs_total";
    pub const MAINTENANCE_DURATION: &str = "orderlake_archiver_maintenance_duration_seconds";
    pub const MAINTENANCE_LAST_SUCCESS: &str =
        "orderlake_archiver_maintenance_last_success_timestamp_seconds";

    pub const ALL: &[Metric] = &[
        counter(RECORDS_CONSUMED, TP, "Kafka records read into the buffer."),
        counter(
            BYTES_CONSUMED,
            TP,
            "Bytes of Kafka keys and values read into the buffer.",
        ),
        counter(
            RECORDS_ARCHIVED,
            TP,
            "Kafka records committed to the archive table (exactly once).",
        ),
        counter(
            BYTES_ARCHIVED,
            &[],
            "Bytes of Parquet written by committed flushes.",
        ),
        gauge(
            PARTITION_LAG,
            TP,
            "Records on the broker not yet archived: the partition's high watermark (from fetch \
             responses) minus the next offset to archive.",
        ),
        gauge(
            CONSUMERGROUP_LAG,
            &["consumergroup", "topic", "partition"],
            "The same lag under kafka_exporter's name.",
        ),
        gauge(
            NEWEST_ARCHIVED_TIMESTAMP,
            &["topic"],
            "Kafka timestamp (Unix seconds) of the newest record committed to the archive.",
        ),
        gauge(
            FRESHNESS,
            &["topic"],
            "Seconds between now and the newest archived Kafka timestamp.",
        ),
        histogram(
            FLUSH_ROWS,
            Buckets::Rows,
            &[],
            "Records per committed flush.",
        ),
        histogram(
            FLUSH_BYTES,
            Buckets::Bytes,
            &[],
            "Buffered key and value bytes per flush.",
        ),
        histogram(
            FLUSH_DURATION,
            Buckets::Seconds,
            &[],
            "Time from handing a flush to the writer to its commit: encoding, uploads and commit.",
        ),
        histogram(
            COMMIT_DURATION,
            Buckets::Seconds,
            &[],
            "Time of the Delta commit of a flush (after its files are written).",
        ),
        counter(
            STORAGE_RETRIES,
            &["operation"],
            "Retried storage steps of a flush (operation: read_ledger, write_files, write_index or \
             commit).",
        ),
        counter(
            FLUSHES,
            &["outcome"],
            "Flushes by outcome: committed, already_committed (a retry found its own commit), \
             fenced (another instance archived the records first), stale (dropped after a \
             rebalance).",
        ),
        counter(
            DECODE_FAILURES,
            &["topic", "reason"],
            "Records archived raw without typed columns, by reason.",
        ),
        gauge(
            PAUSED_PARTITIONS,
            &["why"],
            "Partitions whose fetching is paused: writer (the buffer is over its share while the \
             writer is behind), starved (yielding to partitions the broker left unserved) or \
             schema (waiting for a writer schema from the schema registry).",
        ),
        counter(
            SCHEMA_REGISTRY_REQUESTS,
            &["outcome"],
            "Schema fetches from the schema registry by outcome: ok, not_found (archived raw for \
             good) or unavailable (retried).",
        ),
        gauge(
            BUFFERED_BYTES,
            &[],
            "Key and value bytes in the row buffer.",
        ),
        gauge(BUFFERED_RECORDS, &[], "Records in the row buffer."),
        gauge(
            BUFFER_BUDGET_BYTES,
            &[],
            "The row buffer's memory budget ([flush] memory_budget_bytes).",
        ),
        gauge(
            ASSIGNED_PARTITIONS,
            &[],
            "Partitions assigned to this instance.",
        ),
        counter(
            REBALANCES,
            &[],
            "Partitions revoked by the group coordinator.",
        ),
        gauge(
            TABLE_VERSION,
            &[],
            "Delta table version of the last commit seen.",
        ),
        counter(
            MAINTENANCE_RUNS,
            &["task", "result"],
            "Scheduled maintenance runs by task (compact, index, rollup, checkpoint, vacuum) and \
             result (ok or failed).",
        ),
        histogram(
            MAINTENANCE_DURATION,
            Buckets::Seconds,
            &["task"],
            "Duration of scheduled maintenance tasks.",
        ),
        gauge(
            MAINTENANCE_LAST_SUCCESS,
            &["task"],
            "Unix time of the last successful run of each maintenance task.",
        ),
    ];
}

/// What `orderlake-server` exports.
pub mod server {
    use super::{Buckets, Metric, counter, gauge, histogram};

    pub const QUERIES: &str = "orderlake_server_queries_total";
    pub const QUERY_DURATION: &str = "orderlake_server_query_duration_seconds";
    pub const QUERY_FIRST_BATCH: &str = "orderlake_server_query_first_batch_seconds";
    pub const QUERY_QUEUE: &str = "orderlake_server_query_queue_seconds";
    pub const QUERY_PLANNING: &str = "orderlake_server_query_planning_seconds";
    pub const QUERIES_RUNNING: &str = "orderlake_server_queries_running";
    pub const QUERIES_QUEUED: &str = "orderlake_server_queries_queued";
    pub const ROWS_STREAMED: &str = "orderlake_server_rows_streamed_total";
    pub const BYTES_STREAMED: &str = "orderlake_server_bytes_streamed_total";
    pub const AUTH_FAILURES: &str = "orderlake_server_auth_failures_total";
    pub const METADATA_CACHE_HITS: &str = "orderlake_server_metadata_cache_hits";
    pub const METADATA_CACHE_ENTRIES: &str = "orderlake_server_metadata_cache_entries";
    pub const METADATA_CACHE_BYTES: &str = "orderlake_server_metadata_cache_bytes";
    pub const TABLE_VERSION: &str = "orderlake_server_table_version";
    pub const TABLE_VERSION_AGE: &str = "orderlake_server_table_version_age_seconds";
    pub const REFRESHES: &str = "orderlake_server_table_refreshes_total";
    pub const CLUSTER_JOBS: &str = "orderlake_server_cluster_jobs_total";

    const DOOR: &[&str] = &["front_door"];
    const LANE: &[&str] = &["lane"];

    pub const ALL: &[Metric] = &[
        counter(
            QUERIES,
            &["front_door", "outcome", "status"],
            "Queries by front door (flight_sql), outcome (ok or error) and the status the client \
             got (gRPC code name).",
        ),
        histogram(
            QUERY_DURATION,
            Buckets::Seconds,
            &["front_door", "outcome"],
            "Time from the request for a query's results to its last batch or its error.",
        ),
        histogram(
            QUERY_FIRST_BATCH,
            Buckets::Seconds,
            DOOR,
            "Time from the request for a query's results to its first batch.",
        ),
        histogram(
            QUERY_QUEUE,
            Buckets::Seconds,
            LANE,
            "Time queries waited for a slot, by lane (lookup: [limits] lookup_slots; general: \
             max_running).",
        ),
        histogram(
            QUERY_PLANNING,
            Buckets::Seconds,
            &[],
            "Time to plan a query (logical and physical) once admitted.",
        ),
        gauge(QUERIES_RUNNING, LANE, "Queries holding a slot, by lane."),
        gauge(QUERIES_QUEUED, LANE, "Queries waiting for a slot, by lane."),
        counter(ROWS_STREAMED, DOOR, "Result rows sent to clients."),
        counter(
            BYTES_STREAMED,
            DOOR,
            "Result bytes sent to clients (Arrow memory size of the batches).",
        ),
        counter(
            AUTH_FAILURES,
            &["call"],
            "Refused sign-ins (call: handshake) and calls with a missing, expired or unknown \
             token (call: request).",
        ),
        gauge(
            METADATA_CACHE_HITS,
            &[],
            "Reads of Parquet footers answered from memory, over the footers cached now.",
        ),
        gauge(
            METADATA_CACHE_ENTRIES,
            &[],
            "Parquet footers held in memory.",
        ),
        gauge(
            METADATA_CACHE_BYTES,
            &[],
            "Memory held by cached Parquet footers and page indexes.",
        ),
        gauge(TABLE_VERSION, &[], "Delta table version new queries read."),
        counter(
            CLUSTER_JOBS,
            &["answered_by"],
            "Query plans sent to the Ballista cluster, by who answered them: cluster, server \
             (the cluster failed the job and the server ran the plan itself), or cancelled \
             (the query was cancelled, timed out or lost its client, and the scheduler stopped \
             the job).",
        ),
        gauge(
            TABLE_VERSION_AGE,
            &[],
            "Seconds since the table version new queries read was committed.",
        ),
        counter(
            REFRESHES,
            &["result"],
            "Looks for new table versions by result (new_version, unchanged, failed).",
        ),
    ];
}

/// `metrics` as a Markdown table (docs/operations.md holds these; a test keeps them equal).
pub fn markdown_table(metrics: &[Metric]) -> String {
    let mut out = String::from("| metric | kind | labels | meaning |\n|---|---|---|---|\n");
    for m in metrics {
        let kind = match m.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram(_) => "histogram",
        };
        let help = m.help.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push_str(&format!(
            "| `{}` | {kind} | {} | {help} |\n",
            m.name,
            m.labels.join(", ")
        ));
    }
    out
}

/// Every metric of both binaries.
pub fn all() -> impl Iterator<Item = &'static Metric> {
    archiver::ALL.iter().chain(server::ALL)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        let mut seen = BTreeSet::new();
        for m in all() {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            match m.kind {
                Kind::Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
                Kind::Gauge | Kind::Histogram(_) => {
                    assert!(!m.name.ends_with("_total"), "{}", m.name);
                }
            }
            assert!(!m.help.is_empty(), "{} has no help", m.name);
        }
    }
}
