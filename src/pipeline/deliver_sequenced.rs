//! A list push that is one of several batches of a lane in flight at once: its checks also check
//! the lane's field in the list's sequence hash ([`crate::keys::sequence_key`]) and move it on, so
//! a batch whose predecessor did not land whole is refused (outside Cluster, taken back within
//! its transaction) instead of overtaking it.
//! Redis runs one connection's commands in order; the check is what keeps the order when a
//! connection breaks under a window of pushes, or a client retries one of them on its own.

use ::redis::{RedisError, Value};

use super::batch::Batch;
use super::deliver::{
    fence_and_companion_keys, int, refusal, text, unexpected, Answer, Chain, Checks, Fence,
    ListWrites, Pushed, Sequence,
};
use crate::redis::scripts::{OUT_OF_SEQUENCE, PUSH};
use crate::redis::RedisSink;

/// What Redis made of a sequenced push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sequenced {
    Pushed(Pushed),
    /// Refused before any write: the field held this (`None`: nothing), not what the push expected.
    OutOfSequence(Option<String>),
}

impl RedisSink {
    /// Pushes what fits of the batch's messages under `cap`, checking and moving the lane's
    /// `sequence` in the same atomic step (and the fence and companion write as
    /// [`RedisSink::push_messages`] does): checked after the push in one transaction
    /// ([`super::deliver_checked`]), or by the push script on Cluster. The Sidekiq `SADD` that
    /// follows a push on Redis Cluster follows this one too.
    pub async fn push_sequenced(
        &self,
        batch: &Batch,
        writes: &ListWrites,
        cap: Option<u64>,
        fence: Option<Fence<'_>>,
        sequence: Sequence<'_>,
    ) -> Result<Answer<Sequenced>, RedisError> {
        let (in_script, after) = self.split_companion(&writes.companion);
        if self.checks_after_push(batch) {
            let checks = Checks {
                cap,
                fence,
                chain: Some(Chain::Sequence(sequence)),
                companion: in_script,
            };
            return sequenced(&self.push_checked(batch, writes, checks).await?);
        }
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
        let answer = sequenced(&reply)?;
        if let (Some(after), Answer::Taken(Sequenced::Pushed(p))) = (after, &answer) {
            if p.messages > 0 {
                self.add_to_set_after_push(after).await;
            }
        }
        Ok(answer)
    }
}

/// A sequenced push's reply (the push script's or the checked transaction's): a refusal, the
/// field's value when it was not the one expected, or `{pushed, length after}`.
fn sequenced(reply: &[Value]) -> Result<Answer<Sequenced>, RedisError> {
    if let Some(refused) = refusal(reply)? {
        return Ok(Answer::Refused(refused));
    }
    Ok(Answer::Taken(match reply {
        [status, stored] if int(status)? == OUT_OF_SEQUENCE => {
            let stored = text(stored)?;
            Sequenced::OutOfSequence((!stored.is_empty()).then_some(stored))
        }
        [pushed, len] => Sequenced::Pushed(Pushed {
            messages: int(pushed)? as usize,
            list_len: Some(int(len)? as u64),
        }),
        _ => return Err(unexpected("sequenced push: unexpected reply")),
    }))
}
