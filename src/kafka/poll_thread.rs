//! The thread that serves the consumer's group events, and the ordered stop at the end.
//!
//! Stop order: drain every lane (push what was gathered, store its offset), commit synchronously,
//! then drop the consumer, which leaves the group. Each step is bounded by what is left of the
//! shutdown deadline; the caller's watchdog covers a broker that does not answer at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::commits::commit_stored;
use super::context::BridgeContext;
use super::lanes::Lanes;

/// How the poll thread ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every lane drained and the final commit succeeded.
    Clean,
    /// Stopped, but some in-flight work was abandoned (to be re-delivered) or the commit failed.
    Incomplete,
    /// A broken invariant; nothing further was committed.
    Fatal(String),
}

/// Serves group events until `stop` is cancelled, then stops in order within `deadline`.
pub fn run(
    consumer: Arc<BaseConsumer<BridgeContext>>,
    lanes: Arc<Lanes>,
    stop: CancellationToken,
    deadline: Duration,
) -> Exit {
    while !stop.is_cancelled() {
        match consumer.poll(Duration::from_millis(100)) {
            None | Some(Err(_)) => {} // errors arrive through the context's error callback too
            Some(Ok(message)) => {
                // Cannot happen: every partition's queue is split off before it is assigned. If it
                // ever did, this message would bypass its lane's ordering, so stop without committing.
                let why = format!(
                    "message for {}/{} at offset {} arrived on the main queue instead of its lane",
                    message.topic(),
                    message.partition(),
                    message.offset()
                );
                error!("{why}; stopping without committing");
                return Exit::Fatal(why);
            }
        }
    }
    let started = Instant::now();
    info!(lanes = lanes.count(), "stopping: draining lanes");
    let (drained, stored) = lanes.stop_all(deadline.mul_f32(0.7));
    let committed = commit_stored(&consumer, &stored, "shutdown");
    info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "lanes drained and offsets committed; leaving the group"
    );
    drop(consumer); // closes the consumer: revokes (nothing left to drain) and leaves the group
    if drained && committed {
        Exit::Clean
    } else {
        Exit::Incomplete
    }
}
