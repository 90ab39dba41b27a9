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
//! Past that mark a spilling operator grows only within its fair share (the memory not held by
//! non-spilling operators, divided among the spilling ones), so the biggest holders spill and the
//! last quarter stays for operators inside their share: merges after a spill, the smaller
//! partitions. Non-spilling operators may use the whole limit, as with both of DataFusion's pools.

use std::fmt;
use std::sync::Mutex;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// The part of the pool (as a divisor) kept back from operators over their fair share.
const HEADROOM_DIVISOR: usize = 4;

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
}

impl QueryMemoryPool {
    pub fn new(size: usize) -> Self {
        Self {
            size,
            state: Mutex::new(PoolState::default()),
        }
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
        if additional > free {
            return Err(self.refuse(reservation, additional, free));
        }
        if !reservation.consumer().can_spill() {
            state.unspillable += additional;
            return Ok(());
        }
        let greedy_until = self.size - self.size / HEADROOM_DIVISOR;
        if used + additional > greedy_until {
            let share = self.size.saturating_sub(state.unspillable) / state.spillers.max(1);
            if reservation.size() + additional > share {
                let room = share.saturating_sub(reservation.size());
                return Err(self.refuse(reservation, additional, room));
            }
        }
        state.spillable += additional;
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
    fn past_three_quarters_only_operators_within_their_share_grow() {
        let pool = pool(1000);
        let big = spiller(&pool, "aggregate[0]");
        let small = spiller(&pool, "aggregate[1]");
        big.try_grow(700).unwrap();
        // The smaller partition may use the headroom up to its share (500)...
        small.try_grow(250).unwrap();
        // ...but the bigger one, over its share, must spill instead.
        assert!(big.try_grow(10).is_err());
        // Having spilled, it may grow again within its share.
        big.shrink(700);
        big.try_grow(400).unwrap();
        assert!(small.try_grow(300).is_err(), "past its share of 500");
        assert_eq!(pool.reserved(), 650);
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
    }
}
