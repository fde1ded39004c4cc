//! Pushing a batch by its topic's plan ([`Writes`]): list pushes go to
//! [`RedisSink::push_messages`] and [`RedisSink::push_exactly_once`], stream entries to
//! [`RedisSink::push_stream`]; BullMQ and RQ jobs to their own scripts (`redis/scripts/bullmq_push.lua`, `rq_push.lua`), one round trip per batch, with the
//! cap, the lease's fence and — exactly-once — the partition's offset record in the same atomic
//! step, as for a list.

use ::redis::{RedisError, Value};

use super::batch::{parts, Batch};
use super::deliver::{
    next_after, recorded_push, recorded_push_head, refusal, unexpected, Answer, ExactlyOnce, Fence,
    OffsetRecord, Pushed,
};
use super::jobs::{BULLMQ_FIELDS, RQ_FIELDS};
use super::plan::{HashJobWrites, Writes};
use crate::redis::scripts::{BULLMQ_PUSH, RQ_PUSH};
use crate::redis::RedisSink;

impl RedisSink {
    /// Pushes the batch's messages as the plan writes them (what fits under `cap`); see
    /// [`RedisSink::push_messages`] for the list writes.
    pub async fn push(
        &self,
        batch: &Batch,
        writes: &Writes,
        cap: Option<u64>,
        fence: Option<Fence<'_>>,
    ) -> Result<Answer<Pushed>, RedisError> {
        if batch.messages() == 0 {
            return Ok(Answer::Taken(Pushed {
                messages: 0,
                list_len: None,
            }));
        }
        let answer = match writes {
            Writes::List(list) => return self.push_messages(batch, list, cap, fence).await,
            Writes::HashJobs(jobs) => self.push_hash_jobs(batch, jobs, None, cap, fence).await?,
            Writes::Stream(_) => self.push_stream(batch, None, cap, fence).await?,
        };
        match answer {
            Answer::Refused(why) => Ok(Answer::Refused(why)),
            Answer::Taken(ExactlyOnce::Pushed { pushed, .. }) => Ok(Answer::Taken(pushed)),
            Answer::Taken(ExactlyOnce::Refused { .. }) => Err(unexpected(
                "job push script refused a push that records no offset",
            )),
        }
    }

    /// Exactly-once push as the plan writes it: what fits under `cap`, and the partition's next
    /// offset recorded in `record` in the same atomic step — unless Redis records another position
    /// than `record.expected`. See [`RedisSink::push_exactly_once`] for the list writes.
    pub async fn push_recorded(
        &self,
        batch: &Batch,
        writes: &Writes,
        record: OffsetRecord<'_>,
        cap: Option<u64>,
        fence: Option<Fence<'_>>,
    ) -> Result<Answer<ExactlyOnce>, RedisError> {
        match writes {
            Writes::List(list) => {
                self.push_exactly_once(batch, list, record, cap, fence)
                    .await
            }
            Writes::HashJobs(jobs) => {
                self.push_hash_jobs(batch, jobs, Some(record), cap, fence)
                    .await
            }
            Writes::Stream(_) => self.push_stream(batch, Some(record), cap, fence).await,
        }
    }

    /// BullMQ or RQ jobs, each message of the batch a job's id and field values
    /// ([`super::jobs::HashJobTopic::encode`]), with the script's keys and arguments laid out as
    /// [`crate::redis::scripts::BULLMQ_PUSH`] says.
    async fn push_hash_jobs(
        &self,
        batch: &Batch,
        writes: &HashJobWrites,
        record: Option<OffsetRecord<'_>>,
        cap: Option<u64>,
        fence: Option<Fence<'_>>,
    ) -> Result<Answer<ExactlyOnce>, RedisError> {
        let (mut invocation, base, names): (_, &str, &[&str]) = match writes {
            HashJobWrites::Bullmq(keys) => {
                let mut invocation = BULLMQ_PUSH.key(keys.wait());
                invocation
                    .key(keys.meta())
                    .key(keys.id())
                    .key(keys.events())
                    .key(keys.marker())
                    .key(keys.active());
                (invocation, &keys.base, &BULLMQ_FIELDS)
            }
            HashJobWrites::Rq(keys) => {
                let mut invocation = RQ_PUSH.key(&keys.queue);
                invocation.key(&keys.queues);
                (invocation, &keys.job_prefix, &RQ_FIELDS)
            }
        };
        recorded_push_head(&mut invocation, record, cap, fence);
        invocation
            .arg(match record {
                Some(record) => next_after(batch, record),
                None => batch.last_offset().map_or(0, |o| o + 1),
            })
            .arg(base)
            .arg(names.len());
        for (element, offset) in batch.messages_iter().zip(batch.message_offsets()) {
            let mut parts = parts(element);
            invocation.arg(offset).arg(parts.next().unwrap_or_default());
            for (name, value) in names.iter().zip(parts) {
                invocation.arg(name).arg(value);
            }
        }
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = invocation.invoke_async(&mut conn).await?;
        if let Some(why) = refusal(&reply)? {
            return Ok(Answer::Refused(why));
        }
        recorded_push(&reply, "job push script: unexpected reply")
    }
}
