//! A topic's plan, chosen once when its lanes start: what each message becomes ([`Encoder`]) and
//! how a batch of them is written ([`Writes`]) — onto a list, with a job framework's companion
//! write, as BullMQ or RQ jobs kept in hashes of their own, or as a stream's entries. Each structure and envelope pairs
//! with its own writes here, so a push never meets an element it cannot write.

use super::deliver::ListWrites;
use super::encode::Encoder;
use super::jobs::{BullmqKeys, HashJobTopic, RqKeys};
use crate::config::{jobs as job_config, TopicConfig};

/// What a topic's lanes make of each message and how they write a batch.
#[derive(Debug, Clone)]
pub struct Plan {
    pub encoder: Encoder,
    pub writes: Writes,
}

/// How a batch reaches Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writes {
    /// Each element pushed onto the topic's list (raw, legacy, json, and Laravel, Celery and
    /// Sidekiq jobs with their companion write).
    List(ListWrites),
    /// Jobs kept in hashes of their own, their ids pushed onto the queue's list.
    HashJobs(HashJobWrites),
    /// Entries added to the topic's stream ([`super::deliver_stream`]).
    Stream(StreamWrites),
}

/// How entries reach a stream: each element's fields `XADD`ed as they are, with the cap counted
/// over the stream's consumer groups and what every group finished trimmed
/// (`redis/scripts/stream_push.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamWrites;

/// How BullMQ and RQ jobs are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashJobWrites {
    /// BullMQ jobs: a hash each, the id pushed onto the queue's `wait` list, with the marker and
    /// events its own `Queue.add` writes (`redis/scripts/bullmq_push.lua`).
    Bullmq(BullmqKeys),
    /// RQ jobs: a hash each, the id pushed onto the queue's list, the queue registered in the
    /// queues set, as its own `Queue.enqueue` writes (`redis/scripts/rq_push.lua`).
    Rq(RqKeys),
}

impl Plan {
    pub fn for_topic(topic: &TopicConfig) -> Plan {
        let encoder = Encoder::for_topic(topic);
        let writes = match &encoder {
            Encoder::StreamEntry | Encoder::SymfonyEntry(_) => Writes::Stream(StreamWrites),
            Encoder::HashJob(HashJobTopic::Bullmq { .. }) => {
                Writes::HashJobs(HashJobWrites::Bullmq(BullmqKeys::new(
                    job_config::queue_prefix(topic),
                    topic.queue.as_deref().unwrap_or_default(),
                )))
            }
            Encoder::HashJob(HashJobTopic::Rq { .. }) => {
                Writes::HashJobs(HashJobWrites::Rq(RqKeys::new(
                    job_config::queue_prefix(topic),
                    topic.queue.as_deref().unwrap_or_default(),
                )))
            }
            Encoder::Raw | Encoder::Legacy | Encoder::Json | Encoder::Job(_) => {
                Writes::List(ListWrites::for_topic(topic))
            }
        };
        Plan { encoder, writes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Delivery, Envelope, Structure};

    fn topic(envelope: Envelope, queue: Option<&str>, prefix: Option<&str>) -> TopicConfig {
        TopicConfig {
            name: "orders.eu".into(),
            list_key: job_config::queue_list(envelope, queue, prefix)
                .unwrap_or_else(|| "queues:orders.eu".into()),
            structure: Structure::List,
            envelope,
            job: Some("record".into()),
            queue: queue.map(Into::into),
            queue_prefix: prefix.map(Into::into),
            job_options: Default::default(),
            cap: None,
            delivery: Delivery::AtLeastOnce,
        }
    }

    #[test]
    fn bullmq_and_rq_keys_follow_from_queue_and_prefix() {
        let t = topic(Envelope::Bullmq, Some("orders"), Some("{bull}"));
        let Writes::HashJobs(HashJobWrites::Bullmq(keys)) = Plan::for_topic(&t).writes else {
            panic!("BullMQ writes")
        };
        assert_eq!(keys.wait(), "{bull}:orders:wait");
        assert_eq!(
            keys.wait(),
            t.list_key,
            "the cap and the lag count the wait list"
        );

        let t = topic(Envelope::Rq, Some("orders"), None);
        let Writes::HashJobs(HashJobWrites::Rq(keys)) = Plan::for_topic(&t).writes else {
            panic!("RQ writes")
        };
        assert_eq!(keys.queue, "rq:queue:orders");
        assert_eq!(keys.queue, t.list_key);
        assert_eq!(keys.queues, "rq:queues");

        let mut t = topic(Envelope::Raw, None, None);
        assert_eq!(Plan::for_topic(&t).writes, Writes::List(ListWrites::PLAIN));
        t.structure = Structure::Stream;
        let plan = Plan::for_topic(&t);
        assert_eq!(plan.writes, Writes::Stream(StreamWrites));
        assert!(matches!(plan.encoder, Encoder::StreamEntry));

        let mut t = topic(Envelope::Symfony, None, None);
        t.structure = Structure::Stream;
        t.job = Some(r"App\Message\KafkaRecord".into());
        let plan = Plan::for_topic(&t);
        assert_eq!(plan.writes, Writes::Stream(StreamWrites));
        assert!(
            matches!(&plan.encoder, Encoder::SymfonyEntry(class) if class == r"App\Message\KafkaRecord")
        );
    }
}
