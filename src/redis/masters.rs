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
//! `CLUSTER NODES` every second and announces when the masters or their slots differ. A
//! standalone server has no other master to change to.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tracing::debug;

use super::cluster::{self, ClusterConn};

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

    /// Polls the cluster's masters while `self` lives and announces each change.
    pub(crate) fn follow_cluster(&self, conn: ClusterConn) {
        tokio::spawn(poll_cluster(self.downgrade(), conn));
    }
}

async fn poll_cluster(changes: Weak<watch::Sender<u64>>, mut conn: ClusterConn) {
    let mut last: Option<Vec<(String, Vec<String>)>> = None;
    loop {
        tokio::time::sleep(CLUSTER_POLL).await;
        let Some(sender) = changes.upgrade() else {
            return; // the sink is gone
        };
        match cluster::nodes(&mut conn).await {
            Ok(nodes) => {
                // Which node serves which slots: any difference is a failover or a slot move.
                let view: Vec<(String, Vec<String>)> = nodes
                    .into_iter()
                    .filter(|n| n.master && !n.failed && !n.slots.is_empty())
                    .map(|n| (n.id, n.slots))
                    .collect();
                if last.as_ref().is_some_and(|last| *last != view) {
                    debug!("the cluster's masters changed");
                    MasterChanges(sender).announce();
                }
                last = Some(view);
            }
            Err(e) => debug!(error = %e, "cannot read the cluster's nodes; asking again"),
        }
    }
}
