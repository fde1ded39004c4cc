//! A list push that is one of several batches of a lane in flight at once: the push script also
//! checks the lane's field in the list's sequence hash ([`crate::keys::sequence_key`]) and moves
//! it on, so a batch whose predecessor did not land whole is refused instead of overtaking it.
//! Redis runs one connection's commands in order; the check is what keeps the order when a
//! connection breaks under a window of pushes, or a client retries one of them on its own.

use ::redis::{RedisError, Value};

use super::batch::Batch;
use super::deliver::{
    fence_and_companion_keys, int, refusal, text, unexpected, Answer, Fence, ListWrites, Pushed,
};
use crate::redis::scripts::{OUT_OF_SEQUENCE, PUSH};
use crate::redis::RedisSink;

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

/// What Redis made of a sequenced push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sequenced {
    Pushed(Pushed),
    /// Refused before any write: the field held this (`None`: nothing), not what the push expected.
    OutOfSequence(Option<String>),
}

impl RedisSink {
    /// Pushes what fits of the batch's messages under `cap` with the push script, checking and
    /// moving the lane's `sequence` in the same atomic step (and the fence and companion write as
    /// [`RedisSink::push_messages`] does). The Sidekiq `SADD` that follows a push on Redis Cluster
    /// follows this one too.
    pub async fn push_sequenced(
        &self,
        batch: &Batch,
        writes: &ListWrites,
        cap: Option<u64>,
        fence: Option<Fence<'_>>,
        sequence: Sequence<'_>,
    ) -> Result<Answer<Sequenced>, RedisError> {
        let (in_script, after) = self.split_companion(&writes.companion);
        let mut invocation = PUSH.key(batch.list_key());
        if let Some(fence) = fence {
            invocation.key(fence.key);
        }
        invocation.key(sequence.key);
        let (kind, member) = fence_and_companion_keys(&mut invocation, None, in_script);
        invocation
            .arg(cap.map(|c| c.to_string()).unwrap_or_default())
            .arg(fence.map_or("", |f| f.token))
            .arg(writes.command())
            .arg(kind)
            .arg(member)
            .arg(sequence.field)
            .arg(sequence.expects.unwrap_or_default())
            .arg(sequence.sets);
        for element in batch.messages_iter() {
            invocation.arg(element);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = invocation.invoke_async(&mut conn).await?;
        if let Some(refused) = refusal(&reply)? {
            return Ok(Answer::Refused(refused));
        }
        let answer = match reply.as_slice() {
            [status, stored] if int(status)? == OUT_OF_SEQUENCE => {
                let stored = text(stored)?;
                Sequenced::OutOfSequence((!stored.is_empty()).then_some(stored))
            }
            [pushed, len] => Sequenced::Pushed(Pushed {
                messages: int(pushed)? as usize,
                list_len: Some(int(len)? as u64),
            }),
            _ => return Err(unexpected("sequenced push script: unexpected reply")),
        };
        if let (Some(after), Sequenced::Pushed(p)) = (after, &answer) {
            if p.messages > 0 {
                self.add_to_set_after_push(after).await;
            }
        }
        Ok(Answer::Taken(answer))
    }
}
