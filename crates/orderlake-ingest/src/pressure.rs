//! Back-pressure: which partitions wait while the writer is behind.
//!
//! The buffer is shared by every assigned partition and bounded by the memory budget. When the
//! writer cannot take the next flush, fetching must slow down, but a partition with a backlog
//! (a hot partition, a burst of oversize records) must not hold up the others: only the
//! partitions holding more than an equal split of the buffer wait, and every partition waits only
//! once the buffer reaches half the budget (the other half is the flush the writer is busy with
//! and the client's prefetch).

/// What to pause, given the buffer's size and what each partition holds of it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pause<K> {
    /// The buffer is small enough: nothing waits.
    Nothing,
    /// These partitions hold more than their share: they wait, the others keep flowing.
    OverShare(Vec<K>),
    /// The buffer is at its limit: every partition waits.
    All,
}

/// Decides what waits while the writer is behind. `held` is, per assigned partition, the bytes of
/// its records in the buffer; `buffered` is the buffer's memory and `budget` the memory budget.
pub(crate) fn while_writer_behind<K: Clone>(
    held: &[(K, usize)],
    buffered: usize,
    budget: usize,
) -> Pause<K> {
    if buffered >= budget / 2 {
        return Pause::All;
    }
    if buffered < budget / 3 || held.is_empty() {
        return Pause::Nothing;
    }
    let total: usize = held.iter().map(|(_, b)| b).sum();
    let over: Vec<K> = held
        .iter()
        .filter(|(_, b)| b.saturating_mul(held.len()) > total)
        .map(|(k, _)| k.clone())
        .collect();
    if over.is_empty() {
        Pause::Nothing
    } else {
        Pause::OverShare(over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: usize = 16 << 20;

    #[test]
    fn a_small_buffer_pauses_nothing() {
        let held = [("hot", 5 << 20), ("cold", 1 << 10)];
        assert_eq!(
            while_writer_behind(&held, BUDGET / 3 - 1, BUDGET),
            Pause::Nothing
        );
    }

    #[test]
    fn a_hot_partition_waits_and_the_others_keep_flowing() {
        let mut held = vec![("hot", 5 << 20)];
        held.extend(["a", "b", "c", "d", "e"].map(|k| (k, 20 << 10)));
        assert_eq!(
            while_writer_behind(&held, BUDGET / 3, BUDGET),
            Pause::OverShare(vec!["hot"])
        );
    }

    #[test]
    fn evenly_loaded_partitions_flow_until_the_hard_limit() {
        let held = ["a", "b", "c", "d"].map(|k| (k, 2 << 20));
        assert_eq!(
            while_writer_behind(&held, BUDGET * 2 / 5, BUDGET),
            Pause::Nothing
        );
        assert_eq!(while_writer_behind(&held, BUDGET / 2, BUDGET), Pause::All);
    }

    #[test]
    fn the_busier_half_waits_first() {
        let held = [("a", 3 << 20), ("b", 2 << 20), ("c", 1 << 20), ("d", 0)];
        assert_eq!(
            while_writer_behind(&held, BUDGET * 2 / 5, BUDGET),
            Pause::OverShare(vec!["a", "b"])
        );
    }
}
