//! The machine's ceiling: each half of the bridge's work done alone, as fast as it goes.
//!
//! The bridge can be no faster than the slower of the two — reading the topic and filling Redis
//! — on the same cores, so its throughput is reported as a ratio to that minimum.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::bar;
use super::services::{Broker, RedisService, Topics};
use crate::config::{Config, Delivery, TopicConfig};
use crate::kafka::ffi::{BatchReader, PER_CALL};
use crate::pipeline::batch::Batch;
use crate::pipeline::deliver::{Answer, ExactlyOnce, Fence, OffsetRecord};
use crate::pipeline::jobs::PushTime;
use crate::pipeline::plan::Plan;
use crate::pipeline::record::Record;
use crate::redis::RedisSink;

/// Drains the topics with a plain consumer (librdkafka defaults but a short broker wait; the
/// partitions assigned, no group) reading in batches as the bridge's lanes do
/// ([`crate::kafka::ffi`]); returns the time from the first message to the last, which
/// leaves the group join out as for the bridge.
pub fn consume_only(broker: &Broker, topics: &Topics, messages: usize) -> anyhow::Result<Duration> {
    let consumer: Arc<BaseConsumer> = Arc::new(
        broker
            .client_config()
            .set("group.id", format!("{}-consume-only", topics.names[0]))
            .set("enable.auto.commit", "false")
            // librdkafka's mock broker answers a fetch that finds no new data only after the full
            // fetch.wait.max.ms (500 ms by default), even when data arrives meanwhile; a partition
            // that runs dry early would charge the ceiling half a second. Real brokers answer as
            // soon as data arrives, so this changes nothing there.
            .set("fetch.wait.max.ms", "10")
            // When the read loop falls behind, the one consumer queue passes its 64 MB threshold
            // and librdkafka postpones fetching by fetch.queue.backoff.ms, 1 s by default: the
            // ceiling would measure that pause (the bridge runs with 10 ms too).
            .set("fetch.queue.backoff.ms", "10")
            .create()?,
    );
    let mut assignment = TopicPartitionList::new();
    for name in &topics.names {
        for partition in 0..topics.per_topic {
            assignment.add_partition_offset(name, partition, Offset::Beginning)?;
        }
    }
    // Assigned, not subscribed: no rebalance events share the queue read below.
    consumer.assign(&assignment)?;
    let Some(reader) = BatchReader::consumer_queue(consumer.clone()) else {
        bail!("consume-only: librdkafka gave no consumer queue");
    };
    let progress = bar(messages as u64, "consume-only");
    let (mut count, mut bytes, mut first) = (0usize, 0usize, None);
    let mut last_progress = Instant::now();
    while count < messages {
        let mut failure = None;
        let taken = reader.take(PER_CALL, |fetched| match fetched {
            Ok(message) => {
                // Touch the payload, as any real consumer would.
                bytes += message.payload().map_or(0, <[u8]>::len);
                count += 1;
            }
            Err((e, _offset)) => failure = Some(e),
        });
        if let Some(e) = failure {
            bail!("consume-only: {e}");
        }
        if taken > 0 {
            first.get_or_insert_with(Instant::now);
            last_progress = Instant::now();
            progress.set_position(count as u64);
        } else if last_progress.elapsed() > Duration::from_secs(60) {
            bail!("consume-only: no message for 60 s ({count} of {messages})")
        } else {
            // Nothing queued: let librdkafka's fetcher run rather than spin on the lock.
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    let took = first.map(|f| f.elapsed()).unwrap_or_default();
    progress.finish_and_clear();
    std::hint::black_box(bytes);
    Ok(took)
}

/// The push-only ceiling of one way of running the bridge: `config` is the very config the bridge
/// gets ([`super::bridge::config_text`], parsed by the bridge's own parser), and each of its
/// topics' partitions has a pusher of its own — as the bridge has one lane per partition — that
/// encodes its messages with the bridge's encoder for the topic ([`crate::pipeline::plan`]) into
/// batches as large as the bridge's, and pushes them with the bridge's own push: the variadic
/// `RPUSH`, the stream's `XADD` script (the plan's stream writes: entries counted by `XLEN`), or
/// the push script with the job framework's companion write, the lease's fence (the fences
/// written first, as the holder does) or the exactly-once offset record, over one multiplexed
/// connection with the WAIT guard when the config has it. One batch in flight per
/// pusher, no Kafka. Returns the time from the first push to the last answer; every key the
/// pushes wrote is deleted after, so the bridge starts on clean lists (or streams) and no offset
/// record.
pub fn push_only(
    redis: &RedisService,
    topics: &Topics,
    config: &Config,
    messages: usize,
    size: usize,
) -> anyhow::Result<Duration> {
    let lists = topics.lists();
    let leftovers = ceiling_keys(config);
    redis.delete(&lists)?;
    redis.delete(&leftovers)?;
    redis.delete_matching(&topics.job_key_patterns())?;
    let fenced = config.lease_key.is_some();
    if fenced {
        let mut conn = redis.connection()?;
        for key in config.fence_keys() {
            ::redis::cmd("SET")
                .arg(key)
                .arg(FENCE_VALUE)
                .query::<()>(&mut conn)?;
        }
    }
    let pushers = topics.total() as usize;
    let mut work = Vec::with_capacity(pushers);
    for p in 0..pushers {
        let (name, partition) = topics.target(p);
        let Some(topic) = config.topic(name) else {
            bail!("push-only: the bridge's config has no topic {name}");
        };
        let share = messages / pushers + usize::from(p < messages % pushers);
        work.push(Pusher {
            topic: topic.clone(),
            plan: Plan::for_topic(topic),
            partition,
            share,
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let progress = bar(messages as u64, "push-only");
    let (batch_messages, batch_bytes) = (config.batch.max_messages, config.batch.max_bytes);
    let took = runtime.block_on(async {
        let sink = RedisSink::connect(&config.redis).await?;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for pusher in work {
            let sink = sink.clone();
            let progress = progress.clone();
            tasks.push(tokio::spawn(async move {
                pusher
                    .run(&sink, size, batch_messages, batch_bytes, fenced, &progress)
                    .await
            }));
        }
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(started.elapsed())
    })?;
    progress.finish_and_clear();
    let mut conn = redis.connection()?;
    let total = RedisService::total_len(&mut conn, &lists, topics.streams)?;
    if total != messages {
        bail!("push-only: the lists or streams hold {total} messages, expected {messages}");
    }
    redis.delete(&lists)?;
    redis.delete(&leftovers)?;
    redis.delete_matching(&topics.job_key_patterns())?;
    Ok(took)
}

/// The fence value the ceiling's pushes present (a holder's `"<fencing number> <token>"`).
const FENCE_VALUE: &str = "1 bench-push-only";

/// The keys a push writes besides the lists and job hashes: exactly-once offset records and the
/// lease's fences.
fn ceiling_keys(config: &Config) -> Vec<String> {
    let mut keys: Vec<String> = config
        .topics
        .iter()
        .filter_map(|t| crate::keys::offsets_key(&t.list_key))
        .collect();
    if config.lease_key.is_some() {
        keys.extend(config.fence_keys());
    }
    keys
}

/// One partition's share of the push-only run.
struct Pusher {
    topic: TopicConfig,
    plan: Plan,
    partition: i32,
    share: usize,
}

impl Pusher {
    async fn run(
        self,
        sink: &RedisSink,
        size: usize,
        batch_messages: usize,
        batch_bytes: usize,
        fenced: bool,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<()> {
        let element = vec![b'x'; size];
        let fence_key = crate::keys::fence_key(&self.topic.list_key);
        let fence = match (&fence_key, fenced) {
            (Some(key), true) => Some(Fence {
                key,
                token: FENCE_VALUE,
            }),
            _ => None,
        };
        let offsets_key = crate::keys::offsets_key(&self.topic.list_key).unwrap_or_default();
        let field = crate::keys::offsets_field(&self.topic.name, self.partition);
        let mut recorded: Option<i64> = None;
        let mut batch = Batch::new(self.topic.list_key.clone(), self.topic.dead_letter_key());
        let mut offset = 0usize;
        while offset < self.share {
            batch.clear();
            let now = PushTime::now();
            while offset < self.share
                && batch.messages() < batch_messages
                && batch.bytes() < batch_bytes
            {
                let record = Record {
                    topic: &self.topic.name,
                    partition: self.partition,
                    offset: offset as i64,
                    timestamp: Some(0),
                    key: None,
                    value: Some(&element),
                    headers: &[],
                };
                let mut failed = false;
                batch.add_with(offset as i64, Some(0), false, |out| {
                    failed = self.plan.encoder.encode(&record, &now, out).is_err();
                });
                if failed {
                    bail!(
                        "push-only: the {:?} envelope refused a bench message",
                        self.topic.envelope
                    );
                }
                offset += 1;
            }
            match self.topic.delivery {
                Delivery::AtLeastOnce => {
                    match sink.push(&batch, &self.plan.writes, None, fence).await? {
                        Answer::Taken(p) if p.messages == batch.messages() => {}
                        other => bail!("push-only: Redis did not take a whole batch: {other:?}"),
                    }
                }
                Delivery::ExactlyOnce => {
                    let record = OffsetRecord {
                        key: &offsets_key,
                        field: &field,
                        expected: recorded,
                    };
                    match sink
                        .push_recorded(&batch, &self.plan.writes, record, None, fence)
                        .await?
                    {
                        Answer::Taken(ExactlyOnce::Pushed { next_offset, .. }) => {
                            recorded = Some(next_offset)
                        }
                        other => bail!("push-only: the exactly-once push was refused: {other:?}"),
                    }
                }
            }
            progress.inc(batch.messages() as u64);
        }
        Ok(())
    }
}
