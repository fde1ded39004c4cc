//! Kafka's side of lag: high watermarks, fetch positions and committed offsets, for the lag loop
//! ([`crate::observe::lag`]).

use std::sync::{Mutex, Weak};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::context::BridgeContext;
use super::ffi;
use crate::observe::lag::{Asked, KafkaFigures, KafkaOffsets, KafkaRound};

/// Bound on each Kafka request a round makes.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(2);

/// The current session's consumer, while there is one. Weak: the consumer must be dropped
/// (closed) on the Kafka poll thread, never by the lag loop.
#[derive(Default)]
pub struct ConsumerSlot(Mutex<Option<Weak<BaseConsumer<BridgeContext>>>>);

impl ConsumerSlot {
    pub fn set(&self, consumer: Option<Weak<BaseConsumer<BridgeContext>>>) {
        *self.0.lock().expect("consumer slot") = consumer;
    }
}

impl KafkaOffsets for ConsumerSlot {
    fn query(&self, asked: &[Asked], probe_topic: &str) -> KafkaRound {
        let consumer = self.0.lock().expect("consumer slot").clone();
        match consumer.and_then(|w| w.upgrade()) {
            Some(consumer) => query(&consumer, asked, probe_topic),
            None => KafkaRound {
                partitions: vec![KafkaFigures::default(); asked.len()],
                reachable: None,
            },
        }
    }
}

/// Blocking: watermarks (cached where possible) and, for partitions without a position yet, the
/// committed offsets. Runs on a blocking thread.
fn query(consumer: &BaseConsumer<BridgeContext>, ids: &[Asked], probe_topic: &str) -> KafkaRound {
    let mut asked = false;
    let mut answered = false;
    let mut partitions = Vec::with_capacity(ids.len());
    let mut unknown = TopicPartitionList::new();
    let positions = consumer.position().ok();
    for Asked {
        topic,
        partition,
        paused,
        next_offset,
    } in ids
    {
        let cached = ffi::cached_watermarks(consumer, topic, *partition);
        // A paused partition is not fetched, so its cached high watermark goes stale.
        let (low, high) = match cached {
            Some(w) if !*paused => (Some(w.0), Some(w.1)),
            _ => {
                asked = true;
                match consumer.fetch_watermarks(topic, *partition, KAFKA_TIMEOUT) {
                    Ok((low, high)) => {
                        answered = true;
                        (Some(low), Some(high))
                    }
                    Err(_) => (cached.map(|w| w.0), cached.map(|w| w.1)),
                }
            }
        };
        if next_offset.is_none() {
            unknown.add_partition(topic, *partition);
        }
        let position = positions.as_ref().and_then(|p| {
            match p.find_partition(topic, *partition).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            }
        });
        partitions.push(KafkaFigures {
            high_watermark: high,
            fallback_offset: low,
            position,
        });
    }
    if unknown.count() > 0 {
        asked = true;
        if let Ok(committed) = consumer.committed_offsets(unknown, KAFKA_TIMEOUT) {
            answered = true;
            for (
                Asked {
                    topic, partition, ..
                },
                figures,
            ) in ids.iter().zip(partitions.iter_mut())
            {
                if let Some(Offset::Offset(o)) = committed
                    .find_partition(topic, *partition)
                    .map(|e| e.offset())
                {
                    figures.fallback_offset = Some(o);
                }
            }
        }
    }
    if !asked {
        // Nothing needed the network this round: ask for one topic's metadata, so that
        // readiness notices a broker that went away.
        answered = consumer
            .fetch_metadata(Some(probe_topic), KAFKA_TIMEOUT)
            .is_ok();
    }
    KafkaRound {
        partitions,
        reachable: Some(answered),
    }
}
