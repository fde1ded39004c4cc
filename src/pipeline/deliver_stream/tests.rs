//! The stream push against a real `redis-server`: entries as sent, the cap over the groups'
//! unfinished work, the trim that never takes what a group has not finished, the exactly-once
//! record, and the refusals before any write.

use super::*;
use crate::bench::services::RedisService;
use crate::config::RedisConfig;
use crate::pipeline::batch::write_part;
use crate::pipeline::deliver::{Refusal, WrongType};
use crate::redis::RedisConnection;

async fn sink(redis: &RedisService) -> RedisSink {
    RedisSink::connect(&RedisConfig::standalone(redis.address.clone()))
        .await
        .expect("connecting to the test Redis")
}

/// Entries with offsets `from..to`, each `value` = `v<offset>` and `offset`.
fn batch(from: i64, to: i64) -> Batch {
    let mut batch = Batch::new("s".into(), "s:dead".into());
    for offset in from..to {
        batch.add_with(offset, None, false, |buf| {
            write_part(buf, b"value");
            write_part(buf, format!("v{offset}").as_bytes());
            write_part(buf, b"offset");
            write_part(buf, offset.to_string().as_bytes());
        });
    }
    batch
}

async fn run<T: ::redis::FromRedisValue>(conn: &mut RedisConnection, args: &[&str]) -> T {
    let mut cmd = ::redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(conn).await.unwrap()
}

/// An entry: its id and its field names and values in turn.
type Entry = (String, Vec<Vec<u8>>);

/// The value of `name` in an entry's fields.
fn field(entry: &Entry, name: &str) -> String {
    let at = entry
        .1
        .chunks(2)
        .find(|kv| kv[0] == name.as_bytes())
        .expect(name);
    String::from_utf8(at[1].clone()).unwrap()
}

async fn entries(conn: &mut RedisConnection) -> Vec<Entry> {
    run(conn, &["XRANGE", "s", "-", "+"]).await
}

/// The `offset` field of every entry, in stream order.
async fn offsets(conn: &mut RedisConnection) -> Vec<i64> {
    entries(conn)
        .await
        .iter()
        .map(|e| field(e, "offset").parse().unwrap())
        .collect()
}

fn taken(answer: Answer<ExactlyOnce>) -> (usize, u64, i64) {
    match answer {
        Answer::Taken(ExactlyOnce::Pushed {
            pushed,
            next_offset,
        }) => (pushed.messages, pushed.list_len.unwrap(), next_offset),
        other => panic!("not taken: {other:?}"),
    }
}

#[tokio::test]
async fn entries_land_in_order_with_their_fields() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    let mut conn = sink.connection();
    let (added, unfinished, next) = taken(
        sink.push_stream(&batch(0, 5), None, None, None)
            .await
            .unwrap(),
    );
    assert_eq!((added, unfinished, next), (5, 5, 5));
    assert_eq!(offsets(&mut conn).await, [0, 1, 2, 3, 4]);
    assert_eq!(field(&entries(&mut conn).await[3], "value"), "v3");
}

#[tokio::test]
async fn the_cap_counts_what_the_groups_have_not_finished() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    let mut conn = sink.connection();
    run::<()>(&mut conn, &["XGROUP", "CREATE", "s", "g", "0", "MKSTREAM"]).await;
    let (added, unfinished, next) = taken(
        sink.push_stream(&batch(0, 10), None, Some(6), None)
            .await
            .unwrap(),
    );
    assert_eq!(
        (added, unfinished, next),
        (6, 6, 6),
        "the rest waits for the group"
    );
    let (added, ..) = taken(
        sink.push_stream(&batch(6, 10), None, Some(6), None)
            .await
            .unwrap(),
    );
    assert_eq!(added, 0, "full");
    assert_eq!(sink.waiting("s", Structure::Stream).await.unwrap(), 6);

    // The group reads 4 and acknowledges the first 2: 4 unfinished, 2 finished entries trimmed at
    // the next push, never one still pending.
    let read: Vec<(String, Vec<Entry>)> = run(
        &mut conn,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "4",
            "STREAMS",
            "s",
            ">",
        ],
    )
    .await;
    let ids: Vec<String> = read[0].1.iter().map(|e| e.0.clone()).collect();
    run::<()>(&mut conn, &["XACK", "s", "g", &ids[0], &ids[1]]).await;
    assert_eq!(sink.waiting("s", Structure::Stream).await.unwrap(), 4);
    let (added, unfinished, _) = taken(
        sink.push_stream(&batch(6, 10), None, Some(6), None)
            .await
            .unwrap(),
    );
    assert_eq!((added, unfinished), (2, 6));
    assert_eq!(
        offsets(&mut conn).await,
        [2, 3, 4, 5, 6, 7],
        "only finished entries trimmed"
    );

    // A second group that has read nothing keeps everything it has not finished.
    run::<()>(&mut conn, &["XGROUP", "CREATE", "s", "other", "0"]).await;
    run::<()>(&mut conn, &["XACK", "s", "g", &ids[2], &ids[3]]).await;
    let (added, ..) = taken(
        sink.push_stream(&batch(8, 10), None, Some(6), None)
            .await
            .unwrap(),
    );
    assert_eq!(added, 0, "the new group has 6 unfinished");
    assert_eq!(
        offsets(&mut conn).await,
        [2, 3, 4, 5, 6, 7],
        "nothing trimmed"
    );
}

#[tokio::test]
async fn exactly_once_records_the_offset_and_a_replay_adds_nothing() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    let mut conn = sink.connection();
    let record = |expected| OffsetRecord {
        key: "{s}:offsets",
        field: "t:0",
        expected,
    };
    let (added, _, next) = taken(
        sink.push_stream(&batch(0, 5), Some(record(None)), Some(3), None)
            .await
            .unwrap(),
    );
    assert_eq!(
        (added, next),
        (3, 3),
        "records the first entry that did not fit"
    );
    let recorded: String = run(&mut conn, &["HGET", "{s}:offsets", "t:0"]).await;
    assert_eq!(recorded, "3");

    let replay = sink
        .push_stream(&batch(0, 5), Some(record(None)), None, None)
        .await
        .unwrap();
    assert_eq!(
        replay,
        Answer::Taken(ExactlyOnce::Refused { recorded: Some(3) })
    );
    let (added, _, next) = taken(
        sink.push_stream(&batch(3, 5), Some(record(Some(3))), None, None)
            .await
            .unwrap(),
    );
    assert_eq!((added, next), (2, 5));
    assert_eq!(offsets(&mut conn).await, [0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn a_wrong_type_or_a_foreign_fence_refuses_before_any_write() {
    let redis = RedisService::start(None).unwrap();
    let sink = sink(&redis).await;
    let mut conn = sink.connection();
    run::<()>(&mut conn, &["HSET", "{s}:offsets", "t:0", "x"]).await;
    run::<()>(&mut conn, &["DEL", "{s}:offsets"]).await;
    run::<()>(&mut conn, &["SET", "{s}:offsets", "a string"]).await;
    let record = OffsetRecord {
        key: "{s}:offsets",
        field: "t:0",
        expected: None,
    };
    let refused = sink
        .push_stream(&batch(0, 3), Some(record), None, None)
        .await
        .unwrap();
    assert_eq!(
        refused,
        Answer::Refused(Refusal::WrongType(WrongType {
            key: "{s}:offsets".into(),
            found: "string".into(),
            wanted: "hash".into(),
        }))
    );
    let fence = Fence {
        key: "{s}:fence",
        token: "7 mine",
    };
    run::<()>(&mut conn, &["SET", "{s}:fence", "8 theirs"]).await;
    let refused = sink
        .push_stream(&batch(0, 3), None, None, Some(fence))
        .await
        .unwrap();
    assert_eq!(refused, Answer::Refused(Refusal::Fence));
    let exists: i64 = run(&mut conn, &["EXISTS", "s"]).await;
    assert_eq!(exists, 0, "nothing written");

    run::<()>(&mut conn, &["RPUSH", "s", "a list"]).await;
    let refused = sink
        .push_stream(&batch(0, 3), None, None, None)
        .await
        .unwrap();
    assert_eq!(
        refused,
        Answer::Refused(Refusal::WrongType(WrongType {
            key: "s".into(),
            found: "list".into(),
            wanted: "stream".into(),
        }))
    );
}
