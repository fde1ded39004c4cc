//! Pushing a lane's batch: one Redis round trip for the messages (plus one for dead letters, when
//! the batch has any). With the exclusive lease each push presents the lease token, which Redis
//! checks against the list's fence key in the same script: a holder that was replaced while its
//! push was on the wire is refused by Redis, not only by itself.

use ::redis::RedisError;

use super::batch::Batch;
use crate::redis::scripts::{EXACTLY_ONCE_PUSH, PUSH};
use crate::redis::RedisSink;

/// What Redis took from a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// How many of the batch's messages, from the front, are now on the list.
    pub messages: usize,
    /// The list's length after the push, when known (capped pushes report it).
    pub list_len: Option<u64>,
}

/// The lease token a push presents, and the fence key of the list it pushes to.
#[derive(Debug, Clone, Copy)]
pub struct Fence<'a> {
    pub key: &'a str,
    pub token: &'a str,
}

/// A push Redis answered: taken, or refused by the lease's fence (another instance holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced<T> {
    Taken(T),
    FencedOut,
}

/// The outcome of an exactly-once push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExactlyOnce {
    /// Pushed (what fitted) and recorded `next_offset` for the partition.
    Pushed { pushed: Pushed, next_offset: i64 },
    /// Refused: Redis records another position for the partition (`None`: none at all).
    Refused { recorded: Option<i64> },
}

/// The script's answer when the fence key holds another token.
const FENCED_OUT: i64 = -2;

impl RedisSink {
    /// Pushes the batch's messages onto its list: all of them with one `RPUSH`, or — with a cap or
    /// a fence — as many as fit, atomically, with the push script. `Ok` means Redis answered.
    pub async fn push_messages(
        &self,
        batch: &Batch,
        cap: Option<u64>,
        fence: Option<Fence<'_>>,
    ) -> Result<Fenced<Pushed>, RedisError> {
        if batch.messages() == 0 {
            return Ok(Fenced::Taken(Pushed {
                messages: 0,
                list_len: None,
            }));
        }
        let mut conn = self.conn.clone();
        if cap.is_none() && fence.is_none() {
            let mut cmd = ::redis::cmd("RPUSH");
            cmd.arg(batch.list_key());
            for element in batch.messages_iter() {
                cmd.arg(element);
            }
            let len: u64 = cmd.query_async(&mut conn).await?;
            return Ok(Fenced::Taken(Pushed {
                messages: batch.messages(),
                list_len: Some(len),
            }));
        }
        let mut invocation = PUSH.key(batch.list_key());
        let cap = cap.map(|c| c.to_string()).unwrap_or_default();
        match fence {
            Some(fence) => invocation.key(fence.key).arg(cap).arg(fence.token),
            None => invocation.arg(cap).arg(""),
        };
        for element in batch.messages_iter() {
            invocation.arg(element);
        }
        let (pushed, len): (i64, u64) = invocation.invoke_async(&mut conn).await?;
        Ok(if pushed == FENCED_OUT {
            Fenced::FencedOut
        } else {
            Fenced::Taken(Pushed {
                messages: pushed as usize,
                list_len: Some(len),
            })
        })
    }

    /// Pushes the dead-letter records among the batch's first `cut` entries. Dead-letter lists are
    /// not capped: they hold what needs a person's attention, and are rare.
    pub async fn push_dead_letters(
        &self,
        batch: &Batch,
        cut: usize,
        fence: Option<Fence<'_>>,
    ) -> Result<Fenced<()>, RedisError> {
        if batch.dead_letters_before(cut).next().is_none() {
            return Ok(Fenced::Taken(()));
        }
        let mut conn = self.conn.clone();
        let Some(fence) = fence else {
            let mut cmd = ::redis::cmd("RPUSH");
            cmd.arg(batch.dead_key());
            for record in batch.dead_letters_before(cut) {
                cmd.arg(record);
            }
            return cmd.query_async::<()>(&mut conn).await.map(Fenced::Taken);
        };
        let mut invocation = PUSH.key(batch.dead_key());
        invocation.key(fence.key).arg("").arg(fence.token);
        for record in batch.dead_letters_before(cut) {
            invocation.arg(record);
        }
        let (pushed, _): (i64, u64) = invocation.invoke_async(&mut conn).await?;
        Ok(if pushed == FENCED_OUT {
            Fenced::FencedOut
        } else {
            Fenced::Taken(())
        })
    }

    /// Exactly-once push: what fits under `cap`, and the partition's next offset recorded in the
    /// list's offsets hash in the same atomic step — unless the recorded offset is not `expected`.
    /// Dead letters are not part of it (the lane pushes them first).
    pub async fn push_exactly_once(
        &self,
        batch: &Batch,
        offsets_key: &str,
        field: &str,
        expected: Option<i64>,
        cap: Option<u64>,
        fence: Option<Fence<'_>>,
    ) -> Result<Fenced<ExactlyOnce>, RedisError> {
        let mut invocation = EXACTLY_ONCE_PUSH.key(batch.list_key());
        invocation.key(offsets_key);
        if let Some(fence) = fence {
            invocation.key(fence.key);
        }
        invocation
            .arg(field)
            .arg(expected.map(|o| o.to_string()).unwrap_or_default())
            .arg(cap.map(|c| c.to_string()).unwrap_or_default())
            .arg(batch.messages())
            .arg(batch.last_offset().map_or(0, |o| o + 1));
        for element in batch.messages_iter() {
            invocation.arg(element);
        }
        for offset in batch.message_offsets() {
            invocation.arg(offset);
        }
        if let Some(fence) = fence {
            invocation.arg(fence.token);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<::redis::Value> = invocation.invoke_async(&mut conn).await?;
        let int = |v: &::redis::Value| -> Result<i64, RedisError> {
            Ok(::redis::from_redis_value_ref(v)?)
        };
        let text = |v: &::redis::Value| -> Result<String, RedisError> {
            Ok(::redis::from_redis_value_ref(v)?)
        };
        match reply.as_slice() {
            [status, _] if int(status)? == FENCED_OUT => Ok(Fenced::FencedOut),
            [status, recorded] if int(status)? == -1 => Ok(Fenced::Taken(ExactlyOnce::Refused {
                recorded: text(recorded)?.parse().ok(),
            })),
            [pushed, len, next] => Ok(Fenced::Taken(ExactlyOnce::Pushed {
                pushed: Pushed {
                    messages: int(pushed)? as usize,
                    list_len: Some(int(len)? as u64),
                },
                next_offset: text(next)?.parse().map_err(|_| {
                    RedisError::from((
                        ::redis::ErrorKind::UnexpectedReturnType,
                        "exactly-once script: bad next offset",
                    ))
                })?,
            })),
            _ => Err(RedisError::from((
                ::redis::ErrorKind::UnexpectedReturnType,
                "exactly-once script: unexpected reply",
            ))),
        }
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
