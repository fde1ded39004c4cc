//! What a lane does with an error its partition queue reports, and above all with the one
//! `auto.offset.reset = error` raises: the partition's position is out of range (retention removed
//! it, the topic was re-created, a commit points past the end) or nothing was committed, and the
//! operator asked for an error instead of a reset that would skip or repeat messages.
//!
//! librdkafka stops fetching the partition when it raises that error. The lane holds it: it takes
//! nothing more from it (not even after a seek), and stays assigned, so that the process keeps
//! running, readiness turns false naming the partition and its offsets, and one error line says
//! where it stands against the partition's log start and high watermark. The partition moves again
//! when it is assigned anew (after the operator moved the group's offset, a restart does it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::{error, warn};

use super::{Lane, QUEUE_ERRORS};
use crate::logging::RateLimit;
use crate::pipeline::partition::{KafkaPartition, QueueError};

/// The first holds of a process are each logged (librdkafka raises the error once per assignment
/// of a partition); past them, a re-created topic holding hundreds of partitions logs at most once
/// per interval. Readiness names every held partition either way.
const LOGGED_EACH: usize = 16;
static LOGGED: AtomicUsize = AtomicUsize::new(0);
static HELD: RateLimit = RateLimit::new(Duration::from_secs(5));

impl<P: KafkaPartition> Lane<P> {
    /// Handles an error the partition queue reported in place of a message.
    pub(super) fn on_queue_error(&self, reported: QueueError) {
        if !refused_reset(&reported.error) {
            if let Some(held) = QUEUE_ERRORS.check() {
                warn!(topic = %self.topic.name, partition = self.partition, error = %reported.error,
                      suppressed = held, "Kafka reported an error on the partition queue; librdkafka retries");
            }
            return;
        }
        if self.state.is_held() {
            return;
        }
        let position = (reported.offset >= 0).then_some(reported.offset);
        self.state
            .hold(describe(&self.topic.name, self.partition, position, None));
        self.stats.offset_resets_refused.inc();
        // The partition's bounds are asked of the broker off the lane's path; the hold is in
        // place meanwhile.
        let bounds = self.kafka.bounds();
        let (topic, partition, state) =
            (self.topic.name.clone(), self.partition, self.state.clone());
        tokio::spawn(async move {
            let bounds = bounds.await;
            state.hold(describe(&topic, partition, position, bounds));
            let (log_start, high_watermark) = (bounds.map(|b| b.0), bounds.map(|b| b.1));
            let logged = if LOGGED.fetch_add(1, Ordering::Relaxed) < LOGGED_EACH {
                Some(0)
            } else {
                HELD.check()
            };
            if let Some(suppressed) = logged {
                match position {
                    Some(position) => {
                        error!(%topic, partition, position, ?log_start, ?high_watermark, suppressed,
                        "offset out of range and auto.offset.reset = error: partition {topic}/{partition} is held at \
                         offset {position}, outside its log start {} and high watermark {}; it delivers nothing more \
                         until the group's offset is moved and it is assigned again",
                        shown(log_start), shown(high_watermark))
                    }
                    None => error!(%topic, partition, ?log_start, ?high_watermark, suppressed,
                        "no committed offset and auto.offset.reset = error: partition {topic}/{partition} is held (log \
                         start {}, high watermark {}); it delivers nothing until the group has an offset for it and it \
                         is assigned again", shown(log_start), shown(high_watermark)),
                }
            }
        });
    }
}

/// Whether `error` is librdkafka refusing to reset a partition's offset (`auto.offset.reset = error`).
fn refused_reset(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)
    )
}

/// How readiness names a held partition.
fn describe(
    topic: &str,
    partition: i32,
    position: Option<i64>,
    bounds: Option<(i64, i64)>,
) -> String {
    let at = position.map_or_else(
        || "no committed offset".to_string(),
        |p| format!("offset {p}"),
    );
    let bounds = bounds.map_or_else(
        || "log start and high watermark unknown".to_string(),
        |(low, high)| format!("log start {low}, high watermark {high}"),
    );
    format!("{topic}/{partition} out of range ({at}; {bounds}; auto.offset.reset = error)")
}

fn shown(offset: Option<i64>) -> String {
    offset.map_or_else(|| "unknown".to_string(), |o| o.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_partition_is_named_with_its_offsets() {
        assert_eq!(
            describe("t", 2, Some(500), Some((0, 100))),
            "t/2 out of range (offset 500; log start 0, high watermark 100; auto.offset.reset = error)"
        );
        assert_eq!(
            describe("t", 0, None, None),
            "t/0 out of range (no committed offset; log start and high watermark unknown; auto.offset.reset = error)"
        );
    }

    #[test]
    fn only_the_refused_reset_holds() {
        assert!(refused_reset(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::AutoOffsetReset
        )));
        assert!(!refused_reset(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
    }
}
