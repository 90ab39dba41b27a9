//! What `/api/status` answers: the table's status (as `orderlake-archiver status --json` reports
//! it), freshness per topic, lag per partition (from the archiver's own metrics, when the page
//! knows where they are), recent commits and maintenance, what maintenance is due, the queries
//! running and lately ended, the views and the archive's columns.

use std::collections::BTreeMap;
use std::net::ToSocketAddrs as _;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use orderlake_archive::{CommitSummary, DaySize, Growth, TableStatus};
use orderlake_query::{ColdQueryEngine, FinishedQuery, RunningQueryInfo, TableReport};
use serde::{Deserialize, Serialize};

/// The `[status]` block: what the status page reads besides the archive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusConfig {
    /// `host:port` of the archiver's metrics listener, for lag per partition (the archiver
    /// knows the broker's end offsets; the server does not talk to Kafka). Unset: no lag shown.
    pub archiver_metrics: Option<String>,
}

/// Commits read for the commit list and the maintenance history.
const COMMITS: u64 = 200;
/// Days of growth charted (as far as the Delta log reaches).
const GROWTH_DAYS: usize = 90;
/// Commits shown in the commit list.
const SHOWN_COMMITS: usize = 20;
/// Partitions younger than this many days still take writes: not compacted yet by design.
const CLOSED_AFTER_DAYS: i64 = 2;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    generated_at: DateTime<Utc>,
    user: String,
    table: TableStatus,
    /// The table's size at the end of each day the log still covers, oldest first.
    growth: Vec<DaySize>,
    freshness: Vec<Freshness>,
    lag: Lag,
    commits: Vec<CommitSummary>,
    maintenance: Vec<CommitSummary>,
    due: Vec<String>,
    running: Vec<RunningQueryInfo>,
    recent: Vec<FinishedQuery>,
    views: Vec<Described>,
    columns: Vec<Column>,
}

#[derive(Debug, Serialize)]
struct Freshness {
    topic: String,
    /// The newest archived record's Kafka timestamp, and its age.
    newest_timestamp: Option<DateTime<Utc>>,
    age_secs: Option<i64>,
    /// The newest archived event time (what the order system says happened), and its age.
    newest_event_time: Option<DateTime<Utc>>,
    event_age_secs: Option<i64>,
    rows: i64,
}

#[derive(Debug, Serialize)]
struct Lag {
    /// Where it came from, or why there is none.
    source: String,
    partitions: Vec<PartitionLag>,
}

#[derive(Debug, Serialize)]
struct PartitionLag {
    topic: String,
    partition: String,
    records: f64,
}

#[derive(Debug, Serialize)]
struct Described {
    name: String,
    description: String,
}

#[derive(Debug, Serialize)]
struct Column {
    name: String,
    data_type: String,
    nullable: bool,
}

/// The last table report with the version it was read at, and the growth read so far.
#[derive(Default)]
struct Cached {
    report: Option<(Option<u64>, TableReport)>,
    growth: Growth,
}

/// Builds reports, reading the table's status once per table version (it scans the table).
pub struct Reports {
    config: StatusConfig,
    cached: tokio::sync::Mutex<Cached>,
    lag_error: Mutex<Option<String>>,
}

impl Reports {
    pub fn new(config: StatusConfig) -> Self {
        Self {
            config,
            cached: tokio::sync::Mutex::new(Cached::default()),
            lag_error: Mutex::new(None),
        }
    }

    pub async fn report(
        &self,
        engine: &ColdQueryEngine,
        user: &str,
    ) -> orderlake_query::Result<StatusReport> {
        let TableReport {
            status: table,
            commits: history,
            growth,
        } = {
            let mut cached = self.cached.lock().await;
            let Cached { report, growth } = &mut *cached;
            let version = engine.version();
            match report {
                Some((v, report)) if *v == version => report.clone(),
                _ => {
                    let fresh = engine.table_report(COMMITS, growth, GROWTH_DAYS).await?;
                    *report = Some((version, fresh.clone()));
                    fresh
                }
            }
        };
        let now = Utc::now();
        let freshness = freshness(&table, now);
        let due = due(&table, now);
        let maintenance = history
            .iter()
            .filter(|c| c.operation != "WRITE")
            .cloned()
            .collect();
        let commits = history.into_iter().take(SHOWN_COMMITS).collect();
        let entries = engine.tables().await?;
        let views = entries
            .iter()
            .filter(|t| t.kind == "VIEW" && t.schema != "information_schema")
            .map(|t| Described {
                name: t.name.clone(),
                description: t.description.clone().unwrap_or_default(),
            })
            .collect();
        let columns = entries
            .iter()
            .find(|t| t.name == orderlake_archive::TABLE_NAME)
            .map(|t| {
                t.arrow_schema
                    .fields()
                    .iter()
                    .map(|f| Column {
                        name: f.name().clone(),
                        data_type: f.data_type().to_string(),
                        nullable: f.is_nullable(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(StatusReport {
            generated_at: now,
            user: user.to_owned(),
            table,
            growth,
            freshness,
            lag: self.lag().await,
            commits,
            maintenance,
            due,
            running: engine.running(),
            recent: engine.recent(),
            views,
            columns,
        })
    }

    /// Lag per partition from the archiver's `/metrics`.
    async fn lag(&self) -> Lag {
        let Some(target) = self.config.archiver_metrics.clone() else {
            return Lag {
                source: "not configured: set [status] archiver_metrics to the archiver's metrics \
                         listener (host:port)"
                    .into(),
                partitions: Vec::new(),
            };
        };
        let fetched = tokio::task::spawn_blocking({
            let target = target.clone();
            move || -> Result<String, String> {
                let addr = target
                    .to_socket_addrs()
                    .map_err(|e| e.to_string())?
                    .next()
                    .ok_or("no address")?;
                let (code, page) =
                    orderlake_telemetry::http_get(addr, "/metrics").map_err(|e| e.to_string())?;
                if code == 200 {
                    Ok(page)
                } else {
                    Err(format!("HTTP {code}"))
                }
            }
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match fetched {
            Ok(page) => {
                *self.lag_error.lock().expect("lag lock") = None;
                let partitions = orderlake_telemetry::parse_samples(&page)
                    .into_iter()
                    .filter(|s| s.name == orderlake_telemetry::catalogue::archiver::PARTITION_LAG)
                    .map(|s| PartitionLag {
                        topic: s.labels.get("topic").cloned().unwrap_or_default(),
                        partition: s.labels.get("partition").cloned().unwrap_or_default(),
                        records: s.value,
                    })
                    .collect();
                Lag {
                    source: format!("http://{target}/metrics"),
                    partitions,
                }
            }
            Err(e) => {
                let mut last = self.lag_error.lock().expect("lag lock");
                if last.as_deref() != Some(e.as_str()) {
                    tracing::warn!(%target, error = %e, "status page: cannot read the archiver's metrics");
                    *last = Some(e.clone());
                }
                Lag {
                    source: format!("http://{target}/metrics: {e}"),
                    partitions: Vec::new(),
                }
            }
        }
    }
}

/// The newest archived Kafka timestamp and event time of each topic, and their ages.
fn freshness(table: &TableStatus, now: DateTime<Utc>) -> Vec<Freshness> {
    type Newest = (Option<DateTime<Utc>>, Option<DateTime<Utc>>, i64);
    let mut by_topic = BTreeMap::<&str, Newest>::new();
    for p in &table.partitions {
        let e = by_topic.entry(p.topic.as_str()).or_default();
        e.0 = e.0.max(p.newest_timestamp);
        e.1 = e.1.max(p.newest_event_time);
        e.2 += p.rows;
    }
    let age = |t: Option<DateTime<Utc>>| t.map(|t| (now - t).num_seconds());
    by_topic
        .into_iter()
        .map(|(topic, (newest, newest_event, rows))| Freshness {
            topic: topic.to_owned(),
            newest_timestamp: newest,
            age_secs: age(newest),
            newest_event_time: newest_event,
            event_age_secs: age(newest_event),
            rows,
        })
        .collect()
}

/// Maintenance the table is due, in words.
fn due(table: &TableStatus, now: DateTime<Utc>) -> Vec<String> {
    let mut due = Vec::new();
    let closed_before = now.date_naive() - chrono::Duration::days(CLOSED_AFTER_DAYS);
    let scattered = table
        .by_partition
        .iter()
        .filter(|p| p.partition < closed_before && p.files > 1)
        .count();
    if scattered > 0 {
        due.push(format!(
            "compaction: {scattered} closed partitions hold more than one file"
        ));
    }
    let uncovered = table.files.saturating_sub(table.index.covered_live_files);
    if uncovered > 0 {
        due.push(format!(
            "key index: {uncovered} of {} live files not indexed (lookups read them whatever the key)",
            table.files
        ));
    }
    let stale = table
        .rollup
        .live_partitions
        .saturating_sub(table.rollup.current_partitions);
    if stale > 0 {
        due.push(format!(
            "rollup: {stale} of {} partitions not rolled up (KPI queries scan them; open ones are \
             rolled up once they close)",
            table.rollup.live_partitions
        ));
    }
    due
}
