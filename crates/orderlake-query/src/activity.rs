//! The engine's record of what queries do: those in flight now (planning, queued for a slot or
//! running, with what cancels them), those that ended lately (for the status page and
//! `system.runtime.queries`), and ids cancelled before their query started.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use datafusion::execution::memory_pool::MemoryPool;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::engine::QueryRequest;
use crate::limits::Lane;
use crate::memory::peak_of;

/// Where a query in flight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueryPhase {
    /// Being planned (parsed, vetted, optimized, its files chosen).
    Planning,
    /// Planned, waiting for a slot in its lane.
    Queued,
    /// Holding a slot: executing and streaming.
    Running,
}

impl QueryPhase {
    /// Trino's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryPhase::Planning => "PLANNING",
            QueryPhase::Queued => "QUEUED",
            QueryPhase::Running => "RUNNING",
        }
    }
}

/// How long a query spent before it ran, and where.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueryTimes {
    /// The lane it waited in (`lookup` or `general`), once planned.
    pub lane: Option<&'static str>,
    /// Planning, in milliseconds (Trino's `analysis_time_ms`).
    pub analysis_ms: Option<u64>,
    /// Waiting for a slot, in milliseconds.
    pub queued_ms: Option<u64>,
    /// When it got its slot, Unix milliseconds.
    pub started_at_ms: Option<u64>,
    /// The most its operators held at once (sorts, joins, aggregations), in bytes.
    pub peak_memory_bytes: Option<u64>,
}

/// A query in flight now.
#[derive(Debug, Clone, Serialize)]
pub struct RunningQueryInfo {
    pub id: String,
    pub user: String,
    pub sql: String,
    /// What the client called itself (`X-Trino-Source`, the Flight client's user agent).
    pub source: Option<String>,
    pub state: QueryPhase,
    #[serde(serialize_with = "as_millis")]
    pub elapsed: Duration,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    #[serde(flatten)]
    pub times: QueryTimes,
}

/// A query that ended lately, and how.
#[derive(Debug, Clone, Serialize)]
pub struct FinishedQuery {
    pub id: String,
    pub user: String,
    pub sql: String,
    pub source: Option<String>,
    #[serde(serialize_with = "as_millis")]
    pub elapsed: Duration,
    /// finished, failed, cancelled, timeout, storage unavailable, result too large, abandoned
    /// by the client.
    pub outcome: String,
    pub rows: u64,
    /// Unix milliseconds.
    pub ended_at_ms: u64,
    #[serde(flatten)]
    pub times: QueryTimes,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// What became of a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The query was running and is being stopped.
    Cancelled,
    /// The query had not started; it will be refused if it does.
    CancelledBeforeStart,
    /// The query runs for another user, who alone may cancel it.
    NotYours,
}

struct RunningQuery {
    user: String,
    sql: String,
    source: Option<String>,
    created: Instant,
    created_at_ms: u64,
    phase: QueryPhase,
    /// When it joined its lane's queue (its creation until then).
    queued_at: Instant,
    times: QueryTimes,
    /// The query's memory pool, once it runs.
    memory: Option<Arc<dyn MemoryPool>>,
    cancel: CancellationToken,
}

impl RunningQuery {
    /// Its times, the memory peak read from its pool as of now.
    fn times_now(&self) -> QueryTimes {
        let mut times = self.times.clone();
        if let Some(peak) = self.memory.as_deref().and_then(peak_of) {
            times.peak_memory_bytes = Some(peak as u64);
        }
        times
    }
}

/// Now, in Unix milliseconds.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Ids of queries cancelled before they started, remembered this long at most.
const CANCELLED_MEMORY: usize = 4096;
/// Separates a query id from the number of a second run of the same ticket at once.
const DUPLICATE_MARK: char = '#';

/// Whether the running-list key `key` is query `id` (or another run of its ticket).
fn key_is(key: &str, id: &str) -> bool {
    key.strip_prefix(id)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(DUPLICATE_MARK))
}

/// Ended queries kept for the status page.
const RECENT: usize = 100;

#[derive(Default)]
pub(crate) struct Activity {
    running: Mutex<HashMap<String, RunningQuery>>,
    /// (who cancelled: `None` for an operator, who may cancel anyone's; the query id).
    cancelled_early: Mutex<VecDeque<(Option<String>, String)>>,
    recent: Mutex<VecDeque<FinishedQuery>>,
}

impl Activity {
    /// Stops the query with this id, or makes sure it never starts.
    pub(crate) fn cancel(&self, id: &str) -> CancelOutcome {
        self.cancel_if(id, None)
    }

    /// Stops the query with this id if `user` runs it. An id not running yet is remembered with
    /// `user`: it never starts for them, and another user's query of that id still does.
    pub(crate) fn cancel_as(&self, id: &str, user: &str) -> CancelOutcome {
        self.cancel_if(id, Some(user))
    }

    /// Cancels `id` for `user` (`None`: whoever runs it).
    fn cancel_if(&self, id: &str, user: Option<&str>) -> CancelOutcome {
        let running = self.running.lock().expect("running lock");
        let mine = running
            .iter()
            .filter(|(key, q)| key_is(key, id) && user.is_none_or(|u| u == q.user))
            .map(|(_, q)| q.cancel.clone())
            .collect::<Vec<_>>();
        if !mine.is_empty() {
            for cancel in mine {
                cancel.cancel();
            }
            tracing::info!(query_id = id, "query cancelled");
            return CancelOutcome::Cancelled;
        }
        if running.keys().any(|key| key_is(key, id)) {
            return CancelOutcome::NotYours;
        }
        drop(running);
        let mut early = self.cancelled_early.lock().expect("cancelled lock");
        if early.len() >= CANCELLED_MEMORY {
            early.pop_front();
        }
        early.push_back((user.map(str::to_owned), id.to_owned()));
        CancelOutcome::CancelledBeforeStart
    }

    /// Whether `user`'s query `id` was cancelled (by them or an operator) before it started.
    pub(crate) fn was_cancelled_early(&self, id: &str, user: &str) -> bool {
        self.cancelled_early
            .lock()
            .expect("cancelled lock")
            .iter()
            .any(|(by, c)| c == id && by.as_deref().is_none_or(|by| by == user))
    }

    /// The queries in flight now (planning, queued or running), longest first.
    pub(crate) fn running(&self) -> Vec<RunningQueryInfo> {
        let mut all: Vec<_> = self
            .running
            .lock()
            .expect("running lock")
            .iter()
            .map(|(id, q)| RunningQueryInfo {
                id: id.clone(),
                user: q.user.clone(),
                sql: q.sql.clone(),
                source: q.source.clone(),
                state: q.phase,
                elapsed: q.created.elapsed(),
                created_at_ms: q.created_at_ms,
                times: q.times_now(),
            })
            .collect();
        all.sort_by_key(|q| std::cmp::Reverse(q.elapsed));
        all
    }

    /// The queries that ended lately, newest first.
    pub(crate) fn recent(&self) -> Vec<FinishedQuery> {
        self.recent
            .lock()
            .expect("recent lock")
            .iter()
            .rev()
            .cloned()
            .collect()
    }
}

/// Keeps a query in the running list while it is in flight, with its phase; when it ends,
/// however it ends, moves it to the recent list.
pub(crate) struct RunningGuard {
    activity: std::sync::Weak<Activity>,
    pub(crate) id: String,
    outcome: Option<(&'static str, u64)>,
}

impl RunningGuard {
    pub(crate) fn register(
        activity: &Arc<Activity>,
        request: &QueryRequest,
        cancel: CancellationToken,
    ) -> Self {
        let mut running = activity.running.lock().expect("running lock");
        // The same ticket run twice at once (a retry, or another user holding it) runs under a
        // key of its own: neither displaces the other in the list or for cancelling.
        let mut key = request.id.clone();
        let mut n = 1;
        while running.contains_key(&key) {
            n += 1;
            key = format!("{}{DUPLICATE_MARK}{n}", request.id);
        }
        let now = Instant::now();
        running.insert(
            key.clone(),
            RunningQuery {
                user: request.user.clone(),
                sql: request.sql.clone(),
                source: request.source.clone(),
                created: now,
                created_at_ms: unix_ms(),
                phase: QueryPhase::Planning,
                queued_at: now,
                times: QueryTimes::default(),
                memory: None,
                cancel,
            },
        );
        Self {
            activity: Arc::downgrade(activity),
            id: key,
            outcome: None,
        }
    }

    /// The query is planned (in `planning`, here or ahead in a Flight SQL GetFlightInfo) and
    /// waits for a slot in `lane`.
    pub(crate) fn queued(&self, lane: Lane, planning: Duration) {
        self.update(|q| {
            q.times.analysis_ms = Some(planning.as_millis() as u64);
            q.times.lane = Some(lane.as_str());
            q.phase = QueryPhase::Queued;
            q.queued_at = Instant::now();
        });
    }

    /// The query got its slot; `memory` is its pool, read for its peak.
    pub(crate) fn admitted(&self, memory: Arc<dyn MemoryPool>) {
        self.update(|q| {
            q.times.queued_ms = Some(q.queued_at.elapsed().as_millis() as u64);
            q.times.started_at_ms = Some(unix_ms());
            q.phase = QueryPhase::Running;
            q.memory = Some(memory);
        });
    }

    fn update(&self, change: impl FnOnce(&mut RunningQuery)) {
        let Some(activity) = self.activity.upgrade() else {
            return;
        };
        if let Some(q) = activity
            .running
            .lock()
            .expect("running lock")
            .get_mut(&self.id)
        {
            change(q);
        }
    }

    /// How the query ended, for the recent list.
    pub(crate) fn ended(&mut self, outcome: &'static str, rows: u64) {
        self.outcome.get_or_insert((outcome, rows));
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        let Some(activity) = self.activity.upgrade() else {
            return;
        };
        let Some(q) = activity
            .running
            .lock()
            .expect("running lock")
            .remove(&self.id)
        else {
            return;
        };
        let (outcome, rows) = self.outcome.unwrap_or(("failed", 0));
        let times = q.times_now();
        let mut recent = activity.recent.lock().expect("recent lock");
        if recent.len() >= RECENT {
            recent.pop_front();
        }
        recent.push_back(FinishedQuery {
            id: std::mem::take(&mut self.id),
            user: q.user,
            sql: q.sql,
            source: q.source,
            elapsed: q.created.elapsed(),
            outcome: outcome.to_owned(),
            rows,
            ended_at_ms: unix_ms(),
            times,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::QueryScope;

    fn request(id: &str, user: &str) -> QueryRequest {
        QueryRequest {
            id: id.into(),
            sql: "SELECT 1".into(),
            params: Vec::new(),
            scope: QueryScope {
                catalog: "archive".into(),
                schema: "oms".into(),
                time_zone: None,
                max_run_time: None,
                max_memory_bytes: None,
            },
            user: user.into(),
            source: None,
        }
    }

    #[test]
    fn a_ticket_run_twice_at_once_keeps_both_runs_apart() {
        let activity = Arc::new(Activity::default());
        let (ann, bob) = (CancellationToken::new(), CancellationToken::new());
        let first = RunningGuard::register(&activity, &request("q1", "ann"), ann.clone());
        let second = RunningGuard::register(&activity, &request("q1", "bob"), bob.clone());
        assert_eq!(activity.running().len(), 2);
        assert_eq!(activity.cancel_as("q1", "carl"), CancelOutcome::NotYours);
        assert_eq!(activity.cancel_as("q1", "ann"), CancelOutcome::Cancelled);
        assert!(ann.is_cancelled() && !bob.is_cancelled());
        drop(second);
        assert_eq!(
            activity.running().len(),
            1,
            "bob's end leaves ann's run listed"
        );
        drop(first);
        assert!(activity.running().is_empty());
        assert!(!key_is("q10", "q1") && key_is("q1#2", "q1") && key_is("q1", "q1"));
    }

    #[test]
    fn a_cancel_before_the_start_stops_only_that_users_query() {
        let activity = Activity::default();
        assert_eq!(
            activity.cancel_as("q2", "bob"),
            CancelOutcome::CancelledBeforeStart
        );
        assert!(activity.was_cancelled_early("q2", "bob"));
        assert!(!activity.was_cancelled_early("q2", "ann"));
        activity.cancel("q3");
        assert!(activity.was_cancelled_early("q3", "ann"));
    }
}
