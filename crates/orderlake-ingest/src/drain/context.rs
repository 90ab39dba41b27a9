//! The consumer's context: statistics, and rebalance handling (revoke hands the buffer to the
//! writer; assign reads the ledger and starts each partition right after its archived offset).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orderlake_archive::{OffsetLedger, SourcePartition};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::meters::{self, FlushSummary};
use super::position::{Position, Watermarks};
use super::{DrainState, InFlight, Job, StartFrom, StopSignal};
use crate::error::{IngestError, Result};
use crate::writer::{ArchiveWriter, Flush, LedgerAdvance};

pub(super) struct DrainContext {
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) writer: Arc<tokio::sync::Mutex<ArchiveWriter>>,
    pub(super) jobs: tokio::sync::mpsc::Sender<Job>,
    pub(super) in_flight: Arc<InFlight>,
    pub(super) writer_generation: Arc<AtomicU64>,
    pub(super) state: Mutex<DrainState>,
    pub(super) start_from: StartFrom,
    pub(super) stop: StopSignal,
    pub(super) rebalance_wait: Duration,
    pub(super) fatal: Mutex<Option<IngestError>>,
    pub(super) watermarks: Mutex<HashMap<SourcePartition, Watermarks>>,
    pub(super) stats_seq: AtomicU64,
    pub(super) readiness: orderlake_telemetry::Readiness,
}

impl ClientContext for DrainContext {
    /// librdkafka's own log lines (its `debug` contexts, `[kafka.properties] debug = "cgrp"`
    /// for the group protocol) as debug events of the `librdkafka` target:
    /// `ORDERLAKE_LOG=info,librdkafka=debug` shows them. What it reports as errors arrives
    /// through [`ClientContext::error`] as well.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, facility, "{message}");
    }

    /// Reaching the end of a partition is expected (that is how `--until-caught-up` works), not an
    /// error; everything else librdkafka reports is logged for the operator.
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::debug!(reason, "end of partition");
        } else {
            tracing::warn!(error = %error, reason, "Kafka client error");
        }
    }

    fn stats(&self, statistics: Statistics) {
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        self.readiness.set(
            "broker",
            if up {
                Ok(())
            } else {
                Err("no broker connection is up".into())
            },
        );
        let seq = self.stats_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let mut marks = self.watermarks.lock().expect("watermarks lock");
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 {
                    continue; // librdkafka's internal "unassigned" partition
                }
                marks.insert(
                    SourcePartition::new(topic.as_str(), *partition),
                    Watermarks {
                        low: p.lo_offset,
                        high: p.hi_offset,
                        seq,
                    },
                );
            }
        }
    }
}

impl ConsumerContext for DrainContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(tpl);
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign after revocation failed");
                }
            }
            other => tracing::error!(error = ?other, "rebalance error from the group coordinator"),
        }
    }
}

pub(super) fn partitions_of(tpl: &TopicPartitionList) -> Vec<SourcePartition> {
    tpl.elements()
        .iter()
        .map(|e| SourcePartition::new(e.topic(), e.partition()))
        .collect()
}

impl DrainContext {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, DrainState> {
        self.state.lock().expect("drain state lock")
    }

    /// Before giving partitions up, hand what we buffered for them to the writer: the next owner
    /// reads the ledger only after its own assignment, and the writer's re-check keeps a late
    /// commit from duplicating anything the next owner archived first.
    pub(super) fn on_revoke(&self, tpl: &TopicPartitionList) {
        let revoked = partitions_of(tpl);
        tracing::info!(
            partitions = revoked.len(),
            "partitions revoked; flushing what was buffered"
        );
        let mut st = self.lock();
        st.report.rebalances += 1;
        meters::rebalanced();
        self.submit_buffer(&mut st);
        for sp in &revoked {
            st.positions.remove(sp);
        }
        st.meters.revoked(&revoked);
    }

    /// On assignment: wait for our own flushes to land, read the ledger, and start each partition
    /// right after its archived offset.
    pub(super) fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let assigned = partitions_of(tpl);
        if !self.in_flight.wait_idle(self.rebalance_wait) {
            tracing::warn!(
                "earlier flushes still committing after the rebalance wait; the ledger re-check keeps this safe"
            );
        }
        let ledger = self.read_ledger(assigned.clone());
        let ledger = match ledger {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the offset ledger for the new assignment");
                *self.fatal.lock().expect("fatal lock") = Some(e);
                self.stop.stop();
                let _ = consumer.assign(&TopicPartitionList::new());
                return;
            }
        };
        let mut st = self.lock();
        st.generation += 1;
        self.writer_generation
            .store(st.generation, Ordering::SeqCst);
        st.positions.clear();
        // Nothing buffered now belongs to a partition we may keep: it was handed over on revoke.
        st.discard_buffer();
        for sp in &assigned {
            let archived = ledger.archived(sp);
            let start = match (archived, self.start_from) {
                (Some(o), _) => Offset::Offset(o + 1),
                (None, StartFrom::Earliest) => Offset::Beginning,
                (None, StartFrom::Latest) => Offset::End,
            };
            if let Err(e) = tpl.set_partition_offset(&sp.topic, sp.partition, start) {
                tracing::error!(partition = %sp, error = %e, "cannot set start offset");
            }
            let seq = self.stats_seq.load(Ordering::SeqCst);
            st.positions
                .insert(sp.clone(), Position::new(archived, start, seq));
        }
        drop(st);
        let summary: Vec<String> = ledger
            .iter()
            .map(|(sp, o)| match o {
                Some(o) => format!("{sp}@{}", o + 1),
                None => format!("{sp}@{:?}", self.start_from),
            })
            .collect();
        tracing::info!(version = ?ledger.version(), "assigned {} partitions: {}", summary.len(), summary.join(" "));
        if let Err(e) = consumer.assign(tpl) {
            tracing::error!(error = %e, "assign failed");
        }
        // librdkafka keeps a partition paused by the application across revoke and assign;
        // the new positions start unpaused, so the client must too.
        if let Err(e) = consumer.resume(tpl) {
            tracing::warn!(error = %e, "resuming the assigned partitions failed");
        }
    }

    pub(super) fn read_ledger(&self, partitions: Vec<SourcePartition>) -> Result<OffsetLedger> {
        self.runtime.block_on(async {
            let mut backoff = Duration::from_millis(200);
            loop {
                let mut writer = self.writer.lock().await;
                let read = async {
                    writer.table_mut().refresh().await?;
                    OffsetLedger::read(writer.table(), partitions.clone()).await
                }
                .await;
                match read {
                    Ok(l) => return Ok(l),
                    Err(e) if !self.stop.is_stopped() => {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "reading the offset ledger failed; retrying");
                    }
                    Err(e) => return Err(e.into()),
                }
                drop(writer);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        })
    }

    /// Turns the buffer into a flush and hands it to the writer (blocking while one is queued).
    pub(super) fn submit_buffer(&self, st: &mut DrainState) {
        if st.buffer.is_empty() {
            return;
        }
        let job = Self::take_job(st);
        self.in_flight.add();
        if self.jobs.blocking_send(job).is_err() {
            self.in_flight.done();
            *self.fatal.lock().expect("fatal lock") = Some(IngestError::TaskLost("archive writer"));
        }
    }

    pub(super) fn take_job(st: &mut DrainState) -> Job {
        let mut summary = FlushSummary {
            bytes: st.buffer.bytes(),
            ..FlushSummary::default()
        };
        let batch = st.buffer.finish();
        let mut advances = Vec::new();
        for (sp, pos) in &mut st.positions {
            if pos.buffered_rows > 0 {
                summary
                    .rows_by_partition
                    .push((sp.clone(), pos.buffered_rows));
            }
            if let Some(ts) = pos.buffered_newest_ms {
                let newest = summary
                    .newest_by_topic
                    .entry(sp.topic.clone())
                    .or_insert(ts);
                *newest = (*newest).max(ts);
            }
            pos.clear_buffered();
            if let Some(through) = pos.buffered_through.take() {
                advances.push(LedgerAdvance {
                    partition: sp.clone(),
                    after: pos.after,
                    through,
                });
                pos.after = Some(through);
            }
        }
        let undecoded = std::mem::take(&mut st.buffer_undecoded);
        st.buffer_started = None;
        Job {
            generation: st.generation,
            flush: Flush {
                batch,
                advances,
                import: None,
            },
            undecoded,
            summary,
        }
    }
}

impl DrainContext {
    /// Submits the buffer if the writer's queue has room; `Err(())` when it is full.
    pub(super) fn take_job_if_room(
        ctx: &DrainContext,
        st: &mut DrainState,
    ) -> std::result::Result<(), ()> {
        let permit = ctx.jobs.try_reserve().map_err(|_| ())?;
        let job = Self::take_job(st);
        ctx.in_flight.add();
        permit.send(job);
        Ok(())
    }
}
