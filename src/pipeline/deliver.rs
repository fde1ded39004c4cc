//! Pushing a lane's batch: one Redis round trip for the messages (plus one for dead letters, when
//! the batch has any).

use ::redis::RedisError;

use super::batch::Batch;
use crate::redis::scripts::{CAPPED_PUSH, EXACTLY_ONCE_PUSH};
use crate::redis::RedisSink;

/// What Redis took from a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// How many of the batch's messages, from the front, are now on the list.
    pub messages: usize,
    /// The list's length after the push, when known (capped pushes report it).
    pub list_len: Option<u64>,
}

/// The outcome of an exactly-once push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExactlyOnce {
    /// Pushed (what fitted) and recorded `next_offset` for the partition.
    Pushed { pushed: Pushed, next_offset: i64 },
    /// Refused: Redis records another position for the partition (`None`: none at all).
    Refused { recorded: Option<i64> },
}

impl RedisSink {
    /// Pushes the batch's messages onto its list: all of them with one `RPUSH`, or — with a cap —
    /// as many as fit, atomically, with the capped-push script. `Ok` means Redis acknowledged.
    pub async fn push_messages(
        &self,
        batch: &Batch,
        cap: Option<u64>,
    ) -> Result<Pushed, RedisError> {
        if batch.messages() == 0 {
            return Ok(Pushed {
                messages: 0,
                list_len: None,
            });
        }
        let mut conn = self.conn.clone();
        match cap {
            None => {
                let mut cmd = ::redis::cmd("RPUSH");
                cmd.arg(batch.list_key());
                for element in batch.messages_iter() {
                    cmd.arg(element);
                }
                let len: u64 = cmd.query_async(&mut conn).await?;
                Ok(Pushed {
                    messages: batch.messages(),
                    list_len: Some(len),
                })
            }
            Some(cap) => {
                let mut invocation = CAPPED_PUSH.key(batch.list_key());
                invocation.arg(cap);
                for element in batch.messages_iter() {
                    invocation.arg(element);
                }
                let (pushed, len): (usize, u64) = invocation.invoke_async(&mut conn).await?;
                Ok(Pushed {
                    messages: pushed,
                    list_len: Some(len),
                })
            }
        }
    }

    /// Pushes the dead-letter records among the batch's first `cut` entries. Dead-letter lists are
    /// not capped: they hold what needs a person's attention, and are rare.
    pub async fn push_dead_letters(&self, batch: &Batch, cut: usize) -> Result<(), RedisError> {
        let mut cmd = ::redis::cmd("RPUSH");
        cmd.arg(batch.dead_key());
        let mut any = false;
        for record in batch.dead_letters_before(cut) {
            cmd.arg(record);
            any = true;
        }
        if !any {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        cmd.query_async::<()>(&mut conn).await
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
    ) -> Result<ExactlyOnce, RedisError> {
        let mut invocation = EXACTLY_ONCE_PUSH.key(batch.list_key());
        invocation.key(offsets_key);
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
        let mut conn = self.conn.clone();
        let reply: Vec<::redis::Value> = invocation.invoke_async(&mut conn).await?;
        let int = |v: &::redis::Value| -> Result<i64, RedisError> {
            Ok(::redis::from_redis_value_ref(v)?)
        };
        let text = |v: &::redis::Value| -> Result<String, RedisError> {
            Ok(::redis::from_redis_value_ref(v)?)
        };
        match reply.as_slice() {
            [status, recorded] if int(status)? == -1 => Ok(ExactlyOnce::Refused {
                recorded: text(recorded)?.parse().ok(),
            }),
            [pushed, len, next] => Ok(ExactlyOnce::Pushed {
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
            }),
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
