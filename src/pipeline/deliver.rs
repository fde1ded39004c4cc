//! Pushing a lane's batch: one Redis round trip for the messages (plus one for dead letters, when
//! the batch has any). With the exclusive lease each push presents the holder's fence value, which
//! Redis checks against the list's fence key in the same atomic step: a holder that was replaced
//! while its push was on the wire is refused by Redis, not only by itself. Outside Redis
//! Cluster that step is a transaction whose checks follow the plain push
//! ([`super::deliver_checked`]); on Cluster, a script that checks, then pushes.
//!
//! A script checks every key it writes before its first write, so it is applied whole or not at
//! all: a key of another type ([`Refusal::WrongType`]) or a fence that does not hold the holder's
//! value ([`Refusal::Fence`]) refuses the push before anything landed, and the lane may send the
//! same batch again without duplicating any of it.
//!
//! A job envelope's list is written as its framework's own client writes it ([`ListWrites`]): at
//! the end its workers expect, with the companion write in the same atomic step — except
//! Sidekiq's `SADD queues` on Redis Cluster, where that set lives in another slot than the list:
//! it follows the push as its own command.

use std::time::Duration;

use ::redis::{RedisError, Value};
use tracing::{error, warn};

use super::batch::Batch;
use super::jobs::{Companion, JobTopic, PushEnd};
use crate::config::TopicConfig;
use crate::logging::RateLimit;
use crate::redis::scripts::{EXACTLY_ONCE_PUSH, PUSH, WRONG_TYPE};
use crate::redis::RedisSink;

/// Failed `SADD`s after a push (Cluster) log at most once per this interval.
static ADD_TO_SET_ERRORS: RateLimit = RateLimit::new(Duration::from_secs(5));

/// How a topic's messages go onto its list: the end its workers take them from, and what else
/// they need written (a job framework's companion key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListWrites {
    pub end: PushEnd,
    pub companion: Companion,
}

impl ListWrites {
    /// Raw, legacy and json: `RPUSH`, nothing else; workers pop the head.
    pub const PLAIN: ListWrites = ListWrites {
        end: PushEnd::Tail,
        companion: Companion::None,
    };

    pub fn for_topic(topic: &TopicConfig) -> ListWrites {
        match JobTopic::for_topic(topic) {
            Some(jobs) => {
                let framework = jobs.framework();
                ListWrites {
                    end: framework.push_end(),
                    companion: framework.companion(&topic.list_key, jobs.queue()),
                }
            }
            None => ListWrites::PLAIN,
        }
    }

    pub(super) fn command(&self) -> &'static str {
        match self.end {
            PushEnd::Head => "LPUSH",
            PushEnd::Tail => "RPUSH",
        }
    }
}

/// A companion write as the push scripts take it (see `redis/scripts/list_writes.lua`).
pub(super) struct ScriptCompanion<'c> {
    pub(super) kind: &'static str,
    pub(super) key: &'c str,
    pub(super) member: &'c str,
}

impl<'c> ScriptCompanion<'c> {
    fn of(companion: &'c Companion) -> Option<ScriptCompanion<'c>> {
        match companion {
            Companion::None => None,
            Companion::NotifyEachJob { key } => Some(ScriptCompanion {
                kind: "notify",
                key,
                member: "",
            }),
            Companion::AddToSet { set, member } => Some(ScriptCompanion {
                kind: "sadd",
                key: set,
                member,
            }),
        }
    }
}

/// A set and member to `SADD` after the push, outside the script.
pub(super) type AddAfterPush<'c> = (&'c str, &'c str);

/// What Redis took from a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// How many of the batch's messages, from the front, are now on the list.
    pub messages: usize,
    /// The list's length after the push, when known (capped pushes report it).
    pub list_len: Option<u64>,
}

/// The fence a push presents while the lease is held: the holder's fence value
/// (`"<fencing number> <token>"`, [`crate::lease`]) and the fence key of the list it pushes to.
#[derive(Debug, Clone, Copy)]
pub struct Fence<'a> {
    pub key: &'a str,
    pub token: &'a str,
}

/// What a push's checks rest on — the cap, the lease's fence and the exactly-once record — and the
/// companion write made for what stayed (each when given): the checked transaction's script
/// ([`super::deliver_checked`]) takes them after the push.
pub(super) struct Checks<'a> {
    pub cap: Option<u64>,
    pub fence: Option<Fence<'a>>,
    pub chain: Option<Chain<'a>>,
    pub companion: Option<ScriptCompanion<'a>>,
}

/// The hash field a push checks and moves on in the same atomic step.
#[derive(Debug, Clone, Copy)]
pub(super) enum Chain<'a> {
    /// Exactly-once: the partition's offset record.
    Record(OffsetRecord<'a>),
    /// At-least-once with several batches in flight: the lane's sequence field.
    Sequence(Sequence<'a>),
}

/// An exactly-once push's offset record: the list's offsets hash, the partition's field in it,
/// and the next offset the lane believes Redis records there (`None`: no record).
#[derive(Debug, Clone, Copy)]
pub struct OffsetRecord<'a> {
    pub key: &'a str,
    pub field: &'a str,
    pub expected: Option<i64>,
}

/// Where a lane chains its batches and what one push expects and leaves there.
#[derive(Debug, Clone, Copy)]
pub struct Sequence<'a> {
    /// The list's sequence hash (same Cluster slot as the list).
    pub key: &'a str,
    /// The lane's field in it.
    pub field: &'a str,
    /// What the field must hold for the push to go ahead (`None`: anything — nothing the lane
    /// sent before is unsettled).
    pub expects: Option<&'a str>,
    /// What the field holds once the whole batch is in.
    pub sets: &'a str,
}

/// A push Redis answered: taken, or refused before the script wrote anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    Taken(T),
    Refused(Refusal),
}

/// Why a push script wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The list's fence does not hold the holder's fence value: another instance holds the lease,
    /// or the fence key is gone (deleted, evicted, lost in a failover).
    Fence,
    /// A key the push writes holds another type (another application's key, say).
    WrongType(WrongType),
}

/// A key that holds another type than the one the bridge writes there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongType {
    pub key: String,
    /// What `TYPE` says it is.
    pub found: String,
    /// What the bridge writes there.
    pub wanted: String,
}

/// The outcome of an exactly-once push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExactlyOnce {
    /// Pushed (what fitted) and recorded `next_offset` for the partition.
    Pushed { pushed: Pushed, next_offset: i64 },
    /// Refused: Redis records another position for the partition (`None`: none at all).
    Refused { recorded: Option<i64> },
}

/// Adds the optional fence key, then the optional companion key, after the scripts' fixed keys
/// (the scripts find them by the token and the companion's kind); returns the companion's kind
/// and member as the scripts take them ("" for none).
pub(super) fn fence_and_companion_keys<'c>(
    invocation: &mut ::redis::ScriptInvocation<'_>,
    fence: Option<Fence<'_>>,
    in_script: Option<ScriptCompanion<'c>>,
) -> (&'c str, &'c str) {
    if let Some(fence) = fence {
        invocation.key(fence.key);
    }
    match in_script {
        Some(c) => {
            invocation.key(c.key);
            (c.kind, c.member)
        }
        None => ("", ""),
    }
}

/// The partition's next offset once all of `batch` is in: past its last entry, or — for a batch
/// without entries, which only confirms the record under a later `WAIT` — the recorded one.
pub(super) fn next_after(batch: &Batch, record: OffsetRecord<'_>) -> i64 {
    batch
        .last_offset()
        .map(|o| o + 1)
        .or(record.expected)
        .unwrap_or(0)
}

/// The scripts' first reply element when the fence key does not hold the fence value.
pub(super) const FENCED_OUT: i64 = -2;

/// The refusal a script's reply carries, if it is one: `{-2, _}` (fence) or
/// `{-3, key, type found, type wanted}` ([`WRONG_TYPE`]).
pub(super) fn refusal(reply: &[Value]) -> Result<Option<Refusal>, RedisError> {
    Ok(match reply {
        [status, _] if int(status)? == FENCED_OUT => Some(Refusal::Fence),
        [status, key, found, wanted] if int(status)? == WRONG_TYPE => {
            Some(Refusal::WrongType(WrongType {
                key: text(key)?,
                found: text(found)?,
                wanted: text(wanted)?,
            }))
        }
        _ => None,
    })
}

/// A list push script's reply: a refusal, or `{pushed, length after}`.
pub(super) fn pushed_or_refused(reply: &[Value]) -> Result<Answer<Pushed>, RedisError> {
    match (refusal(reply)?, reply) {
        (Some(refused), _) => Ok(Answer::Refused(refused)),
        (None, [pushed, len]) => Ok(Answer::Taken(Pushed {
            messages: int(pushed)? as usize,
            list_len: Some(int(len)? as u64),
        })),
        _ => Err(unexpected("push script: unexpected reply")),
    }
}

/// The head the job and stream push scripts share: the offset record's key and the fence key (when
/// given) after the scripts' own keys, then the cap, the fence value, the record's field and the
/// next offset the lane believes is recorded (each `""` when absent).
pub(super) fn recorded_push_head(
    invocation: &mut ::redis::ScriptInvocation<'_>,
    record: Option<OffsetRecord<'_>>,
    cap: Option<u64>,
    fence: Option<Fence<'_>>,
) {
    if let Some(record) = record {
        invocation.key(record.key);
    }
    if let Some(fence) = fence {
        invocation.key(fence.key);
    }
    invocation
        .arg(cap.map(|c| c.to_string()).unwrap_or_default())
        .arg(fence.map_or("", |f| f.token))
        .arg(record.map_or("", |r| r.field))
        .arg(
            record
                .and_then(|r| r.expected)
                .map(|o| o.to_string())
                .unwrap_or_default(),
        );
}

/// The scripts' first reply element when the offset record holds another position than expected.
pub(super) const RECORDED_ELSEWHERE: i64 = -1;

/// A recording push script's reply once [`refusal`] found none: `{-1, recorded}` (the record holds
/// another position) or `{taken, length or unfinished work, next offset}`. `script` names it in
/// errors.
pub(super) fn recorded_push(
    reply: &[Value],
    script: &'static str,
) -> Result<Answer<ExactlyOnce>, RedisError> {
    match reply {
        [status, recorded] if int(status)? == RECORDED_ELSEWHERE => {
            Ok(Answer::Taken(ExactlyOnce::Refused {
                recorded: text(recorded)?.parse().ok(),
            }))
        }
        [taken, len, next] => Ok(Answer::Taken(ExactlyOnce::Pushed {
            pushed: Pushed {
                messages: int(taken)? as usize,
                list_len: Some(int(len)? as u64),
            },
            next_offset: text(next)?.parse().map_err(|_| unexpected(script))?,
        })),
        _ => Err(unexpected(script)),
    }
}

pub(super) fn int(v: &Value) -> Result<i64, RedisError> {
    Ok(::redis::from_redis_value_ref(v)?)
}

pub(super) fn text(v: &Value) -> Result<String, RedisError> {
    Ok(::redis::from_redis_value_ref(v)?)
}

pub(super) fn unexpected(what: &'static str) -> RedisError {
    RedisError::from((::redis::ErrorKind::UnexpectedReturnType, what))
}

impl RedisSink {
    /// Pushes the batch's messages onto its list: all of them with one `RPUSH` (or `LPUSH`), or —
    /// with a cap, a fence or a companion write — as many as fit, atomically: checked after the
    /// push in the same transaction ([`super::deliver_checked`]), or by the push script on Cluster.
    /// `Ok` means Redis answered.
    pub async fn push_messages(
        &self,
        batch: &Batch,
        writes: &ListWrites,
        cap: Option<u64>,
        fence: Option<Fence<'_>>,
    ) -> Result<Answer<Pushed>, RedisError> {
        if batch.messages() == 0 {
            return Ok(Answer::Taken(Pushed {
                messages: 0,
                list_len: None,
            }));
        }
        let (in_script, after) = self.split_companion(&writes.companion);
        if (cap.is_some() || fence.is_some() || in_script.is_some())
            && self.checks_after_push(batch)
        {
            let checks = Checks {
                cap,
                fence,
                chain: None,
                companion: in_script,
            };
            return pushed_or_refused(&self.push_checked(batch, writes, checks).await?);
        }
        let mut conn = self.conn.clone();
        let pushed = if cap.is_none() && fence.is_none() && in_script.is_none() {
            match push_command(writes.command(), batch)
                .query_async::<u64>(&mut conn)
                .await
            {
                Ok(len) => Answer::Taken(Pushed {
                    messages: batch.messages(),
                    list_len: Some(len),
                }),
                Err(e) => return self.wrong_type_or(e, batch.list_key(), "list").await,
            }
        } else {
            let mut invocation = PUSH.key(batch.list_key());
            let (kind, member) = fence_and_companion_keys(&mut invocation, fence, in_script);
            invocation
                .arg(cap.map(|c| c.to_string()).unwrap_or_default())
                .arg(fence.map_or("", |f| f.token))
                .arg(writes.command())
                .arg(kind)
                .arg(member)
                .arg("") // unsequenced: one batch of the lane at a time
                .arg("")
                .arg("");
            for element in batch.messages_iter() {
                invocation.arg(element);
            }
            let reply: Vec<Value> = invocation.invoke_async(&mut conn).await?;
            pushed_or_refused(&reply)?
        };
        if let (Some(after), Answer::Taken(p)) = (after, &pushed) {
            if p.messages > 0 {
                self.add_to_set_after_push(after).await;
            }
        }
        Ok(pushed)
    }

    /// A single command that failed: when Redis said `WRONGTYPE`, the refusal naming `key` and
    /// what it holds (nothing was written: one command is atomic); any other error as it is.
    async fn wrong_type_or<T>(
        &self,
        e: RedisError,
        key: &str,
        wanted: &str,
    ) -> Result<Answer<T>, RedisError> {
        if e.code() != Some("WRONGTYPE") {
            return Err(e);
        }
        let mut conn = self.conn.clone();
        let found: String = ::redis::cmd("TYPE").arg(key).query_async(&mut conn).await?;
        Ok(Answer::Refused(Refusal::WrongType(WrongType {
            key: key.to_string(),
            found,
            wanted: wanted.to_string(),
        })))
    }

    /// Which companion write goes into the push script, and which follows it as its own command:
    /// Sidekiq's `queues` set on Redis Cluster, where a script may only touch keys in one slot.
    pub(super) fn split_companion<'c>(
        &self,
        companion: &'c Companion,
    ) -> (Option<ScriptCompanion<'c>>, Option<AddAfterPush<'c>>) {
        match companion {
            Companion::AddToSet { set, member } if self.is_cluster() => (None, Some((set, member))),
            other => (ScriptCompanion::of(other), None),
        }
    }

    /// `SADD set member` after a push that landed. It only feeds Sidekiq's Web UI and queue
    /// listing, and every batch repeats it, so a failure is logged and not retried: retrying the
    /// push would duplicate the jobs.
    pub(super) async fn add_to_set_after_push(&self, (set, member): AddAfterPush<'_>) {
        let mut conn = self.conn.clone();
        let added: Result<(), RedisError> = ::redis::cmd("SADD")
            .arg(set)
            .arg(member)
            .query_async(&mut conn)
            .await;
        if let Err(e) = added {
            if let Some(held) = ADD_TO_SET_ERRORS.check() {
                if e.code() == Some("WRONGTYPE") {
                    error!(set, member, error = %e, suppressed = held,
                           "Redis key {set:?} is not a set: SADD after the push failed (the jobs are on their list); \
                            delete or rename the key so the queue is listed again");
                } else {
                    warn!(set, member, error = %e, suppressed = held,
                          "SADD after the push failed; the next batch sends it again");
                }
            }
        }
    }

    /// Pushes the dead-letter records among the batch's first `cut` entries that are not pushed
    /// yet. Dead-letter lists are not capped: they hold what needs a person's attention, and are
    /// rare.
    pub async fn push_dead_letters(
        &self,
        batch: &Batch,
        cut: usize,
        fence: Option<Fence<'_>>,
    ) -> Result<Answer<()>, RedisError> {
        if batch.dead_letters_before(cut).next().is_none() {
            return Ok(Answer::Taken(()));
        }
        let mut conn = self.conn.clone();
        let Some(fence) = fence else {
            let mut cmd = ::redis::cmd("RPUSH");
            cmd.arg(batch.dead_key());
            for record in batch.dead_letters_before(cut) {
                cmd.arg(record);
            }
            return match cmd.query_async::<()>(&mut conn).await {
                Ok(()) => Ok(Answer::Taken(())),
                Err(e) => self.wrong_type_or(e, batch.dead_key(), "list").await,
            };
        };
        let mut invocation = PUSH.key(batch.dead_key());
        invocation
            .key(fence.key)
            .arg("")
            .arg(fence.token)
            .arg(ListWrites::PLAIN.command())
            .arg("")
            .arg("")
            .arg("")
            .arg("")
            .arg("");
        for record in batch.dead_letters_before(cut) {
            invocation.arg(record);
        }
        let reply: Vec<Value> = invocation.invoke_async(&mut conn).await?;
        Ok(match refusal(&reply)? {
            Some(refused) => Answer::Refused(refused),
            None => Answer::Taken(()),
        })
    }

    /// Exactly-once push: what fits under `cap`, and the partition's next offset recorded in the
    /// list's offsets hash in the same atomic step (with the companion write) — unless the recorded
    /// offset is not `record.expected`. Dead letters are not part of it (the lane pushes them first).
    pub async fn push_exactly_once(
        &self,
        batch: &Batch,
        writes: &ListWrites,
        record: OffsetRecord<'_>,
        cap: Option<u64>,
        fence: Option<Fence<'_>>,
    ) -> Result<Answer<ExactlyOnce>, RedisError> {
        let (in_script, after) = self.split_companion(&writes.companion);
        if self.checks_after_push(batch) {
            let checks = Checks {
                cap,
                fence,
                chain: Some(Chain::Record(record)),
                companion: in_script,
            };
            let reply = self.push_checked(batch, writes, checks).await?;
            if let Some(refused) = refusal(&reply)? {
                return Ok(Answer::Refused(refused));
            }
            return recorded_push(&reply, "checked exactly-once push: unexpected reply");
        }
        let mut invocation = EXACTLY_ONCE_PUSH.key(batch.list_key());
        invocation.key(record.key);
        let (kind, member) = fence_and_companion_keys(&mut invocation, fence, in_script);
        invocation
            .arg(record.field)
            .arg(record.expected.map(|o| o.to_string()).unwrap_or_default())
            .arg(cap.map(|c| c.to_string()).unwrap_or_default())
            .arg(batch.messages())
            .arg(next_after(batch, record))
            .arg(writes.command())
            .arg(kind)
            .arg(member)
            .arg(fence.map_or("", |f| f.token));
        for element in batch.messages_iter() {
            invocation.arg(element);
        }
        for offset in batch.message_offsets() {
            invocation.arg(offset);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = invocation.invoke_async(&mut conn).await?;
        if let Some(refused) = refusal(&reply)? {
            return Ok(Answer::Refused(refused));
        }
        if let Some(after) = after {
            if matches!(reply.first(), Some(Value::Int(n)) if *n > 0) {
                self.add_to_set_after_push(after).await;
            }
        }
        recorded_push(&reply, "exactly-once push script: unexpected reply")
    }

    /// The recorded next offsets for `fields` of one list's offsets hash (`None` where absent).
    pub async fn recorded_offsets(
        &self,
        offsets_key: &str,
        fields: &[String],
    ) -> Result<Vec<Option<i64>>, RedisError> {
        let mut conn = self.conn.clone();
        let values: Vec<Option<String>> = ::redis::cmd("HMGET")
            .arg(offsets_key)
            .arg(fields)
            .query_async(&mut conn)
            .await?;
        Ok(values
            .into_iter()
            .map(|v| v.and_then(|v| v.parse().ok()))
            .collect())
    }

    /// The list's length, for deciding when a paused partition may resume.
    pub async fn list_len(&self, key: &str) -> Result<u64, RedisError> {
        let mut conn = self.conn.clone();
        ::redis::cmd("LLEN").arg(key).query_async(&mut conn).await
    }
}

/// `RPUSH`/`LPUSH` of the batch's message elements onto its list, sized for them up front: each
/// element is copied into the command once, not again each time a growing buffer moves.
pub(super) fn push_command(command: &str, batch: &Batch) -> ::redis::Cmd {
    let mut cmd = ::redis::Cmd::with_capacity(
        batch.len() + 2,
        command.len() + batch.list_key().len() + batch.bytes(),
    );
    cmd.arg(command).arg(batch.list_key());
    for element in batch.messages_iter() {
        cmd.arg(element);
    }
    cmd
}

#[cfg(test)]
pub(super) mod tests;
