//! Redis Sentinel: ask the sentinels which node is the master, and ask again when it stops being
//! the master.
//!
//! Every sentinel is asked, and the master most of them name wins (once a majority agrees, the
//! others are not waited for), provided `ROLE` on it confirms it is a master: a stale or
//! misconfigured sentinel that names another node does not win by answering first.
//!
//! A planned failover does not break the old master's connections: it keeps taking writes until
//! Sentinel reconfigures it, seconds later, and then discards them. So the connection also listens
//! to every sentinel's `+switch-master` and drops the master the moment one announces a switch;
//! the next command tries the announced node first, and `ROLE` confirms it. What the old master
//! took in between is refused by the WAIT guard ([`super::guard`]), which is told what each master
//! resolved says about its replicas, and asks again every few seconds.
//!
//! [`SentinelConnection`] holds two multiplexed connections to the current master: one for pushes
//! and one for everything else ([`SentinelConnection::control`]). When a command on
//! it fails in a way that says the master may have changed — the connection broke or timed out, or
//! the node answers `READONLY` (it was demoted), `MASTERDOWN` or `LOADING` — the connection is dropped
//! and the next command asks the sentinels again. The command that failed is not retried here: the
//! lane retries its batch with backoff ([`crate::pipeline::lane`]), so the retry lands on the new master
//! once Sentinel has promoted one.
//!
//! Written by hand rather than with the crate's `SentinelClient`, which, under native-tls, connects to
//! the master without the configured CA and client certificate (see [`super::node`]); the protocol
//! is small: `SENTINEL GET-MASTER-ADDR-BY-NAME`, then `ROLE` on the node named, as Sentinel's client
//! guidelines describe. Sentinel addresses may carry a password in a URL: they are logged only
//! through [`crate::redact::redact_url`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use super::guard::{WaitGuard, REEVALUATE_EVERY};
use super::masters::MasterChanges;
use super::node::NodeSettings;

/// A connection to whichever node the sentinels currently name as master. Cheap to clone; clones
/// share the connection and its re-resolution.
///
/// Each master is reached over two connections: one for pushes, whose `WAIT`s hold it up for up to
/// `wait_timeout_ms` each, and one for everything else ([`SentinelConnection::control`]: lease
/// renewals, lag writes, status), which therefore never waits behind a `WAIT`.
#[derive(Clone)]
pub struct SentinelConnection {
    shared: Arc<Shared>,
    control: bool,
}

struct Shared {
    master_name: String,
    sentinels: Vec<String>,
    sentinel_settings: NodeSettings,
    master_settings: NodeSettings,
    current: Mutex<Current>,
    /// One resolution at a time: lanes that fail together wait for one answer instead of asking
    /// the sentinels once each.
    resolving: tokio::sync::Mutex<()>,
    /// The sentinel that answered last is asked first next time.
    preferred: AtomicUsize,
    /// Told of every master resolved after the first.
    changes: MasterChanges,
    /// Told what each master resolved says about its replicas.
    guard: Arc<WaitGuard>,
    /// The master the last `+switch-master` named, tried first at the next resolution.
    announced: Mutex<Option<String>>,
}

#[derive(Default)]
struct Current {
    master: Option<Master>,
    generation: u64,
}

#[derive(Clone)]
struct Master {
    address: String,
    conn: MultiplexedConnection,
    control: MultiplexedConnection,
    generation: u64,
    resolved: Instant,
}

/// A master that fails the WAIT guard is asked for again at most this often: while its replicas
/// are down every push fails the guard, and asking on each would only churn connections.
const REASK_AFTER_WAIT_FAILURE: Duration = Duration::from_secs(5);

/// What one sentinel said, for `kafka2redis check`.
pub struct SentinelAnswer {
    pub sentinel: String,
    /// The master's `host:port`, or why there is none.
    pub answer: Result<String, String>,
}

impl SentinelConnection {
    /// Resolves the master once; fails when no sentinel names a reachable master.
    pub(crate) async fn connect(
        master_name: &str,
        sentinels: &[String],
        sentinel_settings: NodeSettings,
        master_settings: NodeSettings,
        changes: MasterChanges,
        guard: Arc<WaitGuard>,
    ) -> RedisResult<SentinelConnection> {
        let conn = SentinelConnection {
            control: false,
            shared: Arc::new(Shared {
                master_name: master_name.to_string(),
                sentinels: sentinels.to_vec(),
                sentinel_settings,
                master_settings,
                current: Mutex::new(Current::default()),
                resolving: tokio::sync::Mutex::new(()),
                preferred: AtomicUsize::new(0),
                changes,
                guard,
                announced: Mutex::new(None),
            }),
        };
        let master = conn.master().await?;
        conn.shared.guard.announce_unguarded_master(&master.address);
        for sentinel in sentinels {
            tokio::spawn(follow_switches(
                Arc::downgrade(&conn.shared),
                sentinel.clone(),
            ));
        }
        if conn.shared.guard.follows_topology() {
            tokio::spawn(follow_replicas(Arc::downgrade(&conn.shared)));
        }
        Ok(conn)
    }

    /// The same master, over the connection that carries no pushes (and so no `WAIT`).
    pub fn control(&self) -> SentinelConnection {
        SentinelConnection {
            shared: self.shared.clone(),
            control: true,
        }
    }

    /// The master in use, `host:port`; `None` while it is being resolved again.
    pub fn master_address(&self) -> Option<String> {
        self.lock().master.as_ref().map(|m| m.address.clone())
    }

    /// Asks every sentinel for the master, for `check`.
    pub async fn survey(&self) -> Vec<SentinelAnswer> {
        let mut answers = Vec::new();
        for sentinel in &self.shared.sentinels {
            let answer = match self.ask(sentinel).await {
                Ok(Some(master)) => Ok(master),
                Ok(None) => Err(format!(
                    "does not know a master named {:?}",
                    self.shared.master_name
                )),
                Err(e) => Err(e.to_string()),
            };
            answers.push(SentinelAnswer {
                sentinel: sentinel.clone(),
                answer,
            });
        }
        answers
    }

    /// Called when the master fails the WAIT guard: a master cut off from its replicas may have
    /// been replaced while it still accepts writes, so the sentinels are asked again (at most every
    /// [`REASK_AFTER_WAIT_FAILURE`]).
    pub(crate) fn replicas_missing(&self) {
        let mut current = self.lock();
        if current
            .master
            .as_ref()
            .is_some_and(|m| m.resolved.elapsed() >= REASK_AFTER_WAIT_FAILURE)
        {
            let master = current.master.take().expect("checked above");
            warn!(master = %master.address, name = %self.shared.master_name,
                  "Redis master lacks the replicas the WAIT guard needs; asking the sentinels again");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        // A panic while holding this lock cannot leave it inconsistent (it only swaps an Option).
        self.shared
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current master, resolved first if there is none.
    async fn master(&self) -> RedisResult<Master> {
        if let Some(master) = self.lock().master.clone() {
            return Ok(master);
        }
        let _resolving = self.shared.resolving.lock().await;
        if let Some(master) = self.lock().master.clone() {
            return Ok(master); // another lane resolved it while this one waited
        }
        let (address, conn) = self.resolve().await?;
        let control = self.shared.master_settings.connect(&address).await?;
        let mut master = Master {
            address,
            conn,
            control,
            generation: 0,
            resolved: Instant::now(),
        };
        // Before the first push to it: a new master may have a replica the last one lacked.
        observe_replicas(&self.shared.guard, &master).await;
        {
            let mut current = self.lock();
            current.generation += 1;
            master.generation = current.generation;
            current.master = Some(master.clone());
        }
        info!(master = %master.address, name = %self.shared.master_name, "Redis master resolved through Sentinel");
        if master.generation > 1 {
            // Possibly the same node after a dropped connection; watchers only re-read.
            self.shared.changes.announce();
        }
        Ok(master)
    }

    /// Drops `master` after a failure that suggests it is no longer the master (unless a newer one
    /// has replaced it already).
    fn failed(&self, master: &Master, error: &RedisError) {
        if !master_may_have_changed(error) {
            return;
        }
        let mut current = self.lock();
        if current.generation == master.generation && current.master.is_some() {
            current.master = None;
            warn!(master = %master.address, name = %self.shared.master_name, %error,
                  "Redis master failed; asking the sentinels again before the next push");
        }
    }

    /// A sentinel announced that `master_name` moved to `to`: drop the current master unless it
    /// is `to` already, so that no further write reaches the node being demoted.
    fn switched(&self, to: &str) {
        *self
            .shared
            .announced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(to.to_string());
        let mut current = self.lock();
        if let Some(master) = current.master.take_if(|m| m.address != to) {
            warn!(from = %master.address, to, name = %self.shared.master_name,
                  "Sentinel announced a new master: dropping the old one");
        }
    }

    /// Asks every sentinel, and takes the master most of those that answer name — after the one a
    /// `+switch-master` announced, if any — provided it confirms with `ROLE` that it is the master;
    /// a stale or misconfigured sentinel does not win by answering first.
    async fn resolve(&self) -> RedisResult<(String, MultiplexedConnection)> {
        let count = self.shared.sentinels.len();
        let start = self.shared.preferred.load(Ordering::Relaxed) % count.max(1);
        let order: Vec<usize> = (0..count).map(|i| (start + i) % count).collect();
        // Answers as they come; once one master has a majority of all sentinels, no answer still
        // outstanding can change the outcome, so a slow or unreachable sentinel is not waited for.
        let mut asking: futures_util::stream::FuturesUnordered<_> = order
            .iter()
            .map(|&index| async move { (index, self.ask(&self.shared.sentinels[index]).await) })
            .collect();
        let mut problems = Vec::new();
        let mut auth_failed = false;
        let mut unknown = 0;
        // Each named master with the sentinels that named it, in the order first named.
        let mut named: Vec<(String, Vec<usize>)> = Vec::new();
        while let Some((index, answer)) = asking.next().await {
            let shown = crate::redact::redact_url(&self.shared.sentinels[index]);
            match answer {
                Ok(Some(address)) => match named.iter_mut().find(|(a, _)| *a == address) {
                    Some((_, by)) => by.push(index),
                    None => named.push((address, vec![index])),
                },
                Ok(None) => {
                    unknown += 1;
                    problems.push(format!(
                        "sentinel {shown} knows no master named {:?}",
                        self.shared.master_name
                    ));
                }
                Err(e) => {
                    auth_failed |= super::is_auth_error(&e);
                    problems.push(format!("sentinel {shown}: {e}"));
                }
            }
            if named.iter().any(|(_, by)| by.len() * 2 > count) {
                break;
            }
        }
        drop(asking);
        // Most votes first; a tie keeps the order of the preferred sentinel.
        let rank = |by: &[usize]| order.iter().position(|i| by.contains(i));
        named.sort_by_key(|(_, by)| (std::cmp::Reverse(by.len()), rank(by)));
        if named.len() > 1 {
            let views: Vec<String> = named
                .iter()
                .map(|(address, by)| format!("{address} ({} sentinel(s))", by.len()))
                .collect();
            warn!(name = %self.shared.master_name, answers = %views.join(", "),
                  "the sentinels name different masters: taking the one most of them name, if ROLE confirms it");
        }
        let announced = self
            .shared
            .announced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let mut candidates: Vec<(String, Option<usize>)> = Vec::new();
        if let Some(address) = announced {
            candidates.push((address, None));
        }
        for (address, by) in named {
            if !candidates.iter().any(|(a, _)| *a == address) {
                candidates.push((address, by.first().copied()));
            }
        }
        for (address, sentinel) in candidates {
            match self.confirm_master(&address).await {
                Ok(conn) => {
                    if let Some(index) = sentinel {
                        self.shared.preferred.store(index, Ordering::Relaxed);
                    }
                    return Ok((address, conn));
                }
                Err(e) => {
                    auth_failed |= super::is_auth_error(&e);
                    let by = match sentinel {
                        Some(index) => format!(
                            "sentinel {} names",
                            crate::redact::redact_url(&self.shared.sentinels[index])
                        ),
                        None => "+switch-master announced".to_string(),
                    };
                    problems.push(format!("{by} {address}: {e}"));
                }
            }
        }
        let kind = if auth_failed {
            ErrorKind::AuthenticationFailed
        } else if unknown == count && count > 0 {
            ErrorKind::MasterNameNotFoundBySentinel
        } else {
            ErrorKind::Io
        };
        Err(RedisError::from((
            kind,
            "no sentinel named a reachable master",
            problems.join("; "),
        )))
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME`: `Some("host:port")`, or `None` if the name is unknown.
    async fn ask(&self, sentinel: &str) -> RedisResult<Option<String>> {
        let mut conn = self.shared.sentinel_settings.connect(sentinel).await?;
        let answer: Option<(String, u16)> = ::redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.shared.master_name)
            .query_async(&mut conn)
            .await?;
        Ok(answer.map(|(host, port)| format!("{host}:{port}")))
    }

    /// Connects to the named node and checks with `ROLE` that it really is a master: a sentinel
    /// that has not yet seen a failover can name a node that was demoted.
    async fn confirm_master(&self, address: &str) -> RedisResult<MultiplexedConnection> {
        let mut conn = self.shared.master_settings.connect(address).await?;
        let role: Vec<Value> = ::redis::cmd("ROLE").query_async(&mut conn).await?;
        match role.first() {
            Some(Value::BulkString(role)) if role.as_slice() == b"master" => Ok(conn),
            other => Err(RedisError::from((
                ErrorKind::Io,
                "the node is not a master",
                format!("ROLE answered {other:?}"),
            ))),
        }
    }
}

/// Reads the master's replicas for the WAIT guard every [`REEVALUATE_EVERY`] while the connection
/// lives: a replica that joins after the bridge started turns the guard on.
async fn follow_replicas(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(REEVALUATE_EVERY).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let conn = SentinelConnection {
            shared,
            control: true,
        };
        // The master currently in use; one being resolved is observed when it is.
        let master = conn.lock().master.clone();
        if let Some(master) = master {
            observe_replicas(&conn.shared.guard, &master).await;
        }
    }
}

/// How long a lost subscription to a sentinel waits before it subscribes again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Listens to one sentinel's `+switch-master` announcements while the connection lives.
async fn follow_switches(shared: Weak<Shared>, sentinel: String) {
    loop {
        let Some(conn) = shared.upgrade().map(|shared| SentinelConnection {
            shared,
            control: true,
        }) else {
            return;
        };
        let subscribed = async {
            let client = conn.shared.sentinel_settings.client(&sentinel)?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            RedisResult::Ok(pubsub)
        }
        .await;
        match subscribed {
            Ok(mut pubsub) => {
                let name = conn.shared.master_name.clone();
                // Hold only a weak reference while waiting, so that the subscription ends when
                // the connection is dropped.
                drop(conn);
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    // "<name> <old ip> <old port> <new ip> <new port>"
                    let payload: String = message.get_payload().unwrap_or_default();
                    let words: Vec<&str> = payload.split_whitespace().collect();
                    if let [switched, _, _, ip, port] = words.as_slice() {
                        if *switched == name {
                            let Some(shared) = shared.upgrade() else {
                                return;
                            };
                            SentinelConnection {
                                shared,
                                control: true,
                            }
                            .switched(&format!("{ip}:{port}"));
                        }
                    }
                }
                debug!(sentinel = %crate::redact::redact_url(&sentinel),
                       "subscription to +switch-master ended; subscribing again");
            }
            Err(e) => {
                let secrets = crate::redact::url_passwords(&sentinel);
                drop(conn);
                debug!(sentinel = %crate::redact::redact_url(&sentinel),
                       error = %crate::redact::scrub(&e.to_string(), &secrets),
                       "cannot subscribe to +switch-master; trying again");
            }
        }
        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
    }
}

/// Errors after which the master is asked for again: the connection is gone or hangs, or the
/// node says it is not (or not yet) a writable master.
fn master_may_have_changed(error: &RedisError) -> bool {
    use ::redis::ServerErrorKind as S;
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(S::ReadOnly | S::MasterDown | S::BusyLoading)
        )
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut master = self.master().await?;
            let conn = if self.control {
                &mut master.control
            } else {
                &mut master.conn
            };
            let result = conn.req_packed_command(cmd).await;
            if let Err(e) = &result {
                self.failed(&master, e);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut master = self.master().await?;
            let conn = if self.control {
                &mut master.control
            } else {
                &mut master.conn
            };
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &result {
                self.failed(&master, e);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.master_settings.db
    }
}

/// Tells `guard` what `master` says about its replicas (`connected_slaves` of `INFO replication`,
/// asked over the connection without `WAIT`s).
async fn observe_replicas(guard: &WaitGuard, master: &Master) {
    if !guard.follows_topology() {
        return;
    }
    let mut conn = master.control.clone();
    let info: RedisResult<String> = ::redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await;
    let replicas = info.as_ref().map(|info| {
        info.lines()
            .find_map(|line| line.strip_prefix("connected_slaves:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    });
    guard.observe_master(&master.address, replicas);
}
