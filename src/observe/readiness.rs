//! Readiness: is this instance doing its job? `/readyz` answers with it and `kafka2redis_ready`
//! exports it, both from this one function, so that an alert on the metric and a load balancer on
//! the endpoint can never disagree.
//!
//! Ready: the lag loop is turning, Kafka and Redis were reached in the last round, and either
//! partitions are assigned (none STALLed, none held because its position is out of range under
//! `auto.offset.reset = error`, pushes not held back by the WAIT guard for long:
//! [`crate::redis::guard::unacknowledged_for`]) or the instance stands by for the lease. Not ready is not
//! a reason to restart: Redis may simply be down.

use std::time::Duration;

use crate::observe::lag::{Rating, Readout, Snapshot};
use crate::observe::state::{now_ms, LeaseState, Registry};

/// How old the lag loop's heartbeat may be before the process counts as wedged: a few rounds, and
/// never less than 10 s so that a short `lag.interval_ms` does not flap on a busy machine.
pub fn heartbeat_limit(lag_interval: Duration) -> Duration {
    (lag_interval * 3).max(Duration::from_secs(10))
}

/// Why the instance is not ready (empty: ready).
pub fn not_ready_reasons(
    readout: &Readout,
    registry: &Registry,
    snapshot: &Snapshot,
    heartbeat_limit: Duration,
) -> Vec<String> {
    let health = &readout.health;
    let mut reasons = Vec::new();
    if now_ms() - health.heartbeat_ms() > heartbeat_limit.as_millis() as i64 {
        reasons.push("the lag loop is not turning".to_string());
    }
    if snapshot.at_ms == 0 {
        reasons.push("no lag round yet".to_string());
    }
    if !health.redis_ok() {
        reasons.push("Redis not reachable".to_string());
    }
    match health.lease() {
        LeaseState::Standby => {} // a standby is ready: it is doing exactly its job
        LeaseState::Shared | LeaseState::Held => {
            if !health.kafka_ok() {
                reasons.push("Kafka not reachable".to_string());
            }
            if registry.snapshot().is_empty() {
                reasons.push("no partitions assigned".to_string());
            }
            let stalled: Vec<String> = snapshot
                .partitions
                .iter()
                .filter(|p| p.state == Rating::Stall)
                .map(|p| format!("{}/{}", p.topic, p.partition))
                .collect();
            if !stalled.is_empty() {
                reasons.push(format!("stalled partitions: {}", stalled.join(",")));
            }
            let held: Vec<String> = registry
                .snapshot()
                .iter()
                .filter_map(|p| p.held())
                .collect();
            if !held.is_empty() {
                reasons.push(format!("partitions held: {}", held.join("; ")));
            }
            if let Some(stuck) = crate::redis::guard::unacknowledged_for() {
                reasons.push(format!(
                    "pushes unacknowledged by replicas for {} s (WAIT guard)",
                    stuck.as_secs()
                ));
            }
        }
    }
    reasons
}
