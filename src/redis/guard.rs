//! The WAIT guard: how many replicas must confirm a push, decided from the live topology and
//! decided again whenever it may have changed.
//!
//! With `redis.wait_replicas` set, that number holds for every push. Unset, Sentinel and Cluster
//! guard a master's pushes with `WAIT 1` once that master has been seen with a replica: in a planned
//! failover (`SENTINEL FAILOVER`, `CLUSTER FAILOVER FORCE`) the old master keeps taking writes until
//! it learns it was replaced and then discards them; its promoted replica no longer acknowledges
//! them, so with the guard they fail and are retried on the new master instead of being lost.
//!
//! The view is read again each time Sentinel's master is resolved and every [`REEVALUATE_EVERY`]
//! (`INFO replication` on Sentinel's master, `CLUSTER NODES` — else `CLUSTER SLOTS` — on a Cluster,
//! where the guard is kept per slot, since a push's `WAIT` goes to the master that took the push).
//! A replica that appears turns the guard on; one that goes away does not turn it off — a master
//! that had a replica waits for it rather than take writes a failover would lose. A reply that
//! cannot be read (the bridge's ACL user may not run the command) means "unknown", and the guard
//! stays on: if pushes then stay unacknowledged, readiness turns false and one rate-limited error
//! names the missing permission and `redis.wait_replicas = 0` as the way to push unguarded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use ::redis::{Arg, Cmd, RedisError};
use tracing::{error, info, warn};

use crate::logging::RateLimit;

/// How often the topology is read again for the guard.
pub(crate) const REEVALUATE_EVERY: Duration = Duration::from_secs(2);

/// How long guarded pushes must have gone unacknowledged before the instance counts as not ready
/// and the error is logged: a failover makes them fail for a while (until the new master's replica
/// has resynced: about 10 s measured for a planned failover), which is the guard working.
pub const UNACKNOWLEDGED_LIMIT: Duration = Duration::from_secs(20);

static UNACKNOWLEDGED_ERRORS: RateLimit = RateLimit::new(Duration::from_secs(60));

/// Since when guarded pushes have gone unacknowledged (ms since the epoch; 0: they have not).
/// Process-wide, because readiness reads it; a process pushes through one sink.
static UNACKNOWLEDGED_SINCE_MS: AtomicI64 = AtomicI64::new(0);

/// How long guarded pushes have gone unacknowledged, once that is [`UNACKNOWLEDGED_LIMIT`] or more.
pub fn unacknowledged_for() -> Option<Duration> {
    let since = UNACKNOWLEDGED_SINCE_MS.load(Ordering::Relaxed);
    if since == 0 {
        return None;
    }
    let elapsed = Duration::from_millis(now_ms().saturating_sub(since).max(0) as u64);
    (elapsed >= UNACKNOWLEDGED_LIMIT).then_some(elapsed)
}

fn reset_unacknowledged() {
    UNACKNOWLEDGED_SINCE_MS.store(0, Ordering::Relaxed);
}

use crate::clock::now_ms;

/// The number of slots of a Redis Cluster.
const SLOTS: usize = 16384;

/// Whom the guard is decided for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Topology {
    Standalone,
    Sentinel,
    Cluster,
}

/// Why an automatic guard is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Basis {
    /// No replica seen yet: off.
    NoReplicaSeen,
    /// A replica was seen: on.
    ReplicaSeen,
    /// The command that would tell could not be run: on.
    Unknown(&'static str),
}

/// The guard of one sink. Shared by every clone of the push connection.
pub(crate) struct WaitGuard {
    pub timeout: Duration,
    policy: Policy,
}

enum Policy {
    /// `redis.wait_replicas` as set (0: off), or standalone without it (off).
    Fixed(u32),
    /// Sentinel: one master at a time.
    Master(Mutex<Basis>),
    /// Cluster: per slot, with what was last said about each master. While the masters cannot be
    /// read (`unknown`), every slot is guarded.
    Slots {
        guarded: Box<[AtomicBool]>,
        unknown: AtomicBool,
        state: Mutex<ClusterState>,
    },
}

struct ClusterState {
    unknown: Option<&'static str>,
    /// Each master's address and whether all its slots are guarded, as last logged.
    logged: BTreeMap<String, bool>,
    announced_all: bool,
}

/// One master of a Cluster as the guard needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MasterView {
    pub id: String,
    pub address: String,
    /// Inclusive slot ranges.
    pub slots: Vec<(u16, u16)>,
    pub replicas: usize,
}

impl WaitGuard {
    pub fn new(configured: Option<u32>, timeout: Duration, topology: Topology) -> WaitGuard {
        let policy = match (configured, topology) {
            (Some(n), _) => Policy::Fixed(n),
            (None, Topology::Standalone) => Policy::Fixed(0),
            (None, Topology::Sentinel) => Policy::Master(Mutex::new(Basis::NoReplicaSeen)),
            (None, Topology::Cluster) => Policy::Slots {
                guarded: (0..SLOTS).map(|_| AtomicBool::new(false)).collect(),
                unknown: AtomicBool::new(false),
                state: Mutex::new(ClusterState {
                    unknown: None,
                    logged: BTreeMap::new(),
                    announced_all: false,
                }),
            },
        };
        WaitGuard { timeout, policy }
    }

    /// Whether the topology decides (`redis.wait_replicas` unset, Sentinel or Cluster).
    pub fn follows_topology(&self) -> bool {
        !matches!(self.policy, Policy::Fixed(_))
    }

    /// How many replicas must confirm `write` (0: none, it is sent without `WAIT`).
    pub fn required(&self, write: &Cmd) -> u32 {
        match &self.policy {
            Policy::Fixed(n) => *n,
            Policy::Master(basis) => u32::from(*lock(basis) != Basis::NoReplicaSeen),
            Policy::Slots { unknown, .. } if unknown.load(Ordering::Relaxed) => 1,
            Policy::Slots { guarded, .. } => match first_key(write) {
                Some(key) => u32::from(guarded[usize::from(key_slot(key))].load(Ordering::Relaxed)),
                None => u32::from(guarded.iter().any(|g| g.load(Ordering::Relaxed))),
            },
        }
    }

    /// For `check` and the status: the count required of a push to `key`'s master (any master
    /// when `None`).
    pub fn required_for(&self, key: Option<&str>) -> u32 {
        match (key, &self.policy) {
            (
                Some(key),
                Policy::Slots {
                    guarded, unknown, ..
                },
            ) if !unknown.load(Ordering::Relaxed) => {
                u32::from(guarded[usize::from(key_slot(key.as_bytes()))].load(Ordering::Relaxed))
            }
            _ => self.required(&::redis::cmd("PING")),
        }
    }

    /// What Sentinel's master `address` said about its replicas: `connected_slaves` from
    /// `INFO replication`, or the error that came instead.
    pub fn observe_master(&self, address: &str, replicas: Result<u32, &RedisError>) {
        let Policy::Master(basis) = &self.policy else {
            return;
        };
        let mut basis = lock(basis);
        let before = *basis;
        match replicas {
            Ok(n) if n > 0 => {
                *basis = Basis::ReplicaSeen;
                if before != Basis::ReplicaSeen {
                    info!(
                        master = %address,
                        connected = n,
                        "Sentinel master has a replica: each push waits for one (WAIT guard; \
                           redis.wait_replicas = 0 turns it off)"
                    );
                }
            }
            Ok(_) => match before {
                // A master that had a replica waits for it (see the module's comment).
                Basis::ReplicaSeen => {}
                Basis::Unknown(_) => {
                    *basis = Basis::NoReplicaSeen;
                    // Unguarded now: pushes no longer wait for an acknowledgement.
                    reset_unacknowledged();
                    warn!(master = %address,
                          "Sentinel master has no connected replica: pushes are not guarded until one \
                           connects, and a failover may lose acknowledged pushes (set \
                           redis.wait_replicas to require one)");
                }
                Basis::NoReplicaSeen => {}
            },
            Err(e) if is_unreadable(e) => {
                if before == Basis::NoReplicaSeen {
                    *basis = Basis::Unknown("INFO");
                    warn!(master = %address, error = %e,
                          "cannot read INFO replication on the Sentinel master, so whether it has a \
                           replica is unknown: each push waits for one (WAIT guard). Allow the bridge's \
                           Redis user INFO (ACL SETUSER <user> +info), or set redis.wait_replicas = 0 \
                           to push unguarded");
                }
            }
            Err(_) => {} // the connection failed: nothing learnt
        }
    }

    /// Logs the start-up decision for a Sentinel master that was asked and has no replica.
    pub fn announce_unguarded_master(&self, address: &str) {
        if let Policy::Master(basis) = &self.policy {
            if *lock(basis) == Basis::NoReplicaSeen {
                warn!(master = %address,
                      "Sentinel master has no connected replica: pushes are not guarded until one \
                       connects, and a failover may lose acknowledged pushes (set redis.wait_replicas \
                       to require one)");
            }
        }
    }

    /// What the Cluster's masters look like now, or the command that could not be read.
    pub fn observe_cluster(&self, view: Result<&[MasterView], (&'static str, &RedisError)>) {
        let Policy::Slots {
            guarded,
            unknown,
            state,
        } = &self.policy
        else {
            return;
        };
        let mut state = lock(state);
        match view {
            Ok(masters) => {
                if state.unknown.take().is_some() {
                    unknown.store(false, Ordering::Relaxed);
                    reset_unacknowledged();
                    info!("the Cluster's nodes are readable again: the WAIT guard follows each master");
                }
                for master in masters.iter().filter(|m| m.replicas > 0) {
                    for &(lo, hi) in &master.slots {
                        for slot in lo..=hi.min(SLOTS as u16 - 1) {
                            guarded[usize::from(slot)].store(true, Ordering::Relaxed);
                        }
                    }
                }
                let mut all = !masters.is_empty();
                for master in masters {
                    let on = master.slots.iter().all(|&(lo, hi)| {
                        (lo..=hi.min(SLOTS as u16 - 1))
                            .all(|s| guarded[usize::from(s)].load(Ordering::Relaxed))
                    });
                    all &= on;
                    let before = state.logged.insert(master.address.clone(), on);
                    if before == Some(on) {
                        continue;
                    }
                    if on {
                        info!(master = %master.address, replicas = master.replicas,
                              "Cluster master has a replica: each push to its slots waits for one (WAIT guard)");
                    } else {
                        warn!(master = %master.address,
                              "Cluster master has no replica: pushes to its slots are not guarded, and a \
                               failover may lose acknowledged pushes (set redis.wait_replicas to require one)");
                    }
                }
                if all && !state.announced_all {
                    state.announced_all = true;
                    info!(
                        "every Cluster master has a replica: each push waits for one (WAIT guard; \
                           redis.wait_replicas = 0 turns it off)"
                    );
                }
            }
            Err((command, e)) if is_unreadable(e) => {
                unknown.store(true, Ordering::Relaxed);
                if state.unknown.replace(command).is_none() {
                    warn!(error = %e,
                          "cannot read {command}, so which Cluster masters have a replica is unknown: \
                           each push waits for one (WAIT guard). Allow the bridge's Redis user {command} \
                           (ACL SETUSER <user> +cluster|nodes +cluster|slots), or set \
                           redis.wait_replicas = 0 to push unguarded");
                }
            }
            Err(_) => {}
        }
    }

    /// A guarded push was confirmed by enough replicas.
    pub fn acknowledged(&self) {
        reset_unacknowledged();
    }

    /// A guarded push landed but fewer than `required` replicas confirmed it.
    pub fn unacknowledged(&self, acknowledged: i64, required: u32) {
        let now = now_ms();
        let _ =
            UNACKNOWLEDGED_SINCE_MS.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        let Some(stuck) = unacknowledged_for() else {
            return;
        };
        let Some(held) = UNACKNOWLEDGED_ERRORS.check() else {
            return;
        };
        let seconds = stuck.as_secs();
        match self.unknown() {
            Some(command) => error!(acknowledged, required, seconds, suppressed = held,
                "pushes stay unacknowledged by replicas (WAIT), and the bridge's Redis user may not run \
                 {command}, so whether the master has a replica is unknown and the WAIT guard stays on: \
                 allow it {command} (ACL SETUSER <user> {}), or set redis.wait_replicas = 0 to push \
                 unguarded", acl_grant(command)),
            None => error!(acknowledged, required, seconds, suppressed = held,
                "pushes stay unacknowledged by replicas (WAIT): the master's replicas are down or cut \
                 off; pushing resumes when one is back (redis.wait_replicas = 0 pushes unguarded)"),
        }
    }

    /// The command whose reply could not be read, while that keeps the guard on.
    fn unknown(&self) -> Option<&'static str> {
        match &self.policy {
            Policy::Master(basis) => match *lock(basis) {
                Basis::Unknown(command) => Some(command),
                _ => None,
            },
            Policy::Slots { state, .. } => lock(state).unknown,
            Policy::Fixed(_) => None,
        }
    }
}

fn acl_grant(command: &str) -> &'static str {
    match command {
        "INFO" => "+info",
        _ => "+cluster|nodes +cluster|slots",
    }
}

/// Whether `e` is Redis refusing the command — an ACL (`NOPERM`), a renamed or unknown command
/// (`ERR`) — rather than the connection failing: its answer is unknown, not "no replica".
pub(crate) fn is_unreadable(e: &RedisError) -> bool {
    matches!(e.code(), Some("NOPERM" | "ERR"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Holders only assign plain values; a panic cannot leave them half-written.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The first key of a data write: `RPUSH key …`, `EVALSHA sha numkeys key …`.
pub(crate) fn first_key(cmd: &Cmd) -> Option<&[u8]> {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?;
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if is("EVAL") || is("EVALSHA") || is("FCALL") {
        let _script = args.next()?;
        let numkeys: usize = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
        if numkeys == 0 {
            return None;
        }
    }
    args.next()
}

/// The Cluster slot of `key`: CRC16 (XMODEM) of its hash tag, or of the whole key, mod 16384.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS as u16
}

/// The inclusive slot ranges of `CLUSTER NODES` fields (`0-5460`, `5461`); migration markers
/// (`[93->-id]`) are skipped.
pub(crate) fn parse_ranges(fields: &[String]) -> Vec<(u16, u16)> {
    fields
        .iter()
        .filter_map(|range| {
            let mut bounds = range.split('-').map(|b| b.parse::<u16>());
            match (bounds.next(), bounds.next()) {
                (Some(Ok(lo)), Some(Ok(hi))) => Some((lo, hi)),
                (Some(Ok(one)), None) => Some((one, one)),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::redis::cluster_routing::Slot;

    #[test]
    fn key_slot_matches_the_cluster() {
        for key in [
            "foo",
            "queues:orders",
            "{queues:a}:fence",
            "a{}b",
            "{}",
            "x{y",
            "",
        ] {
            assert_eq!(
                Slot::new(key_slot(key.as_bytes())),
                Some(Slot::for_key(key)),
                "{key}"
            );
        }
        assert_eq!(key_slot(b"foo"), 12182);
    }

    #[test]
    fn the_first_key_of_pushes_and_scripts() {
        let mut push = ::redis::cmd("RPUSH");
        push.arg("list").arg("a");
        assert_eq!(first_key(&push), Some(&b"list"[..]));
        let mut script = ::redis::cmd("EVALSHA");
        script.arg("abc").arg(2).arg("k1").arg("k2").arg("v");
        assert_eq!(first_key(&script), Some(&b"k1"[..]));
        let mut keyless = ::redis::cmd("EVAL");
        keyless.arg("return 1").arg(0);
        assert_eq!(first_key(&keyless), None);
    }

    fn master(address: &str, slots: (u16, u16), replicas: usize) -> MasterView {
        MasterView {
            id: address.into(),
            address: address.into(),
            slots: vec![slots],
            replicas,
        }
    }

    fn push_to(key: &str) -> Cmd {
        let mut cmd = ::redis::cmd("RPUSH");
        cmd.arg(key).arg("x");
        cmd
    }

    #[test]
    fn the_cluster_guard_is_per_master_and_on_when_unknown() {
        let guard = WaitGuard::new(None, Duration::from_millis(100), Topology::Cluster);
        let foo = push_to("foo"); // slot 12182
        let bar = push_to("bar"); // slot 5061
        assert_eq!(guard.required(&foo), 0);
        guard.observe_cluster(Ok(&[
            master("a", (0, 8191), 0),
            master("b", (8192, 16383), 1),
        ]));
        assert_eq!(guard.required(&foo), 1);
        assert_eq!(guard.required(&bar), 0);
        // A replica that goes away does not turn the guard off.
        guard.observe_cluster(Ok(&[
            master("a", (0, 8191), 0),
            master("b", (8192, 16383), 0),
        ]));
        assert_eq!(guard.required(&foo), 1);
        let denied = RedisError::from((
            ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoPerm),
            "denied",
        ));
        guard.observe_cluster(Err(("CLUSTER NODES", &denied)));
        assert_eq!(guard.required(&bar), 1);
        assert_eq!(guard.unknown(), Some("CLUSTER NODES"));
        // Readable again: back to each master's own state.
        guard.observe_cluster(Ok(&[
            master("a", (0, 8191), 0),
            master("b", (8192, 16383), 1),
        ]));
        assert_eq!(guard.required(&bar), 0);
        assert_eq!(guard.required(&foo), 1);
    }

    #[test]
    fn the_sentinel_guard_follows_the_master() {
        let guard = WaitGuard::new(None, Duration::from_millis(100), Topology::Sentinel);
        let push = push_to("list");
        assert_eq!(guard.required(&push), 0);
        let denied = RedisError::from((
            ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoPerm),
            "denied",
        ));
        guard.observe_master("m", Err(&denied));
        assert_eq!(guard.required(&push), 1, "unknown keeps the guard on");
        guard.observe_master("m", Ok(0));
        assert_eq!(guard.required(&push), 0);
        guard.observe_master("m", Ok(1));
        assert_eq!(guard.required(&push), 1);
        guard.observe_master("m", Ok(0));
        assert_eq!(
            guard.required(&push),
            1,
            "a master that had a replica waits for it"
        );
        let set = WaitGuard::new(Some(0), Duration::from_millis(100), Topology::Sentinel);
        set.observe_master("m", Ok(2));
        assert_eq!(set.required(&push), 0, "redis.wait_replicas wins");
    }
}
