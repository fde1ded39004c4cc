//! Redis Sentinel: ask the sentinels which node is the master, and ask again when it stops being
//! the master.
//!
//! A planned failover does not break the old master's connections: it keeps taking writes until
//! Sentinel reconfigures it, seconds later, and then discards them. So the connection also listens
//! to every sentinel's `+switch-master` and drops the master the moment one announces a switch;
//! the next command asks the sentinels again, and `ROLE` confirms the answer. What the old master
//! took in between is refused by the WAIT guard (see [`super::wait_guard`]).
//!
//! [`SentinelConnection`] holds one multiplexed connection to the current master. When a command on
//! it fails in a way that says the master may have changed — the connection broke or timed out, or
//! the node answers `READONLY` (it was demoted), `MASTERDOWN` or `LOADING` — the connection is dropped
//! and the next command asks the sentinels again. The command that failed is not retried here: the
//! lane retries its batch with backoff ([`crate::pipeline::lane`]), so the retry lands on the new master
//! once Sentinel has promoted one.
//!
//! Written by hand rather than with the crate's `SentinelClient`, which, under native-tls, connects to
//! the master without the configured CA and client certificate (see [`super::node`]); the protocol
//! is small: `SENTINEL GET-MASTER-ADDR-BY-NAME`, then `ROLE` on the node named, as Sentinel's client
//! guidelines describe.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use super::masters::MasterChanges;
use super::node::NodeSettings;

/// A connection to whichever node the sentinels currently name as master. Cheap to clone; clones
/// share the connection and its re-resolution.
#[derive(Clone)]
pub struct SentinelConnection {
    shared: Arc<Shared>,
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
    ) -> RedisResult<SentinelConnection> {
        let conn = SentinelConnection {
            shared: Arc::new(Shared {
                master_name: master_name.to_string(),
                sentinels: sentinels.to_vec(),
                sentinel_settings,
                master_settings,
                current: Mutex::new(Current::default()),
                resolving: tokio::sync::Mutex::new(()),
                preferred: AtomicUsize::new(0),
                changes,
            }),
        };
        conn.master().await?;
        for sentinel in sentinels {
            tokio::spawn(follow_switches(
                Arc::downgrade(&conn.shared),
                sentinel.clone(),
            ));
        }
        Ok(conn)
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
        let mut current = self.lock();
        current.generation += 1;
        let master = Master {
            address,
            conn,
            generation: current.generation,
            resolved: Instant::now(),
        };
        info!(master = %master.address, name = %self.shared.master_name, "Redis master resolved through Sentinel");
        current.master = Some(master.clone());
        drop(current);
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
        let mut current = self.lock();
        if let Some(master) = current.master.take_if(|m| m.address != to) {
            warn!(from = %master.address, to, name = %self.shared.master_name,
                  "Sentinel announced a new master: dropping the old one");
        }
    }

    /// Asks the sentinels in turn; the first that names a node which confirms it is the master wins.
    async fn resolve(&self) -> RedisResult<(String, MultiplexedConnection)> {
        let count = self.shared.sentinels.len();
        let start = self.shared.preferred.load(Ordering::Relaxed) % count.max(1);
        let mut problems = Vec::new();
        let mut auth_failed = false;
        let mut unknown = 0;
        for i in 0..count {
            let index = (start + i) % count;
            let sentinel = &self.shared.sentinels[index];
            let shown = crate::redact::redact_url(sentinel);
            match self.ask(sentinel).await {
                Ok(Some(address)) => match self.confirm_master(&address).await {
                    Ok(conn) => {
                        self.shared.preferred.store(index, Ordering::Relaxed);
                        return Ok((address, conn));
                    }
                    Err(e) => {
                        auth_failed |= super::is_auth_error(&e);
                        problems.push(format!("sentinel {shown} names {address}: {e}"));
                    }
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

/// How long a lost subscription to a sentinel waits before it subscribes again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Listens to one sentinel's `+switch-master` announcements while the connection lives.
async fn follow_switches(shared: Weak<Shared>, sentinel: String) {
    loop {
        let Some(conn) = shared.upgrade().map(|shared| SentinelConnection { shared }) else {
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
                            SentinelConnection { shared }.switched(&format!("{ip}:{port}"));
                        }
                    }
                }
                debug!(%sentinel, "subscription to +switch-master ended; subscribing again");
            }
            Err(e) => {
                drop(conn);
                debug!(%sentinel, error = %e, "cannot subscribe to +switch-master; trying again");
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
            let result = master.conn.req_packed_command(cmd).await;
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
            let result = master
                .conn
                .req_packed_commands(pipeline, offset, count)
                .await;
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
