//! Per-query limits: memory (operators spill to disk, then fail with RESOURCE_EXHAUSTED; never an
//! out-of-memory kill), time (planning, queueing and streaming together), a bounded number of
//! queries running at once with a bounded queue behind them, and a maximum result size.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{QueryError, Result};

/// Limits every query runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLimits {
    /// Memory one query's operators may hold; sorts, joins and aggregations spill beyond it.
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
        Self {
            memory_bytes: 1 << 30,
            timeout: Duration::from_secs(300),
            max_running: 4,
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
        if let Ok(p) = Arc::clone(&self.running).try_acquire_owned() {
            return Ok(RunPermit(p));
        }
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(QueryError::ResourcesExhausted {
                message: format!(
                    "the server is busy: every query slot is taken and the queue ({} waiting) \
                     is full; retry later",
                    self.max_queued
                ),
            });
        }
        let permit = tokio::time::timeout(wait, Arc::clone(&self.running).acquire_owned()).await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        match permit {
            Ok(Ok(p)) => Ok(RunPermit(p)),
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

    #[tokio::test]
    async fn queue_beyond_its_bound_is_refused_and_slots_come_back() {
        let limits = QueryLimits {
            max_running: 1,
            max_queued: 1,
            ..QueryLimits::default()
        };
        let admission = Arc::new(Admission::new(&limits));
        let first = admission.admit(Duration::from_secs(5)).await.unwrap();
        let waiting = {
            let a = Arc::clone(&admission);
            tokio::spawn(async move { a.admit(Duration::from_secs(5)).await.map(|_| ()) })
        };
        while admission.queued() == 0 {
            tokio::task::yield_now().await;
        }
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
}
