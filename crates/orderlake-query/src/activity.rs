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
    /// finished, failed, cancelled, timeout, result too large, abandoned by the client.
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
/// Ended queries kept for the status page.
const RECENT: usize = 100;

#[derive(Default)]
pub(crate) struct Activity {
    running: Mutex<HashMap<String, RunningQuery>>,
    cancelled_early: Mutex<VecDeque<String>>,
    recent: Mutex<VecDeque<FinishedQuery>>,
}

impl Activity {
    /// Stops the query with this id, or makes sure it never starts.
    pub(crate) fn cancel(&self, id: &str) -> CancelOutcome {
        self.cancel_if(id, |_| true)
    }

    /// Stops the query with this id if `user` runs it (an unknown id is remembered as for
    /// `cancel`: only its own client knows it).
    pub(crate) fn cancel_as(&self, id: &str, user: &str) -> CancelOutcome {
        self.cancel_if(id, |owner| owner == user)
    }

    fn cancel_if(&self, id: &str, allowed: impl FnOnce(&str) -> bool) -> CancelOutcome {
        if let Some(q) = self.running.lock().expect("running lock").get(id) {
            if !allowed(&q.user) {
                return CancelOutcome::NotYours;
            }
            q.cancel.cancel();
            tracing::info!(query_id = id, "query cancelled");
            return CancelOutcome::Cancelled;
        }
        let mut early = self.cancelled_early.lock().expect("cancelled lock");
        if early.len() >= CANCELLED_MEMORY {
            early.pop_front();
        }
        early.push_back(id.to_owned());
        CancelOutcome::CancelledBeforeStart
    }

    pub(crate) fn was_cancelled_early(&self, id: &str) -> bool {
        self.cancelled_early
            .lock()
            .expect("cancelled lock")
            .iter()
            .any(|c| c == id)
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
        activity.running.lock().expect("running lock").insert(
            request.id.clone(),
            RunningQuery {
                user: request.user.clone(),
                sql: request.sql.clone(),
                started: Instant::now(),
                cancel,
            },
        );
        Self {
            activity: Arc::downgrade(activity),
            id: request.id.clone(),
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
