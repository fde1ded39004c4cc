//! Static group membership: the `group.instance.id` this instance joins its group with.
//!
//! A member with a `group.instance.id` that comes back within the session timeout gets its
//! partitions back at once; without one, a restarted instance is a new member and its partitions
//! wait until the group expires its dead self (`session.timeout.ms`, 45 s by librdkafka's default).
//! So every instance has one by default, stable across its restarts:
//!
//! - with a lease, `kafka2redis.<group>.<lease key>`, shared by the holder and its standbys: only
//!   the holder is ever a member, and a standby that takes over replaces the dead holder's
//!   membership at once;
//! - otherwise `kafka2redis.<host>.<hash>.<slot>`: the host name; a hash of the group, the config
//!   file's absolute path and the systemd unit the process runs in (if any); and a slot, the lowest
//!   number that no other running copy with the same host, group and file holds. A slot is held
//!   through a lock on a file in the temporary directory, which the kernel releases when the
//!   process ends, however it ends: a copy restarted after a crash finds its slot free and comes
//!   back as the same member, while two copies running side by side get two slots.
//!
//! `kafka.group_instance_id` (or the `group.instance.id` property) replaces the default; `""` turns
//! static membership off. Two live members with one id fence each other at the broker: the older
//! one gets a fatal error and stops ([`fenced`]).

use std::fs::File;
use std::path::Path;

use tracing::{info, warn};

use crate::config::{Config, GroupInstanceId};

/// Copies of one config on one host beyond this many run without static membership.
const SLOTS: u32 = 64;

/// Kafka's limit on a `group.instance.id`.
const MAX_LEN: usize = 249;

/// Holds this instance's slot (the lock on its file) while the process runs.
pub struct SlotLock {
    _file: Option<File>,
}

/// Settles `config.kafka.group_instance_id` to the id this process joins with (`Named`) or to
/// dynamic membership, claiming a slot when the id is derived. Keep the returned lock for the
/// life of the process.
pub fn resolve(mut config: Config) -> (Config, SlotLock) {
    let mut lock = SlotLock { _file: None };
    let resolved = match &config.kafka.group_instance_id {
        GroupInstanceId::Derived { config_path } => match &config.lease_key {
            Some(key) => Some(sanitize(&format!(
                "kafka2redis.{}.{key}",
                config.kafka.group
            ))),
            None => {
                let seed = seed(&config.kafka.group, config_path, systemd_unit().as_deref());
                let base = sanitize(&format!("kafka2redis.{}.{seed:08x}", host_name()));
                match claim_slot(&base) {
                    Some((slot, file)) => {
                        lock._file = file;
                        Some(format!("{base}.{slot}"))
                    }
                    None => {
                        warn!(copies = SLOTS, "this many copies of this config already run on this host: \
                              joining without static membership (set kafka.group_instance_id to choose)");
                        None
                    }
                }
            }
        },
        GroupInstanceId::Named(id) => Some(id.clone()),
        GroupInstanceId::Dynamic => None,
    };
    match &resolved {
        Some(id) => {
            info!(group_instance_id = %id, "static group membership: a restart within the session timeout takes its partitions back at once")
        }
        None => info!("dynamic group membership (no group.instance.id)"),
    }
    config.kafka.group_instance_id = match resolved {
        Some(id) => GroupInstanceId::Named(id),
        None => GroupInstanceId::Dynamic,
    };
    (config, lock)
}

/// The broker fenced this member: another live one joined with its `group.instance.id`. A
/// restart would fence the other in turn, so the process exits as for a config that cannot run.
#[derive(Debug)]
pub struct Fenced(String);

impl std::fmt::Display for Fenced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fenced {}

/// The one sentence for a member that the broker fenced: another live member joined with its id.
pub fn fenced(config: &Config) -> Fenced {
    let id = match &config.kafka.group_instance_id {
        GroupInstanceId::Named(id) => id.as_str(),
        _ => "?",
    };
    Fenced(format!(
        "another instance joined consumer group {:?} with this instance's group.instance.id {id:?}, so \
         the broker fenced this one: give each instance its own kafka.group_instance_id (or \"\" for \
         dynamic membership)",
        config.kafka.group
    ))
}

/// The lowest free slot of `base`, with its lock; `(0, None)` when no lock can be taken (no
/// writable temporary directory): then a second copy is told apart only by the broker's fencing.
fn claim_slot(base: &str) -> Option<(u32, Option<File>)> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    for slot in 0..SLOTS {
        let path = dir.join(format!("{base}.{slot}.lock"));
        // Nothing is ever written to it; a symbolic link planted in a shared directory is refused.
        let file = match File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot open the lock file that tells copies of this \
                      config apart; using slot 0 (a second copy on this host would be fenced by the broker)");
                return Some((0, None));
            }
        };
        match try_lock(&file) {
            Ok(true) => return Some((slot, Some(file))),
            Ok(false) => continue,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot lock the file that tells copies of this \
                      config apart; using slot 0 (a second copy on this host would be fenced by the broker)");
                return Some((0, None));
            }
        }
    }
    None
}

/// Takes an exclusive `flock` on `file` without waiting: `Ok(false)` when another open file
/// holds it. The kernel drops the lock with the last descriptor of that open file, so a process
/// that ends, however it ends, frees its slot.
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is valid while `file` lives; flock only changes the lock state.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(error)
    }
}

/// What tells this instance's config apart from others on the host, as a 32-bit FNV-1a hash
/// (stable across builds and versions, unlike std's hasher).
fn seed(group: &str, config_path: &Path, unit: Option<&str>) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    let parts = [
        group.as_bytes(),
        config_path.as_os_str().as_encoded_bytes(),
        unit.unwrap_or("").as_bytes(),
    ];
    for part in parts {
        for &byte in part.iter().chain(&[0u8]) {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    hash
}

/// The systemd unit this process runs in (`kafka2redis@2.service`), from its cgroup: template
/// instances that share one config, each with its own temporary directory (`PrivateTmp`), are
/// told apart by it.
fn systemd_unit() -> Option<String> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    unit_in_cgroups(&cgroups)
}

fn unit_in_cgroups(cgroups: &str) -> Option<String> {
    cgroups
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .find_map(|path| {
            path.rsplit('/')
                .find(|part| part.ends_with(".service"))
                .map(str::to_string)
        })
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// Kafka's characters for an id: others become `_`; long names are cut (the hash and slot
/// are appended after this, within the limit).
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_LEN - 4)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_service_in_the_cgroup() {
        let v2 = "0::/system.slice/system-kafka2redis.slice/kafka2redis@2.service\n";
        assert_eq!(
            unit_in_cgroups(v2).as_deref(),
            Some("kafka2redis@2.service")
        );
        let v1 = "12:pids:/system.slice/k2r.service\n0::/system.slice/k2r.service\n";
        assert_eq!(unit_in_cgroups(v1).as_deref(), Some("k2r.service"));
        assert_eq!(unit_in_cgroups("0::/\n"), None);
        assert_eq!(
            unit_in_cgroups("0::/user.slice/user-1000.slice/session-3.scope\n"),
            None
        );
    }

    #[test]
    fn the_seed_depends_on_each_part() {
        let a = seed("g", Path::new("/etc/k.toml"), None);
        assert_eq!(a, seed("g", Path::new("/etc/k.toml"), None));
        assert_ne!(a, seed("h", Path::new("/etc/k.toml"), None));
        assert_ne!(a, seed("g", Path::new("/etc/l.toml"), None));
        assert_ne!(a, seed("g", Path::new("/etc/k.toml"), Some("a.service")));
    }

    #[test]
    fn copies_side_by_side_get_their_own_slots_and_a_restart_its_old_one() {
        let base = format!("kafka2redis.test.{}", std::process::id());
        let (first, lock0) = claim_slot(&base).unwrap();
        let (second, lock1) = claim_slot(&base).unwrap();
        assert_eq!((first, second), (0, 1));
        drop(lock0); // the first copy ends
        let (again, _lock) = claim_slot(&base).unwrap();
        assert_eq!(again, 0);
        drop(lock1);
        for slot in 0..2 {
            let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{base}.{slot}.lock")));
        }
    }

    #[test]
    fn ids_keep_to_kafkas_characters() {
        assert_eq!(sanitize("kafka2redis.my host/x"), "kafka2redis.my_host_x");
    }
}
