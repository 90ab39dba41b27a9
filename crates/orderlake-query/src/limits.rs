//! Per-query limits: memory (operators spill to disk, then fail with RESOURCE_EXHAUSTED; never an
//! out-of-memory kill), time (planning, queueing and streaming together), a bounded number of
//! queries running at once with a bounded queue behind them, and a maximum result size.
//!
//! Queries wait in one of two lanes, chosen from their physical plan before they are admitted:
//! key lookups (the plan reads a few pages through the key index, or files of fewer than
//! `lookup_below_bytes`) have `lookup_slots` slots of their own; everything else shares
//! `max_running`. Under load (docs/benchmarks.md, 64 clients) one shared queue made the API's
//! 12 ms lookups wait 8-9 s behind dashboards and analytics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orderlake_telemetry::catalogue::server as server_metrics;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{QueryError, Result};
use crate::reads::PlanReads;

/// Limits every query runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLimits {
    /// Memory one query's operators may hold; sorts, joins and aggregations spill beyond it.
    /// By default derived from the machine's memory and `max_running`
    /// ([`crate::default_query_memory`]).
    pub memory_bytes: usize,
    /// Longest a query may take from admission to its last batch, queueing included.
    pub timeout: Duration,
    /// Queries executing at once in the general lane.
    pub max_running: usize,
    /// Queries waiting for a slot, in each lane; one more is refused at once.
    pub max_queued: usize,
    /// Queries executing at once in the lookup lane (0: no lookup lane, every query waits in the
    /// general one).
    pub lookup_slots: usize,
    /// A plan whose scans list fewer bytes than this (key lookups' scans, which read a few pages
    /// of each file, left out) and that reads nothing but the archive's files and tables held in
    /// memory runs in the lookup lane.
    pub lookup_below_bytes: u64,
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
            lookup_slots: 8,
            lookup_below_bytes: 64 << 20,
            max_result_rows: 10_000_000,
            max_result_bytes: 2 << 30,
        }
    }
}

/// Which queue a query waits in for a slot. Key lookups (the API's questions, planned to read a
/// few pages) have slots of their own, so they never wait behind dashboards and analytics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Lookup,
    General,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Lookup => "lookup",
            Lane::General => "general",
        }
    }
}

/// Admission control: per lane, a semaphore of running slots and a count of those waiting for
/// one.
#[derive(Debug)]
pub struct Admission {
    general: Queue,
    lookup: Option<Queue>,
    lookup_below_bytes: u64,
}

#[derive(Debug)]
struct Queue {
    lane: Lane,
    running: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
}

/// Held for as long as a query runs; dropping it frees the slot.
#[derive(Debug)]
pub struct RunPermit {
    _permit: OwnedSemaphorePermit,
    lane: Lane,
}

impl RunPermit {
    fn new(permit: OwnedSemaphorePermit, lane: Lane) -> Self {
        metrics::gauge!(server_metrics::QUERIES_RUNNING, "lane" => lane.as_str()).increment(1.0);
        Self {
            _permit: permit,
            lane,
        }
    }
}

impl Drop for RunPermit {
    fn drop(&mut self) {
        metrics::gauge!(server_metrics::QUERIES_RUNNING, "lane" => self.lane.as_str())
            .decrement(1.0);
    }
}

/// A place in a queue, given up however the wait ends (a slot, a timeout, or the caller
/// abandoning the query while it waits).
struct InQueue<'a>(&'a Queue);

impl<'a> InQueue<'a> {
    /// Joins the queue unless it already holds its most.
    fn join(queue: &'a Queue) -> Option<Self> {
        if queue.queued.fetch_add(1, Ordering::SeqCst) >= queue.max_queued {
            queue.queued.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        metrics::gauge!(server_metrics::QUERIES_QUEUED, "lane" => queue.lane.as_str())
            .increment(1.0);
        Some(Self(queue))
    }
}

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!(server_metrics::QUERIES_QUEUED, "lane" => self.0.lane.as_str())
            .decrement(1.0);
    }
}

impl Queue {
    fn new(lane: Lane, slots: usize, max_queued: usize) -> Self {
        Self {
            lane,
            running: Arc::new(Semaphore::new(slots.max(1))),
            queued: AtomicUsize::new(0),
            max_queued,
        }
    }

    /// Takes a free slot, waits in the queue for one (at most `wait`), or refuses at once when
    /// the queue is full.
    async fn admit(&self, wait: Duration) -> Result<RunPermit> {
        let lane = self.lane.as_str();
        let started = std::time::Instant::now();
        if let Ok(p) = Arc::clone(&self.running).try_acquire_owned() {
            metrics::histogram!(server_metrics::QUERY_QUEUE, "lane" => lane).record(0.0);
            return Ok(RunPermit::new(p, self.lane));
        }
        let Some(place) = InQueue::join(self) else {
            return Err(QueryError::ResourcesExhausted {
                message: format!(
                    "the server is busy: every {lane} query slot is taken and the queue ({} \
                     waiting) is full; retry later",
                    self.max_queued
                ),
            });
        };
        let permit = tokio::time::timeout(wait, Arc::clone(&self.running).acquire_owned()).await;
        drop(place);
        metrics::histogram!(server_metrics::QUERY_QUEUE, "lane" => lane)
            .record(started.elapsed().as_secs_f64());
        match permit {
            Ok(Ok(p)) => Ok(RunPermit::new(p, self.lane)),
            Ok(Err(_)) => Err(QueryError::Engine {
                message: "the server is shutting down".into(),
            }),
            Err(_) => Err(QueryError::Timeout { timeout: wait }),
        }
    }
}

impl Admission {
    pub fn new(limits: &QueryLimits) -> Self {
        Self {
            general: Queue::new(Lane::General, limits.max_running, limits.max_queued),
            lookup: (limits.lookup_slots > 0)
                .then(|| Queue::new(Lane::Lookup, limits.lookup_slots, limits.max_queued)),
            lookup_below_bytes: limits.lookup_below_bytes,
        }
    }

    /// Queries waiting for a slot right now, in every lane.
    pub fn queued(&self) -> usize {
        [Some(&self.general), self.lookup.as_ref()]
            .into_iter()
            .flatten()
            .map(|q| q.queued.load(Ordering::SeqCst))
            .sum()
    }

    /// The lane of a query whose plan reads `reads`.
    pub(crate) fn lane(&self, reads: &PlanReads) -> Lane {
        if self.lookup.is_some() && reads.is_lookup(self.lookup_below_bytes) {
            Lane::Lookup
        } else {
            Lane::General
        }
    }

    /// Takes a free slot of `lane`, waits in its queue for one (at most `wait`), or refuses at
    /// once when that queue is full.
    pub async fn admit(&self, lane: Lane, wait: Duration) -> Result<RunPermit> {
        match (lane, &self.lookup) {
            (Lane::Lookup, Some(lookup)) => lookup.admit(wait).await,
            _ => self.general.admit(wait).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One running slot and one place in the queue, in each lane.
    fn one_slot_one_place() -> Arc<Admission> {
        Arc::new(Admission::new(&QueryLimits {
            max_running: 1,
            max_queued: 1,
            lookup_slots: 1,
            ..QueryLimits::default()
        }))
    }

    /// A query of `lane` that waits (at most `wait`) for a slot, once it has joined the queue.
    async fn queued_query(
        admission: &Arc<Admission>,
        lane: Lane,
        wait: Duration,
    ) -> tokio::task::JoinHandle<Result<()>> {
        let a = Arc::clone(admission);
        let before = admission.queued();
        let query = tokio::spawn(async move { a.admit(lane, wait).await.map(|_| ()) });
        while admission.queued() == before {
            tokio::task::yield_now().await;
        }
        query
    }

    #[tokio::test]
    async fn queue_beyond_its_bound_is_refused_and_slots_come_back() {
        let admission = one_slot_one_place();
        let general = |wait| admission.admit(Lane::General, wait);
        let first = general(Duration::from_secs(5)).await.unwrap();
        let waiting = queued_query(&admission, Lane::General, Duration::from_secs(5)).await;
        let refused = general(Duration::from_secs(5)).await;
        assert!(matches!(
            refused,
            Err(QueryError::ResourcesExhausted { .. })
        ));
        drop(first);
        waiting.await.unwrap().unwrap();
        let timed_out = {
            let _held = general(Duration::from_secs(1)).await.unwrap();
            general(Duration::from_millis(20)).await
        };
        assert!(matches!(timed_out, Err(QueryError::Timeout { .. })));
    }

    #[tokio::test]
    async fn lookups_run_while_the_general_lane_is_full() {
        let admission = one_slot_one_place();
        let _running = admission
            .admit(Lane::General, Duration::from_secs(5))
            .await
            .unwrap();
        let _waiting = queued_query(&admission, Lane::General, Duration::from_secs(30)).await;
        let lookup = admission.admit(Lane::Lookup, Duration::from_millis(100));
        let lookup = lookup.await.expect("the lookup lane has its own slot");
        // The lookup lane queues and refuses on its own.
        let _next = queued_query(&admission, Lane::Lookup, Duration::from_secs(30)).await;
        assert!(matches!(
            admission.admit(Lane::Lookup, Duration::from_secs(5)).await,
            Err(QueryError::ResourcesExhausted { .. })
        ));
        drop(lookup);
    }

    #[test]
    fn a_lane_is_chosen_by_what_the_plan_reads() {
        let admission = one_slot_one_place();
        let reads = |file_bytes, only_tables| PlanReads {
            file_bytes,
            only_tables,
        };
        assert_eq!(admission.lane(&reads(0, true)), Lane::Lookup);
        assert_eq!(admission.lane(&reads(64 << 20, true)), Lane::General);
        assert_eq!(
            admission.lane(&reads(0, false)),
            Lane::General,
            "a plan that makes its own rows (generate_series) may cost anything"
        );
        let one_lane = Admission::new(&QueryLimits {
            lookup_slots: 0,
            ..QueryLimits::default()
        });
        assert_eq!(one_lane.lane(&reads(0, true)), Lane::General);
    }

    #[tokio::test]
    async fn a_query_abandoned_while_queued_gives_its_place_back() {
        let admission = one_slot_one_place();
        let held = admission
            .admit(Lane::General, Duration::from_secs(5))
            .await
            .unwrap();
        let waiting = queued_query(&admission, Lane::General, Duration::from_secs(30)).await;
        // The client goes away while its query waits for a slot.
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(admission.queued(), 0);
        let next = queued_query(&admission, Lane::General, Duration::from_secs(5)).await;
        drop(held);
        next.await
            .unwrap()
            .expect("the queue had room for the next query");
    }
}
