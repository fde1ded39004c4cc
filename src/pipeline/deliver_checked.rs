//! A list push whose checks follow it inside one `MULTI`/`EXEC`: the plain variadic `RPUSH` (or
//! `LPUSH`) of every element, then a small script (`redis/scripts/checked_push.lua`) that checks
//! the lease's fence, the exactly-once offset record and the cap, takes back off the list whatever
//! they refuse, records the partition's next offset and makes a job framework's companion write.
//!
//! A push script that carries the elements as its arguments costs Redis each element three times
//! over (the argument, a Lua string, the command's argument again); here the elements go through
//! Redis' plain push, and the script sees only a count. The transaction is one atomic step, as
//! the script was: nothing runs between the push and the checks, a blocked worker is served only
//! after `EXEC`, and a replica or the AOF receives the transaction whole. So a refused push is
//! never seen by anyone, and a lane may send the same batch again without duplicating any of it.
//!
//! The script goes as `EVAL`, never `EVALSHA`: inside a transaction an unknown script fails only
//! when `EXEC` runs it — after the push — so a new master without the script cached would keep a
//! push nobody checked. Redis Cluster's client sends no transactions, so on Cluster the push
//! scripts of [`super::deliver`] remain.

use std::fmt::Write as _;

use ::redis::aio::ConnectionLike;
use ::redis::{RedisError, Value};

use super::batch::Batch;
use super::deliver::{int, next_after, push_command, text, unexpected, Chain, Checks, ListWrites};
use crate::redis::scripts::CHECKED_PUSH;
use crate::redis::RedisSink;

/// The first element of the script's reply when a check failed for a reason no check names (it
/// took the push back): `{-5, error}`.
const CHECK_FAILED: i64 = -5;

impl RedisSink {
    /// Whether `batch` can go as a checked transaction: it has messages, and the deployment is not
    /// a Cluster.
    pub(super) fn checks_after_push(&self, batch: &Batch) -> bool {
        batch.messages() > 0 && !self.is_cluster()
    }

    /// Pushes every message of `batch` and runs the checks in the same transaction; returns the
    /// script's reply, shaped as the push scripts' (`{pushed, length}`, with the next offset when
    /// a record is kept, or a refusal), for their readers.
    pub(super) async fn push_checked(
        &self,
        batch: &Batch,
        writes: &ListWrites,
        checks: Checks<'_>,
    ) -> Result<Vec<Value>, RedisError> {
        let n = batch.messages();
        let push = push_command(writes.command(), batch);
        let mut check = ::redis::cmd("EVAL");
        let chained = checks.chain.map(|chain| match chain {
            Chain::Record(record) => (record.key, record.field),
            Chain::Sequence(sequence) => (sequence.key, sequence.field),
        });
        let keys = 1
            + usize::from(checks.fence.is_some())
            + usize::from(chained.is_some())
            + usize::from(checks.companion.is_some());
        check
            .arg(CHECKED_PUSH.as_str())
            .arg(keys)
            .arg(batch.list_key());
        if let Some(fence) = checks.fence {
            check.arg(fence.key);
        }
        if let Some((key, _)) = chained {
            check.arg(key);
        }
        if let Some(companion) = &checks.companion {
            check.arg(companion.key);
        }
        check
            .arg(n)
            .arg(writes.command())
            .arg(checks.cap.map(|c| c.to_string()).unwrap_or_default())
            .arg(checks.fence.map_or("", |f| f.token))
            .arg(chained.map_or("", |(_, field)| field));
        match checks.chain {
            Some(Chain::Record(record)) => check
                .arg(record.expected.map(|o| o.to_string()).unwrap_or_default())
                .arg(next_after(batch, record))
                .arg(packed_offsets(batch, checks.cap.is_some())),
            Some(Chain::Sequence(sequence)) => check
                .arg(sequence.expects.unwrap_or_default())
                .arg(sequence.sets)
                .arg(""),
            None => check.arg("").arg("").arg(""),
        };
        match &checks.companion {
            Some(companion) => check.arg(companion.kind).arg(companion.member),
            None => check.arg("").arg(""),
        };
        check.arg(match checks.chain {
            Some(Chain::Sequence(_)) => "sequence",
            _ => "record",
        });
        let mut pipe = ::redis::pipe();
        pipe.cmd("MULTI")
            .add_command(push)
            .add_command(check)
            .cmd("EXEC");
        let mut conn = self.conn.clone();
        let mut replies = conn.req_packed_commands(&pipe, 0, 4).await?;
        // A command refused while queued (OOM, say) makes `EXEC` fail: nothing ran.
        let exec = replies
            .pop()
            .ok_or_else(|| unexpected("checked push: no reply to EXEC"))?;
        let mut results = match exec {
            Value::Array(results) if results.len() == 2 => results,
            Value::ServerError(e) => return Err(e.into()),
            _ => return Err(unexpected("checked push: unexpected reply to EXEC")),
        };
        match results.pop() {
            Some(Value::Array(reply)) => {
                if let [status, why] = reply.as_slice() {
                    if int(status)? == CHECK_FAILED {
                        let why = text(why).unwrap_or_default();
                        return Err(RedisError::from((
                            ::redis::ErrorKind::Server(::redis::ServerErrorKind::ResponseError),
                            "checked push: the checks failed and the push was taken back",
                            why,
                        )));
                    }
                }
                Ok(reply)
            }
            Some(Value::ServerError(e)) => Err(e.into()),
            _ => Err(unexpected("checked push: unexpected reply from its script")),
        }
    }
}

/// The batch's message offsets, each right-aligned in 20 characters, for the script to find the
/// first one a cap left out; empty without a cap, where every message goes in or none.
fn packed_offsets(batch: &Batch, capped: bool) -> String {
    if !capped {
        return String::new();
    }
    let mut packed = String::with_capacity(batch.messages() * 20);
    for offset in batch.message_offsets() {
        let _ = write!(packed, "{offset:>20}");
    }
    packed
}

#[cfg(test)]
mod tests;
