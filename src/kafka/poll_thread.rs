//! The thread that serves the consumer's group events, and the ordered stop at the end.
//!
//! Stop order: drain every lane (push what was gathered, store its offset), commit synchronously,
//! then drop the consumer, which leaves the group. Each step is bounded by what is left of the
//! shutdown deadline; the caller's watchdog covers a broker that does not answer at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::commits::commit_stored;
use super::context::{Assignment, BridgeContext};
use super::lanes::Lanes;

/// How long a clean stop waits at most for librdkafka to send the LeaveGroup.
const LEAVE_WAIT: Duration = Duration::from_secs(3);

/// How the poll thread ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every lane drained and the final commit succeeded.
    Clean,
    /// Stopped, but some in-flight work was abandoned (to be re-delivered) or the commit failed.
    Incomplete,
    /// A broken invariant, or a fatal error of the Kafka client; nothing further was committed.
    Fatal(String),
    /// The broker fenced this member: another live member joined with its `group.instance.id`.
    /// Its lanes stopped without pushing what they held; nothing further was committed.
    Fenced,
}

/// Serves group events until `stop` is cancelled, then stops in order within `deadline`.
pub fn run(
    consumer: Arc<BaseConsumer<BridgeContext>>,
    lanes: Arc<Lanes>,
    stop: CancellationToken,
    deadline: Duration,
    static_member: bool,
) -> Exit {
    while !stop.is_cancelled() {
        if let Some(exit) = fatal_error(&consumer, &lanes) {
            return exit;
        }
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
    if static_member {
        leave_group(&consumer, deadline.saturating_sub(started.elapsed()));
    }
    drop(consumer); // closes the consumer: revokes (nothing left to drain) and leaves the group
    if drained && committed {
        Exit::Clean
    } else {
        Exit::Incomplete
    }
}

/// A fatal error of the Kafka client ends the session: the consumer can do nothing more. Fenced
/// (another member joined with this one's `group.instance.id`), the partitions are already the
/// other's, so the lanes stop without pushing what they hold.
fn fatal_error(consumer: &BaseConsumer<BridgeContext>, lanes: &Lanes) -> Option<Exit> {
    let (code, reason) = consumer.client().fatal_error()?;
    if let Ok(assigned) = consumer.assignment() {
        lanes.lost(&assigned);
    }
    Some(match code {
        RDKafkaErrorCode::FencedInstanceId | RDKafkaErrorCode::Fenced => Exit::Fenced,
        _ => {
            let why = format!("the Kafka client stopped with a fatal error: {code}: {reason}");
            error!("{why}");
            Exit::Fatal(why)
        }
    })
}

/// Leaves the group now, while the consumer is still open: for a static member only.
/// librdkafka's close sends no LeaveGroup for a static member (KIP-345: it expects to come back),
/// which would leave the partitions of a stopped instance without a consumer for the session
/// timeout; an unsubscribe before the close does send it, so a clean stop moves the partitions at
/// once. A dynamic member's close leaves the group by itself.
fn leave_group(consumer: &BaseConsumer<BridgeContext>, left: Duration) {
    if super::ffi::member_id(consumer).is_empty() {
        return; // never joined, or already left
    }
    consumer.unsubscribe();
    let until = Instant::now() + left.min(LEAVE_WAIT);
    // The revoke arrives through poll; the LeaveGroup goes out once it is applied, and librdkafka
    // clears the member id as it sends it.
    while !super::ffi::member_id(consumer).is_empty() {
        if Instant::now() >= until {
            warn!("the group was not left in time: the partitions move after the session timeout");
            return;
        }
        let _ = consumer.poll(Duration::from_millis(50));
    }
}
