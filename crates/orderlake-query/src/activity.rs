//! The engine's record of what queries do: those running now (with what cancels them), those that
//! ended lately (for the status page), and ids cancelled before their query started.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::engine::QueryRequest;

/// A query that is running now.
#[derive(Debug, Clone, Serialize)]
pub struct RunningQueryInfo {
    pub id: String,
    pub user: String,
    pub sql: String,
    #[serde(serialize_with = "as_millis")]
    pub elapsed: Duration,
}

/// A query that ended lately, and how.
#[derive(Debug, Clone, Serialize)]
pub struct FinishedQuery {
    pub id: String,
    pub user: String,
    pub sql: String,
    #[serde(serialize_with = "as_millis")]
    pub elapsed: Duration,
    /// finished, failed, cancelled, timeout, storage unavailable, result too large, abandoned
    /// by the client.
    pub outcome: String,
    pub rows: u64,
    /// Unix milliseconds.
    pub ended_at_ms: u64,
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
    started: Instant,
    cancel: CancellationToken,
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

    /// The queries running now, longest-running first.
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
                elapsed: q.started.elapsed(),
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

/// Keeps a query in the running list while it runs; when it ends, however it ends, moves it to
/// the recent list.
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
        running.insert(
            key.clone(),
            RunningQuery {
                user: request.user.clone(),
                sql: request.sql.clone(),
                started: Instant::now(),
                cancel,
            },
        );
        Self {
            activity: Arc::downgrade(activity),
            id: key,
            outcome: None,
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
        let ended_at_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut recent = activity.recent.lock().expect("recent lock");
        if recent.len() >= RECENT {
            recent.pop_front();
        }
        recent.push_back(FinishedQuery {
            id: std::mem::take(&mut self.id),
            user: q.user,
            sql: q.sql,
            elapsed: q.started.elapsed(),
            outcome: outcome.to_owned(),
            rows,
            ended_at_ms,
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
