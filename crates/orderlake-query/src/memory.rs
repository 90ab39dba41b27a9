//! One query's memory pool: greedy while there is room, fair when memory runs short.
//!
//! DataFusion's `FairSpillPool` caps every spilling operator at an equal share of the pool from
//! the start, counting each registered one (every partition of every aggregation, sort and
//! repartition) whether it holds anything or not. A query whose one big aggregation has a dozen
//! idle neighbours then spills at a tenth of its limit: the status funnel of the benchmark suite
//! spilled 240 MB ten times under a 1 GiB limit and took 2.9 s instead of 0.9 s. DataFusion's
//! `GreedyMemoryPool` never spills early, but lets the first operator take everything, so a
//! partition that has spilled finds nothing left to merge its spill files with and the query
//! fails.
//!
//! This pool lets any operator grow while the query uses less than three quarters of its limit.
//! Past that mark a spilling reservation grows only within its share of the last quarter (that
//! quarter, less what non-spilling operators hold, divided among the spilling consumers), so the
//! big holders spill, and a spilled operator's merge, which reserves anew from nothing, always
//! finds its share even when the pool is full (as in DataFusion's fair pool, such a reservation
//! is checked against its share, not against what is free). Non-spilling operators may use the
//! whole limit, as with both of DataFusion's pools.

use std::fmt;
use std::sync::Mutex;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, TrackConsumersPool,
};

/// The part of the pool (as a divisor) kept back from operators over their fair share.
const HEADROOM_DIVISOR: usize = 4;

/// A query's limit where the machine's memory cannot be read.
const FALLBACK_QUERY_MEMORY: usize = 1 << 30;
/// The least a derived limit gives a query.
const MIN_QUERY_MEMORY: usize = 256 << 20;

/// The memory one query may hold when none is configured: three quarters of the machine's memory
/// (or of its cgroup's limit, when lower) shared by the `max_running` queries that may run at
/// once; 1 GiB where neither can be read. Measured (docs/benchmarks.md, 50M events): with 1 GiB
/// the status funnel spills and takes 16.5 s, with this default (4.4 GiB on a 23 GiB machine)
/// 4.7 s.
pub fn default_query_memory(max_running: usize) -> usize {
    match machine_memory() {
        Some(total) => (total / 4 * 3 / max_running.max(1)).max(MIN_QUERY_MEMORY),
        None => FALLBACK_QUERY_MEMORY,
    }
}

/// Physical memory (`MemTotal`), or the cgroup v2 limit of this process when that is lower.
fn machine_memory() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = parse_meminfo_total(&meminfo)?;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|limit| limit.trim().parse::<usize>().ok());
    Some(cgroup.map_or(total, |limit| limit.min(total)))
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn parse_meminfo_total(meminfo: &str) -> Option<usize> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: usize = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// A query's memory limit: greedy below three quarters of it, fair above (see the module).
#[derive(Debug)]
pub struct QueryMemoryPool {
    size: usize,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Registered consumers that can spill.
    spillers: usize,
    spillable: usize,
    unspillable: usize,
    /// The most the query's operators held at once.
    peak: usize,
}

impl PoolState {
    fn note_peak(&mut self) {
        self.peak = self.peak.max(self.spillable + self.unspillable);
    }
}

impl QueryMemoryPool {
    pub fn new(size: usize) -> Self {
        Self {
            size,
            state: Mutex::new(PoolState::default()),
        }
    }

    /// The most the query's operators have held at once so far.
    pub fn peak(&self) -> usize {
        self.state().peak
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // The counters stay consistent under a panic elsewhere: each update is one statement.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn refuse(
        &self,
        reservation: &MemoryReservation,
        additional: usize,
        room: usize,
    ) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!(
            "Failed to allocate additional {additional} bytes for {} with {} bytes already \
             allocated for this reservation - {room} bytes remain available for it in the \
             query's pool of {} bytes",
            reservation.consumer().name(),
            reservation.size(),
            self.size,
        ))
    }
}

impl MemoryPool for QueryMemoryPool {
    fn name(&self) -> &str {
        "greedy-then-fair"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            self.state().spillers += 1;
        }
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            let mut state = self.state();
            state.spillers = state.spillers.saturating_sub(1);
        }
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        let mut state = self.state();
        if reservation.consumer().can_spill() {
            state.spillable += additional;
        } else {
            state.unspillable += additional;
        }
        state.note_peak();
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        let mut state = self.state();
        if reservation.consumer().can_spill() {
            state.spillable = state.spillable.saturating_sub(shrink);
        } else {
            state.unspillable = state.unspillable.saturating_sub(shrink);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let mut state = self.state();
        let used = state.spillable + state.unspillable;
        let free = self.size.saturating_sub(used);
        if !reservation.consumer().can_spill() {
            if additional > free {
                return Err(self.refuse(reservation, additional, free));
            }
            state.unspillable += additional;
            state.note_peak();
            return Ok(());
        }
        let headroom = self.size / HEADROOM_DIVISOR;
        if used + additional > self.size - headroom {
            // Past the greedy part, each spilling reservation may hold its share of the last
            // quarter. However full the pool, a spilled operator's merge (a new, empty
            // reservation) gets its share, and the shares add up to that quarter: the pool is
            // exceeded only by the spare reservations of one consumer.
            let share = headroom.saturating_sub(state.unspillable) / state.spillers.max(1);
            if reservation.size() + additional > share {
                let room = share.saturating_sub(reservation.size());
                return Err(self.refuse(reservation, additional, room));
            }
        }
        state.spillable += additional;
        state.note_peak();
        Ok(())
    }

    fn reserved(&self) -> usize {
        let state = self.state();
        state.spillable + state.unspillable
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.size)
    }
}

/// The peak of a query's pool as the engine builds it (a [`QueryMemoryPool`], tracked by
/// consumer or not); `None` for any other pool.
pub(crate) fn peak_of(pool: &dyn MemoryPool) -> Option<usize> {
    pool.downcast_ref::<TrackConsumersPool<QueryMemoryPool>>()
        .map(TrackConsumersPool::inner)
        .or_else(|| pool.downcast_ref::<QueryMemoryPool>())
        .map(QueryMemoryPool::peak)
}

impl fmt::Display for QueryMemoryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(pool_size: {})", self.name(), self.size)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn pool(size: usize) -> Arc<dyn MemoryPool> {
        Arc::new(QueryMemoryPool::new(size))
    }

    fn spiller(pool: &Arc<dyn MemoryPool>, name: &str) -> MemoryReservation {
        MemoryConsumer::new(name)
            .with_can_spill(true)
            .register(pool)
    }

    #[test]
    fn the_default_shares_three_quarters_of_the_machine() {
        let meminfo = "MemTotal:       24734568 kB\nMemFree:        15000000 kB\n";
        assert_eq!(parse_meminfo_total(meminfo), Some(24_734_568 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
        let one = default_query_memory(1);
        let four = default_query_memory(4);
        assert!(four >= MIN_QUERY_MEMORY);
        if let Some(total) = machine_memory() {
            assert_eq!(one, total / 4 * 3);
            assert_eq!(four, (total / 4 * 3 / 4).max(MIN_QUERY_MEMORY));
        }
    }

    #[test]
    fn one_spiller_among_idle_ones_grows_to_three_quarters() {
        let pool = pool(1000);
        let big = spiller(&pool, "aggregate[0]");
        let _idle: Vec<_> = (0..9)
            .map(|i| spiller(&pool, &format!("idle[{i}]")))
            .collect();
        // A fair pool would stop it at 100.
        big.try_grow(750).unwrap();
        let err = big.try_grow(1).unwrap_err().to_string();
        assert!(err.contains("aggregate[0]"), "{err}");
        assert_eq!(pool.reserved(), 750);
    }

    #[test]
    fn past_three_quarters_only_reservations_within_their_share_grow() {
        let pool = pool(1000);
        let big = spiller(&pool, "aggregate[0]");
        let small = spiller(&pool, "aggregate[1]");
        big.try_grow(700).unwrap();
        // The other partition may use the last quarter up to its share (250 / 2)...
        small.try_grow(125).unwrap();
        assert!(small.try_grow(1).is_err(), "past its share of 125");
        // ...and the bigger one, over its share, must spill instead.
        assert!(big.try_grow(10).is_err());
        // Having spilled, it grows greedily again.
        big.shrink(700);
        big.try_grow(600).unwrap();
        assert_eq!(pool.reserved(), 725);
    }

    #[test]
    fn a_spilled_operators_merge_gets_its_share_of_a_full_pool() {
        let pool = pool(1000);
        let left = spiller(&pool, "aggregate[0]");
        let right = spiller(&pool, "aggregate[1]");
        left.try_grow(740).unwrap();
        right.try_grow(125).unwrap();
        // The left partition spills; its merge reserves anew, from nothing.
        let merge = left.new_empty();
        merge.try_grow(120).unwrap();
        assert!(merge.try_grow(10).is_err(), "past its share of 125");
        assert_eq!(pool.reserved(), 985);
    }

    #[test]
    fn operators_that_cannot_spill_use_the_whole_pool_and_no_more() {
        let pool = pool(1000);
        let fixed = MemoryConsumer::new("merge").register(&pool);
        let spill = spiller(&pool, "sort");
        spill.try_grow(600).unwrap();
        fixed.try_grow(400).unwrap();
        assert!(fixed.try_grow(1).is_err());
        assert!(spill.try_grow(1).is_err());
        drop(spill);
        fixed.try_grow(600).unwrap();
        assert_eq!(pool.reserved(), 1000);
        drop(fixed);
        assert_eq!(pool.reserved(), 0);
        assert_eq!(
            peak_of(pool.as_ref()),
            Some(1000),
            "the peak outlives what was held"
        );
    }
}
