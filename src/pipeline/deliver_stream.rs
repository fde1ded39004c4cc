//! Adding a batch to a stream: one script call per batch (`redis/scripts/stream_push.lua`), which
//! checks the keys' types and the lease's fence, trims what every consumer group has finished,
//! adds the entries that fit under the cap (counted over the groups' unfinished work,
//! [`crate::redis::stream_groups`]) and — exactly-once — records the partition's next offset in
//! the same atomic step.
//!
//! Each element of the batch is its entry's field names and values in turn
//! ([`super::stream_entry`]), handed to `XADD` as they are.

use ::redis::{RedisError, Value};

use super::batch::{parts, Batch};
use super::deliver::{
    recorded_push, recorded_push_head, refusal, Answer, ExactlyOnce, Fence, OffsetRecord,
};
use crate::config::Structure;
use crate::redis::scripts::STREAM_PUSH;
use crate::redis::{stream_groups, RedisSink};

impl RedisSink {
    /// Adds the batch's entries to its stream (what fits under `cap`), recording the partition's
    /// next offset with `record` in the same step when given.
    pub async fn push_stream(
        &self,
        batch: &Batch,
        record: Option<OffsetRecord<'_>>,
        cap: Option<u64>,
        fence: Option<Fence<'_>>,
    ) -> Result<Answer<ExactlyOnce>, RedisError> {
        let mut invocation = STREAM_PUSH.key(batch.list_key());
        recorded_push_head(&mut invocation, record, cap, fence);
        invocation.arg(batch.last_offset().map_or(0, |o| o + 1));
        for (element, offset) in batch.messages_iter().zip(batch.message_offsets()) {
            invocation.arg(offset).arg(parts(element).count());
            for part in parts(element) {
                invocation.arg(part);
            }
        }
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = invocation.invoke_async(&mut conn).await?;
        if let Some(why) = refusal(&reply)? {
            return Ok(Answer::Refused(why));
        }
        recorded_push(&reply, "stream push script: unexpected reply")
    }

    /// What waits at `key` for the cap: a list's length, or a stream's unfinished work
    /// ([`stream_groups::unfinished`]).
    pub async fn waiting(&self, key: &str, structure: Structure) -> Result<u64, RedisError> {
        match structure {
            Structure::List => self.list_len(key).await,
            Structure::Stream => {
                // A script, which the push connection would follow with the WAIT guard's `WAIT`.
                let mut conn = self.connection();
                stream_groups::waiting(&mut conn, key, structure).await
            }
        }
    }
}

#[cfg(test)]
mod tests;
