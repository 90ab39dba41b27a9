//! Per-query limits: memory (operators spill to disk, then fail with RESOURCE_EXHAUSTED; never an
//! out-of-memory kill), time (planning, queueing and streaming together), a bounded number of
//! queries running at once with a bounded queue behind them, and a maximum result size.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orderlake_telemetry::catalogue::server as server_metrics;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{QueryError, Result};

/// Limits every query runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLimits {
    /// Memory one query's operators may hold; sorts, joins and aggregations spill beyond it.
    /// By default derived from the machine's memory and `max_running`
    /// ([`crate::default_query_memory`]).
    pub memory_bytes: usize,
    /// Longest a query may take from admission to its last batch, queueing included.
    pub timeout: Duration,
    /// Queries executing at once.
    pub max_running: usize,
    /// Queries waiting for a slot; one more is refused at once.
    pub max_queued: usize,
    /// Rows one result may have.
    pub max_result_rows: u64,
    /// Bytes (Arrow in-memory size) one result may have.
    pub max_result_bytes: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        let max_running = 4;
        Self {
            memory_bytes: crate::default_query_memory(max_running),
            timeout: Duration::from_secs(300),
            max_running,
            max_queued: 64,
            max_result_rows: 10_000_000,
            max_result_bytes: 2 << 30,
        }
    }
}

/// Admission control: a semaphore of running slots and a count of those waiting for one.
#[derive(Debug)]
pub struct Admission {
    running: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
}

/// Held for as long as a query runs; dropping it frees the slot.
#[derive(Debug)]
pub struct RunPermit(#[expect(dead_code, reason = "held for its Drop")] OwnedSemaphorePermit);

impl RunPermit {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!(server_metrics::QUERIES_RUNNING).increment(1.0);
        Self(permit)
    }
}

impl Drop for RunPermit {
    fn drop(&mut self) {
        metrics::gauge!(server_metrics::QUERIES_RUNNING).decrement(1.0);
    }
}

/// A place in the queue, given up however the wait ends (a slot, a timeout, or the caller
/// abandoning the query while it waits).
struct InQueue<'a>(&'a AtomicUsize);

impl<'a> InQueue<'a> {
    /// Joins the queue unless it already holds `max` queries.
    fn join(queued: &'a AtomicUsize, max: usize) -> Option<Self> {
        if queued.fetch_add(1, Ordering::SeqCst) >= max {
            queued.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        metrics::gauge!(server_metrics::QUERIES_QUEUED).increment(1.0);
        Some(Self(queued))
    }
}

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!(server_metrics::QUERIES_QUEUED).decrement(1.0);
    }
}

impl Admission {
    pub fn new(limits: &QueryLimits) -> Self {
        Self {
            running: Arc::new(Semaphore::new(limits.max_running.max(1))),
            queued: AtomicUsize::new(0),
            max_queued: limits.max_queued,
        }
    }

    /// Queries waiting for a slot right now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Takes a free slot, waits in the queue for one (at most `wait`), or refuses at once when
    /// the queue is full.
    pub async fn admit(&self, wait: Duration) -> Result<RunPermit> {
        let started = std::time::Instant::now();
        if let Ok(p) = Arc::clone(&self.running).try_acquire_owned() {
            metrics::histogram!(server_metrics::QUERY_QUEUE).record(0.0);
            return Ok(RunPermit::new(p));
        }
        let Some(place) = InQueue::join(&self.queued, self.max_queued) else {
            return Err(QueryError::ResourcesExhausted {
                message: format!(
                    "the server is busy: every query slot is taken and the queue ({} waiting) \
                     is full; retry later",
                    self.max_queued
                ),
            });
        };
        let permit = tokio::time::timeout(wait, Arc::clone(&self.running).acquire_owned()).await;
        drop(place);
        metrics::histogram!(server_metrics::QUERY_QUEUE).record(started.elapsed().as_secs_f64());
        match permit {
            Ok(Ok(p)) => Ok(RunPermit::new(p)),
            Ok(Err(_)) => Err(QueryError::Engine {
                message: "the server is shutting down".into(),
            }),
            Err(_) => Err(QueryError::Timeout { timeout: wait }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One running slot and one place in the queue.
    fn one_slot_one_place() -> Arc<Admission> {
        Arc::new(Admission::new(&QueryLimits {
            max_running: 1,
            max_queued: 1,
            ..QueryLimits::default()
        }))
    }

    /// A query that waits (at most `wait`) for a slot, once it has joined the queue.
    async fn queued_query(
        admission: &Arc<Admission>,
        wait: Duration,
    ) -> tokio::task::JoinHandle<Result<()>> {
        let a = Arc::clone(admission);
        let query = tokio::spawn(async move { a.admit(wait).await.map(|_| ()) });
        while admission.queued() == 0 {
            tokio::task::yield_now().await;
        }
        query
    }

    #[tokio::test]
    async fn queue_beyond_its_bound_is_refused_and_slots_come_back() {
        let admission = one_slot_one_place();
        let first = admission.admit(Duration::from_secs(5)).await.unwrap();
        let waiting = queued_query(&admission, Duration::from_secs(5)).await;
        let refused = admission.admit(Duration::from_secs(5)).await;
        assert!(matches!(
            refused,
            Err(QueryError::ResourcesExhausted { .. })
        ));
        drop(first);
        waiting.await.unwrap().unwrap();
        let timed_out = {
            let _held = admission.admit(Duration::from_secs(1)).await.unwrap();
            admission.admit(Duration::from_millis(20)).await
        };
        assert!(matches!(timed_out, Err(QueryError::Timeout { .. })));
    }

    #[tokio::test]
    async fn a_query_abandoned_while_queued_gives_its_place_back() {
        let admission = one_slot_one_place();
        let held = admission.admit(Duration::from_secs(5)).await.unwrap();
        let waiting = queued_query(&admission, Duration::from_secs(30)).await;
        // The client goes away while its query waits for a slot.
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(admission.queued(), 0);
        let next = queued_query(&admission, Duration::from_secs(5)).await;
        drop(held);
        next.await
            .unwrap()
            .expect("the queue had room for the next query");
    }
}
