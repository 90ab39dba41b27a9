//! Producing with back-pressure: the one place orderlake waits for room in librdkafka's queue.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::util::IntoOpaque;

/// Enqueues `record`, waiting while the producer's local queue is full.
pub fn send_blocking<'a, C, D>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'a, [u8], [u8], D>,
) -> Result<(), KafkaError>
where
    C: ProducerContext<DeliveryOpaque = D>,
    D: IntoOpaque,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}
