//! A full list pauses its partition until the list has drained to the low-water mark.

use tracing::{info, warn};

use super::Lane;
use crate::pipeline::backpressure::{self, Drained};
use crate::pipeline::batch::Batch;
use crate::pipeline::jobs;
use crate::pipeline::partition::KafkaPartition;

/// Messages taken per call while a paused lane releases what was prefetched.
const RELEASE_PER_CALL: usize = 64;

impl<P: KafkaPartition> Lane<P> {
    /// Pauses the partition until its list has drained to the low-water mark. Returns false when
    /// the lane was stopped meanwhile.
    pub(super) async fn pause_until_drained(&self, list_len: u64, batch: &mut Batch) -> bool {
        let cap = self.topic.cap.expect("only a capped list is ever full");
        if let Err(e) = self.kafka.pause() {
            warn!(topic = %self.topic.name, partition = self.partition, error = %e, "could not pause the partition");
        }
        self.stats.pauses.inc();
        self.state.set_paused(true);
        info!(topic = %self.topic.name, partition = self.partition, list = %self.topic.list_key, list_len,
              cap = cap.max, low_water = cap.low_water, "list full: partition paused");
        let paused_at = std::time::Instant::now();
        // Serving the queue discards what was prefetched before the pause (librdkafka marks it
        // obsolete and re-fetches it on resume) and so frees its memory. A message that is still
        // current is kept, after the leftover, so order holds.
        let release_prefetched = || {
            let now = jobs::PushTime::now();
            while self.kafka.take(
                RELEASE_PER_CALL,
                self.encoder.uses_headers(),
                &mut |fetched| match fetched {
                    Ok(record) => self.add(&record, &now, batch),
                    // An out-of-range partition must be held, not forgotten, even while paused.
                    Err(e) => self.on_queue_error(e),
                },
            ) > 0
            {}
        };
        let outcome = backpressure::wait_for_drain(
            &self.sink,
            &self.topic.list_key,
            self.topic.structure,
            cap,
            self.flow_check_interval,
            &self.stop,
            release_prefetched,
        )
        .await;
        self.state.set_paused(false);
        if let Err(e) = self.kafka.resume() {
            warn!(topic = %self.topic.name, partition = self.partition, error = %e, "could not resume the partition");
        }
        match outcome {
            Drained::Below(list_len) => {
                info!(topic = %self.topic.name, partition = self.partition, list = %self.topic.list_key, list_len,
                      paused_ms = paused_at.elapsed().as_millis() as u64, "list drained: partition resumed");
                true
            }
            Drained::Stopped => false,
        }
    }
}
