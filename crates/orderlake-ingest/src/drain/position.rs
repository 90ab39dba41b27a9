//! Where each partition stands: what is buffered and archived, and the repairs for brokers that
//! skip records, stall inside a batch or starve partitions.

use std::time::{Duration, Instant};

use orderlake_archive::SourcePartition;
use rdkafka::Offset;

/// Per-partition position as the ingest thread knows it.
#[derive(Debug, Clone)]
pub(super) struct Position {
    /// Ledger offset the next flush starts after (the previous flush's `through`).
    pub(super) after: Option<i64>,
    /// Last offset appended to the buffer.
    pub(super) buffered_through: Option<i64>,
    /// Bytes of this partition's keys and values in the buffer (its share of the back-pressure).
    pub(super) buffered_bytes: usize,
    /// Records of this partition in the buffer, and the newest Kafka timestamp (ms) among them.
    pub(super) buffered_rows: u64,
    pub(super) buffered_newest_ms: Option<i64>,
    /// Lower bound of the next offset Kafka will hand us.
    pub(super) next: i64,
    pub(super) start: Offset,
    /// Whether any record arrived since the partition was (re)positioned.
    pub(super) received: bool,
    /// Statistics sequence number at (re)positioning: only later snapshots say where the end is.
    pub(super) positioned_at: u64,
    /// Whether a record at or before the position arrived since (re)positioning, proving that
    /// the broker serves the partition from where we asked.
    pub(super) anchored: bool,
    /// How far back the last re-read started, after the broker skipped records or served
    /// nothing at the position.
    pub(super) rewind_back: Option<i64>,
    /// When the partition was (re)positioned or last re-read.
    pub(super) last_seek: Instant,
    /// When the last record of the partition arrived, and the statistics sequence number then:
    /// a partition that serves nothing while newer statistics show records beyond it is stuck.
    pub(super) last_record: (Instant, u64),
    /// How long to wait for a record before the next stall re-read.
    pub(super) stall_patience: Duration,
    /// Since when fetching is paused, and why (`None`: fetching).
    pub(super) paused: Option<(Instant, PauseFor)>,
    /// When the other partitions last paused for this one because it went unserved, and how
    /// long to wait before doing it again (doubled while it stays unserved: a partition stuck
    /// inside a batch on the broker is not helped by it and is re-read instead).
    pub(super) starved_pause: (Instant, Duration),
}

/// Why a partition's fetching is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PauseFor {
    /// The writer is behind and the partition holds more than its share of the buffer: it
    /// fetches again when the writer takes the next flush.
    Writer,
    /// Other partitions have records waiting that the broker does not serve while this one takes
    /// every fetch response: it fetches again at this instant.
    Starved(Instant),
    /// Its next record needs a writer schema the registry has not served yet: it fetches again
    /// (from that record) once the schema arrives, is known missing, or the wait runs out.
    Schema(crate::avro::SchemaKey),
}

/// First look this many offsets back when a fetch skips records; then 8 times further each time.
pub(super) const FIRST_REWIND: i64 = 512;
/// How long stale records of an earlier fetch may keep arriving after a re-read before the
/// archiver reads from further back.
pub(super) const REWIND_PATIENCE: Duration = Duration::from_secs(2);
/// How long a partition with records beyond its position may serve nothing before the archiver
/// takes it as stuck and re-reads; doubled after every re-read that brings nothing (up to
/// [`MAX_STALL_PATIENCE`]), so that a slow broker is given time instead of being interrupted.
/// Chosen by measurement (`scripts/bench.sh` on tansu): a shorter wait re-reads partitions that
/// were only slow (1 s: 388 re-reads, 0.78x a raw consumer; 3 s: 17, 0.88x; 6 s: one, 0.98x).
pub(super) const STALL_PATIENCE: Duration = Duration::from_secs(6);
pub(super) const MAX_STALL_PATIENCE: Duration = Duration::from_secs(60);
/// How long records may wait on the broker, unserved, while other partitions are served, before
/// those others pause for [`STARVED_PAUSE`] so that the next fetches serve the waiting ones.
pub(super) const STARVED_AFTER: Duration = Duration::from_secs(3);
pub(super) const STARVED_PAUSE: Duration = Duration::from_secs(1);

/// What the poll loop must do after a record.
pub(super) enum AfterRecord {
    Continue,
    /// Re-read the partition from this offset.
    Seek(SourcePartition, i64),
    /// The record at this offset needs a schema the registry has not served yet: the partition
    /// waits, and re-reads from it.
    WaitForSchema(SourcePartition, i64, crate::avro::SchemaKey),
}

/// A partition's watermarks as the latest fetch responses reported them (librdkafka statistics;
/// never ListOffsets, which some brokers answer wrongly).
#[derive(Debug, Clone, Copy)]
pub(super) struct Watermarks {
    pub(super) low: i64,
    pub(super) high: i64,
    pub(super) seq: u64,
}

impl Position {
    pub(super) fn new(archived: Option<i64>, start: Offset, seq: u64) -> Self {
        Self {
            after: archived,
            buffered_through: None,
            buffered_bytes: 0,
            buffered_rows: 0,
            buffered_newest_ms: None,
            next: archived.map_or(0, |o| o + 1),
            start,
            received: false,
            positioned_at: seq,
            // Nothing to prove without a ledger position: the log's start is where we began.
            anchored: archived.is_none(),
            rewind_back: None,
            last_seek: Instant::now(),
            last_record: (Instant::now(), seq),
            stall_patience: STALL_PATIENCE,
            paused: None,
            starved_pause: (Instant::now(), STARVED_AFTER),
        }
    }

    /// The buffer was handed to the writer or dropped.
    pub(super) fn clear_buffered(&mut self) {
        self.buffered_bytes = 0;
        self.buffered_rows = 0;
        self.buffered_newest_ms = None;
    }

    pub(super) fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// Stops fetching the partition; its stall clock stops with it.
    pub(super) fn pause(&mut self, why: PauseFor) {
        let since = self.paused.map_or_else(Instant::now, |(since, _)| since);
        self.paused = Some((since, why));
    }

    /// Fetches again if paused for a reason `done` says is over (`false`: nothing to resume).
    /// Time spent paused does not count as waiting for a record: a partition stuck on the broker
    /// is still found, however often it is made to wait.
    pub(super) fn resume_if(&mut self, done: impl FnOnce(PauseFor) -> bool) -> bool {
        let Some((since, why)) = self.paused else {
            return false;
        };
        if !done(why) {
            return false;
        }
        self.paused = None;
        let (now, paused_for) = (Instant::now(), since.elapsed());
        self.last_record.0 = (self.last_record.0 + paused_for).min(now);
        self.last_seek = (self.last_seek + paused_for).min(now);
        true
    }

    /// Checks that `offset` continues the partition. Records that do not arrive in sequence are
    /// either gone from the log (transaction markers, retention, compaction) or were skipped by
    /// the broker (some brokers answer a fetch inside a record batch with the next batch, which
    /// happens after every re-positioning: a restart, a rebalance, a resumed pause). Never accept
    /// a gap silently: re-read from further back until the broker serves the records before the
    /// gap in sequence (then the gap is real), or the start of the log shows the records are gone.
    pub(super) fn check_gap(
        &mut self,
        sp: &SourcePartition,
        offset: i64,
        seq: u64,
        now: Instant,
    ) -> Option<AfterRecord> {
        let expected = self.next;
        self.last_record = (now, seq);
        self.stall_patience = STALL_PATIENCE;
        self.starved_pause.1 = STARVED_AFTER;
        if offset == expected {
            self.anchored = true;
            self.rewind_back = None;
            return None;
        }
        if offset < expected {
            // A re-delivery: the broker serves from before the position (dropped as a duplicate).
            self.anchored = true;
            return None;
        }
        if self.anchored {
            if self.rewind_back.take().is_some() {
                tracing::info!(
                    topic = %sp.topic, partition = sp.partition, expected, next = offset,
                    "offsets {expected}..{} are not in the log (transaction markers, compaction or \
                     retention); continuing from {offset}",
                    offset - 1
                );
                return None;
            }
            let from = self.reread(
                sp,
                format_args!("the broker skipped from offset {expected} to {offset}"),
            );
            return Some(AfterRecord::Seek(sp.clone(), from));
        }
        match self.rewind_back {
            // Records fetched before the re-read: drop them and wait for it.
            Some(_) if self.last_seek.elapsed() < REWIND_PATIENCE => Some(AfterRecord::Continue),
            Some(back) if back >= expected => {
                tracing::warn!(
                    topic = %sp.topic, partition = sp.partition, expected, first = offset,
                    "offsets {expected}..{} are not on the broker (deleted by retention or \
                     compaction); archiving continues from {offset}",
                    offset - 1
                );
                self.anchored = true;
                self.rewind_back = None;
                None
            }
            _ => {
                let from = self.reread(
                    sp,
                    format_args!(
                        "the broker answered a fetch at offset {expected} with offset {offset}"
                    ),
                );
                Some(AfterRecord::Seek(sp.clone(), from))
            }
        }
    }

    /// Nothing arrived for a while although statistics newer than the last record show records
    /// beyond the position: some brokers answer a fetch inside the last record batch with
    /// nothing, forever. Re-read from further back (`None`: nothing to do yet).
    pub(super) fn check_stall(
        &mut self,
        sp: &SourcePartition,
        marks: Option<&Watermarks>,
    ) -> Option<i64> {
        let patience = self.stall_patience;
        if self.is_paused()
            || self.last_record.0.elapsed() < patience
            || self.last_seek.elapsed() < patience
        {
            return None;
        }
        // At the start of the log a fetch begins at a batch boundary: nothing to repair.
        let w = self
            .waiting_beyond(marks)
            .filter(|w| w.low.max(0) < self.next)?;
        self.stall_patience = (patience * 2).min(MAX_STALL_PATIENCE);
        let (expected, high) = (self.next, w.high);
        Some(self.reread(
            sp,
            format_args!(
                "no record arrived from offset {expected} in {patience:?} although the \
                 partition ends at {high}"
            ),
        ))
    }

    /// Where to seek to re-read further back than the last re-read (512 offsets first, then 8
    /// times further).
    pub(super) fn reread(&mut self, sp: &SourcePartition, why: std::fmt::Arguments<'_>) -> i64 {
        let expected = self.next;
        let back = self
            .rewind_back
            .map_or(FIRST_REWIND, |b| b.saturating_mul(8));
        let from = expected.saturating_sub(back).max(0);
        tracing::warn!(
            topic = %sp.topic, partition = sp.partition, expected, from,
            "{why}; re-reading from {from} so that no record is skipped"
        );
        self.rewind_back = Some(back);
        self.last_seek = Instant::now();
        self.anchored = false;
        from
    }

    /// The partition's statistics when they are newer than its positioning and its last record
    /// and show records beyond what it has read: records wait on the broker.
    pub(super) fn waiting_beyond<'w>(
        &self,
        marks: Option<&'w Watermarks>,
    ) -> Option<&'w Watermarks> {
        let seq = self.last_record.1;
        marks.filter(|w| w.seq > self.positioned_at.max(seq) && w.high > self.next)
    }

    /// Records have waited on the broker for [`STARVED_AFTER`] (longer after each time, see
    /// `starved_pause`) of fetching time without one arriving, by statistics newer than the last
    /// record: the broker serves other partitions (some fill a whole fetch response from one
    /// partition), or is stuck inside a batch. When true, the other partitions are to pause.
    pub(super) fn starved(&mut self, marks: Option<&Watermarks>) -> bool {
        let (last, patience) = self.starved_pause;
        let starved = !self.is_paused()
            && self.last_record.0.elapsed() >= patience
            && last.elapsed() >= patience
            && self.waiting_beyond(marks).is_some();
        if starved {
            self.starved_pause = (Instant::now(), (patience * 2).min(MAX_STALL_PATIENCE));
        }
        starved
    }

    /// True when a snapshot taken after positioning shows nothing beyond what we have read.
    pub(super) fn at_end(&self, marks: Option<&Watermarks>) -> bool {
        let Some(w) = marks.filter(|w| w.seq > self.positioned_at && w.high >= 0) else {
            return false;
        };
        self.next >= w.high
            || (!self.received && (self.start == Offset::End || (w.low >= 0 && w.low >= w.high)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position_waiting_since(ago: Duration) -> Position {
        let mut p = Position::new(Some(99), Offset::Offset(100), 1);
        p.last_record = (Instant::now() - ago, 1);
        p
    }

    fn marks(high: i64, seq: u64) -> Watermarks {
        Watermarks { low: 0, high, seq }
    }

    #[test]
    fn time_spent_paused_does_not_count_as_waiting() {
        let mut p = position_waiting_since(Duration::from_secs(10));
        p.paused = Some((Instant::now() - Duration::from_secs(9), PauseFor::Writer));
        assert!(!p.resume_if(|why| matches!(why, PauseFor::Starved(_))));
        assert!(p.resume_if(|why| why == PauseFor::Writer));
        let waited = p.last_record.0.elapsed();
        assert!(
            (Duration::from_millis(900)..Duration::from_secs(3)).contains(&waited),
            "{waited:?}"
        );
        assert!(!p.resume_if(|_| true), "resumed once");
    }

    #[test]
    fn a_partition_is_starved_only_with_records_waiting_by_fresh_statistics() {
        let mut p = position_waiting_since(STARVED_AFTER + Duration::from_secs(1));
        p.starved_pause.0 = Instant::now() - STARVED_AFTER;
        assert!(
            !p.starved(Some(&marks(500, 1))),
            "statistics from before the last record"
        );
        assert!(
            !p.starved(Some(&marks(100, 2))),
            "nothing beyond the position"
        );
        p.pause(PauseFor::Writer);
        assert!(!p.starved(Some(&marks(500, 2))), "paused");
        p.paused = None;
        assert!(p.starved(Some(&marks(500, 2))));
        assert!(
            !p.starved(Some(&marks(500, 3))),
            "the next time waits longer"
        );
        assert_eq!(p.starved_pause.1, STARVED_AFTER * 2);
        // A record arriving starts over.
        assert!(
            p.check_gap(&SourcePartition::new("t", 0), 100, 3, Instant::now())
                .is_none()
        );
        assert_eq!(p.starved_pause.1, STARVED_AFTER);
    }
}
