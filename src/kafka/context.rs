//! The consumer's callbacks: librdkafka's logs into `tracing`, and rebalances into lane start/stop.

use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::TopicPartitionList;
use tracing::{debug, error, info, warn};

use super::commits::commit_stored;
use crate::logging::RateLimit;

static KAFKA_ERRORS: RateLimit = RateLimit::new(std::time::Duration::from_secs(5));

/// What the rebalance callback hands partitions to: the running lanes ([`super::lanes::Lanes`]).
pub trait Assignment: Send + Sync {
    /// Called before librdkafka assigns `partitions`: may set their start offsets, and starts
    /// their lanes.
    fn assigned(&self, partitions: &mut TopicPartitionList);
    /// Called before `partitions` are unassigned: their lanes stop within `deadline`. Returns
    /// the offsets they stored, with their marks, for the commit that follows.
    fn revoked(
        &self,
        partitions: &TopicPartitionList,
        deadline: std::time::Duration,
    ) -> TopicPartitionList;
    /// Called when `partitions` were lost (the session timed out): they may already be another
    /// member's, so their lanes stop at once without pushing what they hold.
    fn lost(&self, partitions: &TopicPartitionList);
}

pub struct BridgeContext {
    pub lanes: Arc<dyn Assignment>,
    /// Bound on draining revoked lanes.
    pub drain_deadline: std::time::Duration,
}

impl ClientContext for BridgeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // An offset reset skips (or repeats) messages: with exactly-once it means Kafka no longer
        // holds what Redis lost, so it must be loud.
        if message.contains("out of range") || message.contains("offset reset") {
            error!(target: "librdkafka", facility = fac, "offset reset by the reset policy: {message}");
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => error!(target: "librdkafka", facility = fac, "{message}"),
            RDKafkaLogLevel::Warning => warn!(target: "librdkafka", facility = fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => debug!(target: "librdkafka", facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Broker-down and similar errors repeat every few seconds while they last; librdkafka
        // retries them itself, so a line now and then is what an operator needs.
        if let Some(held) = KAFKA_ERRORS.check() {
            warn!(error = %error, reason, suppressed = held, "Kafka client error (librdkafka retries)");
        }
    }
}

impl ConsumerContext for BridgeContext {
    /// Replaces rdkafka's default handling so that, before librdkafka assigns partitions, their
    /// queues are split off (see `Lanes::start`) and exactly-once partitions get their start offset
    /// from Redis; and so that revoked partitions are drained and committed before they go.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.lanes.assigned(tpl);
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                // A partition paused on a full list before it was revoked stays paused in
                // librdkafka; its new lane starts unpaused, so the partition must too.
                assigned.and_then(|()| consumer.resume(tpl))
            }
            other => {
                if other != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    error!(error = ?RDKafkaErrorCode::from(other), "rebalance error; giving up the partitions");
                }
                if consumer.assignment_lost() {
                    warn!("partitions were lost (session timed out): stopping their lanes without pushing what they hold");
                    self.lanes.lost(tpl);
                } else {
                    let stored = self.lanes.revoked(tpl, self.drain_deadline);
                    commit_stored(consumer, &stored, "revoke");
                }
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
        };
        if let Err(e) = result {
            error!(error = %e, "applying the rebalance failed");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => debug!(partitions = offsets.count(), "offsets committed"),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                warn!(error = %e, "offset commit failed; the stored offsets are committed again next time")
            }
        }
    }
}
