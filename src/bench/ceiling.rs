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
use crate::kafka::ffi::{BatchReader, PER_CALL};

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

/// Fills the topics' lists with `messages` elements of `size` bytes: one pusher per partition,
/// as the bridge has one lane per partition, each sending `RPUSH list e1 … e{batch}` over one
/// shared multiplexed connection, one batch in flight per pusher. The lists are deleted after.
pub fn push_only(
    redis: &RedisService,
    topics: &Topics,
    messages: usize,
    size: usize,
    batch: usize,
) -> anyhow::Result<Duration> {
    let lists = topics.lists();
    redis.delete(&lists)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let pushers = topics.total() as usize;
    let progress = bar(messages as u64, "push-only");
    let took = runtime.block_on(async {
        let client = redis::Client::open(redis.url())?;
        let conn = client.get_multiplexed_async_connection().await?;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for p in 0..pushers {
            let share = messages / pushers + usize::from(p < messages % pushers);
            let list = lists[p % lists.len()].clone();
            let mut conn = conn.clone();
            let progress = progress.clone();
            tasks.push(tokio::spawn(async move {
                let element = vec![b'x'; size];
                let mut left = share;
                while left > 0 {
                    let n = left.min(batch);
                    let mut cmd = redis::cmd("RPUSH");
                    cmd.arg(&list);
                    for _ in 0..n {
                        cmd.arg(&element[..]);
                    }
                    cmd.query_async::<u64>(&mut conn).await?;
                    left -= n;
                    progress.inc(n as u64);
                }
                Ok::<_, redis::RedisError>(())
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
        bail!("push-only: the lists hold {total} elements, expected {messages}");
    }
    redis.delete(&lists)?;
    Ok(took)
}

/// [`push_only`] for the envelopes whose jobs are hashes (BullMQ, RQ) and for streams, held against
/// their own ceiling since each job is several writes (an entry several fields): the bridge's own push ([`crate::pipeline::plan`]:
/// its batch and push script) of jobs encoded beforehand by its own encoder, one pusher per
/// partition, one batch in flight each, no Kafka. The lists and jobs are deleted after.
pub fn push_only_jobs(
    redis: &RedisService,
    topics: &Topics,
    messages: usize,
    size: usize,
    batch: usize,
) -> anyhow::Result<Duration> {
    use crate::config::{Delivery, Envelope, RedisConfig, Structure, TopicConfig};
    use crate::pipeline::batch::Batch;
    use crate::pipeline::jobs::{now_seconds, Record};
    use crate::pipeline::plan::Plan;
    use crate::redis::RedisSink;

    let lists = topics.lists();
    let jobs = topics.job_key_patterns();
    redis.delete(&lists)?;
    redis.delete_matching(&jobs)?;
    let (envelope, structure) = match topics.envelope.as_str() {
        _ if topics.streams => (Envelope::Raw, Structure::Stream),
        "bullmq" => (Envelope::Bullmq, Structure::List),
        "rq" => (Envelope::Rq, Structure::List),
        other => bail!("push-only-jobs: {other} keeps no jobs in hashes"),
    };
    let pushers = topics.total() as usize;
    // Encoded before the clock starts: the ceiling is Redis's side alone.
    let element = vec![b'x'; size];
    let now = now_seconds();
    let mut work = Vec::with_capacity(pushers);
    for p in 0..pushers {
        let (name, partition) = topics.target(p);
        let topic = TopicConfig {
            name: name.to_string(),
            list_key: lists[p % lists.len()].clone(),
            structure,
            envelope,
            job: Some("bench.record".into()),
            queue: Some(name.to_string()),
            queue_prefix: None,
            job_options: Default::default(),
            cap: None,
            delivery: Delivery::AtLeastOnce,
        };
        let plan = Plan::for_topic(&topic);
        let share = messages / pushers + usize::from(p < messages % pushers);
        let mut batches = Vec::new();
        for first in (0..share).step_by(batch.max(1)) {
            let mut b = Batch::new(topic.list_key.clone(), topic.dead_letter_key());
            for offset in first..(first + batch).min(share) {
                let record = Record {
                    topic: name,
                    partition,
                    offset: offset as i64,
                    timestamp: Some(0),
                    key: None,
                    value: Some(&element),
                    headers: &[],
                };
                b.add_with(offset as i64, None, false, |out| {
                    // Jobs always encode (their argument is the `json` record).
                    let _ = plan.encoder.encode(&record, now, out);
                });
            }
            batches.push(b);
        }
        work.push((plan.writes, batches));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let progress = bar(messages as u64, "push-only");
    let took = runtime.block_on(async {
        let sink = RedisSink::connect(&RedisConfig::standalone(redis.url())).await?;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (writes, batches) in work {
            let sink = sink.clone();
            let progress = progress.clone();
            tasks.push(tokio::spawn(async move {
                for b in &batches {
                    sink.push(b, &writes, None, None).await?;
                    progress.inc(b.messages() as u64);
                }
                Ok::<_, ::redis::RedisError>(())
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
        bail!("push-only: the queues hold {total} jobs, expected {messages}");
    }
    redis.delete(&lists)?;
    redis.delete_matching(&jobs)?;
    Ok(took)
}
