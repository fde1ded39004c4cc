//! Announcing that a master changed, so that exactly-once lanes re-read their offset records at
//! once.
//!
//! A failover can lose the last writes of the old master — pushes and their offset records alike.
//! A busy partition finds out at its next push, which Redis refuses; a partition that receives
//! nothing after the switch would never push, and the messages that vanished from its list would
//! not come back until a new one arrived. So each change of master is announced, and every
//! exactly-once lane compares its record in Redis with what it believes ([`crate::pipeline::lane`]).
//!
//! Sentinel announces each master it resolves after the first ([`super::sentinel`]). A Cluster
//! follows its failovers inside the crate's client, which tells nobody, so a task here asks
//! `CLUSTER NODES` (or `CLUSTER SLOTS`, when the bridge's user may not run the first) every second
//! and announces when the masters or their slots differ; it also keeps the WAIT guard's view of
//! which masters have replicas ([`super::guard`]). A
//! standalone server has no other master to change to.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

use super::cluster::{self, ClusterConn};
use super::guard::{is_unreadable, WaitGuard};
use crate::logging::RateLimit;

/// How often a Cluster's masters are compared with the last view.
const CLUSTER_POLL: Duration = Duration::from_secs(1);

/// A count of master changes that lanes can watch. Cheap to clone.
#[derive(Clone)]
pub struct MasterChanges(Arc<watch::Sender<u64>>);

impl Default for MasterChanges {
    fn default() -> MasterChanges {
        MasterChanges(Arc::new(watch::Sender::new(0)))
    }
}

impl MasterChanges {
    /// Tells every watcher that a master changed.
    pub fn announce(&self) {
        self.0.send_modify(|count| *count += 1);
    }

    /// A receiver that sees the announcements made from now on.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }

    fn downgrade(&self) -> Weak<watch::Sender<u64>> {
        Arc::downgrade(&self.0)
    }

    /// Polls the cluster's masters while `self` lives, announces each change and tells `guard`
    /// which masters have replicas. `conn` should carry no pushes, so that no `WAIT` holds it up.
    pub(crate) fn follow_cluster(&self, conn: ClusterConn, guard: Arc<WaitGuard>) {
        tokio::spawn(poll_cluster(self.downgrade(), conn, guard));
    }
}

/// A master's id and the slot ranges it serves.
type Serving = (String, Vec<(u16, u16)>);

/// A refused `CLUSTER NODES` and `CLUSTER SLOTS` is said at most this often.
static UNREADABLE: RateLimit = RateLimit::new(Duration::from_secs(60));

async fn poll_cluster(
    changes: Weak<watch::Sender<u64>>,
    mut conn: ClusterConn,
    guard: Arc<WaitGuard>,
) {
    let mut last: Option<Vec<Serving>> = None;
    loop {
        tokio::time::sleep(CLUSTER_POLL).await;
        let Some(sender) = changes.upgrade() else {
            return; // the sink is gone
        };
        // Which node serves which slots: any difference is a failover or a slot move.
        let masters = match cluster::masters(&mut conn).await {
            Ok(masters) => {
                guard.observe_cluster(Ok(&masters));
                Some(masters)
            }
            Err((command, e)) => {
                guard.observe_cluster(Err((command, &e)));
                if is_unreadable(&e) {
                    // Refused (an ACL): follow the slot map instead, and keep asking, so that a
                    // permission granted later is noticed.
                    match cluster::masters_from_slots(&mut conn).await {
                        Ok(masters) => Some(masters),
                        Err(slots) => {
                            if let Some(held) = UNREADABLE.check() {
                                warn!(error = %e, slots_error = %slots, suppressed = held,
                                      "cannot read CLUSTER NODES nor CLUSTER SLOTS: a Cluster failover is \
                                       only noticed at the next push to the master that changed");
                            }
                            None
                        }
                    }
                } else {
                    debug!(error = %e, "cannot read the cluster's nodes; asking again");
                    None
                }
            }
        };
        if let Some(masters) = masters {
            let view: Vec<Serving> = masters.into_iter().map(|m| (m.id, m.slots)).collect();
            if last.as_ref().is_some_and(|last| *last != view) {
                debug!("the cluster's masters changed");
                MasterChanges(sender).announce();
            }
            last = Some(view);
        }
    }
}
