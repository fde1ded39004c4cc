//! Watching for a Redis that went back in time ([`crate::redis::continuity`]), and saying what it
//! cost.
//!
//! Ten times a second the bridge advances its markers in Redis (one, or one per Cluster master),
//! having noted first where each partition stood: everything acknowledged before a marker was sent
//! is in any data set that holds that marker. When a Redis (or one Cluster master) turns out to
//! hold an older marker (a restart from an older RDB snapshot, a flush, a failover to a replica
//! that lagged), the exactly-once lanes are told at once, busy or idle, to re-read their records
//! and go back with them (nothing missing, nothing twice), and for the at-least-once partitions
//! whose lists live there an error names the offsets that may be missing from their lists: from
//! where the partition stood when the marker Redis still holds was written, up to where it stands
//! now.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use futures_util::future::join_all;

use super::state::{PartitionState, Registry};
use super::stats::Stats;
use crate::config::{Config, Delivery};
use crate::keys::continuity_key;
use crate::redis::continuity::{marker_key_in, Continuity, Layout, Marker, MasterSlots};
use crate::redis::guard::key_slot;
use crate::redis::RedisSink;

/// How often the marker advances. A rollback is noticed when Redis acknowledged a marker after the
/// data set it went back to was saved, so this is also the window of acknowledged writes that
/// could go unreported; ten small writes a second cost Redis nothing worth measuring.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// How often a slot map that could not be read is asked for again.
const LAYOUT_RETRY: Duration = Duration::from_secs(1);

/// The marker outlives the process's last write by this much.
const MARKER_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Positions kept: past this the older half is thinned to every other entry, so the history spans
/// hours (RDB snapshots are often minutes to an hour apart) in bounded memory, finely near now and
/// coarsely (so more conservatively) further back.
const HISTORY: usize = 256;

/// Where the partitions stood when one marker value was sent.
struct Positions {
    marker: u64,
    partitions: Vec<(Arc<PartitionState>, i64)>,
}

/// The positions noted before each marker write, oldest first.
#[derive(Default)]
struct History(VecDeque<Positions>);

impl History {
    fn note(&mut self, marker: u64, registry: &Registry) {
        let partitions = registry
            .snapshot()
            .into_iter()
            .filter_map(|p| p.next_offset().map(|o| (p, o)))
            .collect();
        if self.0.len() >= HISTORY {
            self.thin();
        }
        self.0.push_back(Positions { marker, partitions });
    }

    /// Drops every other entry of the older half, keeping the very first (the process's start).
    fn thin(&mut self) {
        let half = self.0.len() / 2;
        let mut index = 0;
        self.0.retain(|_| {
            let keep = index == 0 || index >= half || index % 2 == 0;
            index += 1;
            keep
        });
    }

    /// The newest positions known to be inside a data set that holds marker `holds` (`None`: the
    /// oldest positions noted, as Redis holds none of this process's markers).
    fn safe_for(&self, holds: Option<u64>) -> Option<&Positions> {
        match holds {
            Some(holds) => self
                .0
                .iter()
                .rev()
                .find(|p| p.marker <= holds)
                .or(self.0.front()),
            None => self.0.front(),
        }
    }
}

/// One marker and what it stands for: on a Cluster, the master whose slots it lives in.
struct Watched {
    marker: Marker,
    /// `None`: the whole deployment.
    master: Option<MasterSlots>,
    /// Whether its last write failed (a restart may have happened meanwhile).
    failed: bool,
}

/// The markers of one process, laid out as [`RedisSink::marker_layout`] says.
struct Markers {
    instance: String,
    watched: Vec<Watched>,
    /// Whether the layout was read (a Cluster's may not have been yet).
    laid_out: bool,
}

impl Markers {
    fn new(instance: String) -> Markers {
        Markers {
            instance,
            watched: Vec::new(),
            laid_out: false,
        }
    }

    /// Follows `layout`: a master that keeps its first slot keeps its marker (and what it
    /// acknowledged); any other gets a new one. A Cluster whose slot map cannot be read is watched
    /// through one marker meanwhile, as a standalone server is.
    fn follow(&mut self, layout: Result<Layout, ::redis::RedisError>) {
        let expiry = MARKER_EXPIRY.as_millis() as u64;
        let layout = match layout {
            Ok(layout) => {
                self.laid_out = true;
                layout
            }
            Err(e) => {
                debug!(error = %e, "cannot read the Cluster's slot map; one continuity marker meanwhile");
                if !self.watched.is_empty() {
                    return;
                }
                Layout::Single
            }
        };
        let masters = match layout {
            Layout::Single => {
                if self.watched.len() != 1 || self.watched[0].master.is_some() {
                    self.watched = vec![Watched {
                        marker: Marker::new(continuity_key(&self.instance), expiry),
                        master: None,
                        failed: false,
                    }];
                }
                return;
            }
            Layout::PerMaster(masters) => masters,
        };
        let mut kept: Vec<Watched> = std::mem::take(&mut self.watched)
            .into_iter()
            .filter(|w| w.master.is_some())
            .collect();
        for master in masters {
            let Some(slot) = master.marker_slot() else {
                continue;
            };
            let existing = kept
                .iter()
                .position(|w| w.master.as_ref().and_then(MasterSlots::marker_slot) == Some(slot));
            let watched = match existing {
                Some(index) => {
                    let mut w = kept.swap_remove(index);
                    w.master = Some(master);
                    w
                }
                None => match marker_key_in(slot, &self.instance) {
                    Some(key) => Watched {
                        marker: Marker::new(key, expiry),
                        master: Some(master),
                        failed: false,
                    },
                    None => continue,
                },
            };
            self.watched.push(watched);
        }
    }
}

/// Advances the markers every [`CHECK_EVERY`] until `stop`, and reports a rollback when one is
/// found. `instance` is unique per process ([`crate::keys::continuity_key`]).
pub async fn run(
    config: Arc<Config>,
    sink: RedisSink,
    registry: Arc<Registry>,
    stats: Arc<Stats>,
    instance: String,
    stop: CancellationToken,
) {
    let mut markers = Markers::new(instance);
    let mut masters = sink.master_changes();
    let mut history = History::default();
    let mut value = 0u64;
    let mut last_read: Option<Instant> = None;
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        // The slot map is read again whenever a master or its slots changed, and, until it could
        // be read, once a second.
        let unread = !markers.laid_out && last_read.is_none_or(|at| at.elapsed() >= LAYOUT_RETRY);
        if unread || masters.has_changed().unwrap_or(false) {
            masters.mark_unchanged();
            last_read = Some(Instant::now());
            markers.follow(sink.marker_layout().await);
        }
        value += 1;
        history.note(value, &registry);
        // All markers at once: a master that does not answer holds up no other.
        let sink = &sink;
        let outcomes = join_all(markers.watched.iter_mut().map(|w| async move {
            let outcome = sink.advance_marker(&mut w.marker, value).await;
            (w, outcome)
        }))
        .await;
        let mut recheck = false;
        for (watched, outcome) in outcomes {
            let failed = std::mem::replace(&mut watched.failed, outcome.is_err());
            match outcome {
                Ok(Continuity::Started) => {}
                // Redis may have restarted between two markers: the exactly-once records are the
                // finer check, and cheap.
                Ok(Continuity::Intact) => recheck |= failed,
                Ok(Continuity::RolledBack { holds, expected }) => {
                    stats.redis_rollbacks.inc();
                    // Exactly-once lanes re-read their records, as after a failover.
                    recheck = true;
                    report(
                        &config,
                        watched.master.as_ref(),
                        holds,
                        expected,
                        history.safe_for(holds),
                    );
                }
                Err(e) => {
                    debug!(marker = watched.marker.key(), error = %e, "cannot advance a Redis continuity marker; trying again")
                }
            }
        }
        if recheck {
            sink.announce_master_change();
            // The lanes' watch is the one this loop reads the slot map by: seen, not a change.
            masters.mark_unchanged();
        }
    }
}

/// One error for the rollback, and one per at-least-once partition whose latest pushes may be gone:
/// on a Cluster, those whose lists live on the `master` that went back.
fn report(
    config: &Config,
    master: Option<&MasterSlots>,
    holds: Option<u64>,
    expected: u64,
    safe: Option<&Positions>,
) {
    let address = master.map(|m| m.address.as_str());
    error!(master = ?address, holds = ?holds, expected,
           "Redis lost acknowledged writes (restarted from an older snapshot, flushed, or failed over to a \
            replica that lagged): exactly-once topics re-read their records and deliver again what is gone; \
            at-least-once lists may be missing messages (listed below)");
    let Some(safe) = safe else {
        return;
    };
    for (partition, since) in &safe.partitions {
        let exactly_once = config
            .topic(&partition.topic)
            .is_some_and(|t| t.delivery == Delivery::ExactlyOnce);
        let elsewhere = master.is_some_and(|m| !m.owns(key_slot(partition.list_key.as_bytes())));
        let Some(now) = partition.next_offset() else {
            continue;
        };
        if exactly_once || elsewhere || now <= *since {
            continue;
        }
        error!(topic = %partition.topic, partition = partition.partition, list = %partition.list_key,
              master = ?address, from_offset = since, to_offset = now - 1,
              "at-least-once: these offsets were acknowledged by Redis after its data set was saved, and may be \
               missing from the list");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(markers: std::ops::RangeInclusive<u64>) -> History {
        let registry = Registry::default();
        let mut history = History::default();
        for m in markers {
            history.note(m, &registry);
        }
        history
    }

    #[test]
    fn the_newest_positions_at_or_before_the_held_marker_are_safe() {
        let h = history(1..=10);
        assert_eq!(h.safe_for(Some(7)).map(|p| p.marker), Some(7));
        assert_eq!(h.safe_for(None).map(|p| p.marker), Some(1));
        assert_eq!(h.safe_for(Some(0)).map(|p| p.marker), Some(1));
    }

    #[test]
    fn thinning_keeps_the_start_and_the_recent_half() {
        let h = history(1..=(HISTORY as u64 * 4));
        assert!(h.0.len() <= HISTORY);
        assert_eq!(h.0.front().map(|p| p.marker), Some(1));
        let last = HISTORY as u64 * 4;
        assert_eq!(h.safe_for(Some(last)).map(|p| p.marker), Some(last));
        // An older marker finds an entry at or before it: a conservative (earlier) position.
        let held = last / 2;
        assert!(h.safe_for(Some(held)).is_some_and(|p| p.marker <= held));
    }
}
