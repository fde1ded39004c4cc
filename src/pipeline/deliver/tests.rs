//! The push scripts against a real `redis-server`: a key of another type or a fence that does not
//! hold the holder's value refuses the push before anything is written.

use super::*;
use crate::bench::services::RedisService;
use crate::config::RedisConfig;

pub(crate) async fn sink(redis: &RedisService) -> RedisSink {
    RedisSink::connect(&RedisConfig::standalone(redis.address.clone()))
        .await
        .expect("connecting to the test Redis")
}

fn batch(messages: i64) -> Batch {
    let mut batch = Batch::new("queue:q".into(), "queue:q:dead".into());
    for offset in 0..messages {
        batch.add_with(offset, None, false, |buf| {
            buf.extend_from_slice(format!("m{offset}").as_bytes())
        });
    }
    batch
}

/// Runs one command (`args[0]` with its arguments) on the sink's control connection.
pub(crate) async fn run(sink: &RedisSink, args: &[&str]) {
    let mut conn = sink.connection();
    let mut cmd = ::redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async::<()>(&mut conn).await.unwrap();
}

fn wrong(key: &str, found: &str, wanted: &str) -> Refusal {
    Refusal::WrongType(WrongType {
        key: key.into(),
        found: found.into(),
        wanted: wanted.into(),
    })
}

/// Sidekiq's writes: `LPUSH`, and `SADD queues <queue>` in the same script.
fn sidekiq() -> ListWrites {
    ListWrites {
        end: PushEnd::Head,
        companion: Companion::AddToSet {
            set: "queues".into(),
            member: "q".into(),
        },
    }
}

#[tokio::test]
async fn a_companion_of_the_wrong_type_refuses_before_the_list_push() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    run(&sink, &["HSET", "queues", "another-app", "1"]).await;
    let batch = batch(10);

    let pushed = sink.push_messages(&batch, &sidekiq(), None, None).await;
    assert_eq!(
        pushed.unwrap(),
        Answer::Refused(wrong("queues", "hash", "set"))
    );
    let once = sink
        .push_exactly_once(
            &batch,
            &sidekiq(),
            OffsetRecord {
                key: "{queue:q}:offsets",
                field: "t:0",
                expected: None,
            },
            None,
            None,
        )
        .await;
    assert_eq!(
        once.unwrap(),
        Answer::Refused(wrong("queues", "hash", "set"))
    );
    assert_eq!(sink.list_len("queue:q").await.unwrap(), 0, "nothing landed");

    run(&sink, &["DEL", "queues"]).await;
    let pushed = sink.push_messages(&batch, &sidekiq(), None, None).await;
    assert!(matches!(pushed.unwrap(), Answer::Taken(p) if p.messages == 10));
    assert_eq!(sink.list_len("queue:q").await.unwrap(), 10);
}

#[tokio::test]
async fn a_list_of_the_wrong_type_is_named_on_every_path() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    run(&sink, &["SET", "queue:q", "a string"]).await;
    let batch = batch(3);
    // A plain RPUSH (one command), the capped script, the exactly-once script.
    for cap in [None, Some(100)] {
        let pushed = sink
            .push_messages(&batch, &ListWrites::PLAIN, cap, None)
            .await;
        assert_eq!(
            pushed.unwrap(),
            Answer::Refused(wrong("queue:q", "string", "list"))
        );
    }
    let once = sink
        .push_exactly_once(
            &batch,
            &ListWrites::PLAIN,
            OffsetRecord {
                key: "{queue:q}:offsets",
                field: "t:0",
                expected: None,
            },
            None,
            None,
        )
        .await;
    assert_eq!(
        once.unwrap(),
        Answer::Refused(wrong("queue:q", "string", "list"))
    );
}

#[tokio::test]
async fn a_missing_fence_refuses_the_push() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    let batch = batch(3);
    let fence = Fence {
        key: "{queue:q}:fence",
        token: "1 host:1:0000abcd",
    };
    let pushed = sink
        .push_messages(&batch, &ListWrites::PLAIN, None, Some(fence))
        .await;
    assert_eq!(pushed.unwrap(), Answer::Refused(Refusal::Fence));
    run(&sink, &["SET", fence.key, fence.token]).await;
    let pushed = sink
        .push_messages(&batch, &ListWrites::PLAIN, None, Some(fence))
        .await;
    assert!(matches!(pushed.unwrap(), Answer::Taken(p) if p.messages == 3));
}
