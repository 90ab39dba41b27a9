//! Producing with back-pressure: the one place orderlake waits for room in librdkafka's queue.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
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

/// A record's headers in order, as owned (key, value) pairs.
pub type HeaderPairs = Vec<(String, Option<Vec<u8>>)>;

/// The headers of a consumed message, owned.
pub fn header_pairs(msg: &impl Message) -> HeaderPairs {
    msg.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

/// Headers to send, in the given order.
pub fn owned_headers(pairs: &[(String, Option<Vec<u8>>)]) -> OwnedHeaders {
    pairs.iter().fold(
        OwnedHeaders::new_with_capacity(pairs.len()),
        |hs, (k, v)| {
            hs.insert(Header {
                key: k,
                value: v.as_deref(),
            })
        },
    )
}
