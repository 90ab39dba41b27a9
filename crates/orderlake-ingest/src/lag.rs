//! How far the archive is behind the broker: each partition's end offset as the broker's fetch
//! responses report it (librdkafka statistics; never ListOffsets, which some brokers answer
//! wrongly), against the table's ledger.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use orderlake_archive::SourcePartition;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::error::{IngestError, Result};

#[derive(Default)]
struct EndOffsets(Mutex<HashMap<SourcePartition, i64>>);

impl ClientContext for EndOffsets {
    fn stats(&self, statistics: Statistics) {
        let mut ends = self.0.lock().expect("end offsets lock");
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.hi_offset >= 0 {
                    ends.insert(
                        SourcePartition::new(topic.as_str(), *partition),
                        p.hi_offset,
                    );
                }
            }
        }
    }
}

impl ConsumerContext for EndOffsets {}

/// The end offset (the offset the next record will get) of each of `partitions`, read by
/// fetching from `from` (for instance right after the archived offset). Partitions the broker
/// does not answer for within `timeout` are missing from the result.
pub fn end_offsets(
    brokers: &str,
    from: &[(SourcePartition, i64)],
    timeout: Duration,
) -> Result<HashMap<SourcePartition, i64>> {
    let kafka = |context: &str, source| IngestError::Kafka {
        context: format!("{context} {brokers}"),
        source,
    };
    let consumer: BaseConsumer<EndOffsets> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "orderlake-verify")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("statistics.interval.ms", "100")
        .set("fetch.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "65536")
        .create_with_context(EndOffsets::default())
        .map_err(|e| kafka("connecting to", e))?;
    let mut tpl = TopicPartitionList::new();
    for (sp, offset) in from {
        tpl.add_partition_offset(&sp.topic, sp.partition, Offset::Offset((*offset).max(0)))
            .map_err(|e| kafka("assigning partitions of", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| kafka("assigning partitions of", e))?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(100));
        let ends = consumer.context().0.lock().expect("end offsets lock");
        if from.iter().all(|(sp, _)| ends.contains_key(sp)) {
            break;
        }
    }
    let ends = consumer
        .context()
        .0
        .lock()
        .expect("end offsets lock")
        .clone();
    Ok(ends)
}
