//! The unfinished-work rule against a real `redis-server`: pending plus undelivered per group, the
//! busiest group counts, and a group whose lag Redis cannot tell is counted from its position.

use super::*;
use crate::bench::services::RedisService;
use crate::config::RedisConfig;
use crate::redis::{RedisConnection, RedisSink};

async fn connect(redis: &RedisService) -> RedisConnection {
    RedisSink::connect(&RedisConfig::standalone(redis.address.clone()))
        .await
        .expect("connecting to the test Redis")
        .connection()
}

async fn run<T: ::redis::FromRedisValue>(conn: &mut RedisConnection, args: &[&str]) -> T {
    let mut cmd = ::redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(conn).await.unwrap()
}

async fn add(conn: &mut RedisConnection, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(run(conn, &["XADD", "s", "*", "value", &i.to_string()]).await);
    }
    ids
}

/// An entry: its id and its field names and values in turn.
type Entry = (String, Vec<Vec<u8>>);

/// Reads `count` new entries as `group`'s consumer `c`.
async fn read(conn: &mut RedisConnection, group: &str, count: usize) -> Vec<String> {
    let reply: Vec<(String, Vec<Entry>)> = run(
        conn,
        &[
            "XREADGROUP",
            "GROUP",
            group,
            "c",
            "COUNT",
            &count.to_string(),
            "STREAMS",
            "s",
            ">",
        ],
    )
    .await;
    reply
        .into_iter()
        .flat_map(|(_, entries)| entries)
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test]
async fn the_busiest_group_counts_pending_and_undelivered() {
    let redis = RedisService::start(None).unwrap();
    let mut conn = connect(&redis).await;
    assert_eq!(unfinished(&mut conn, "s").await.unwrap(), 0, "no stream");
    add(&mut conn, 5).await;
    assert_eq!(unfinished(&mut conn, "s").await.unwrap(), 5, "no group");

    run::<()>(&mut conn, &["XGROUP", "CREATE", "s", "fast", "0"]).await;
    let read_ids = read(&mut conn, "fast", 2).await;
    assert_eq!(
        unfinished(&mut conn, "s").await.unwrap(),
        5,
        "2 pending + 3 new"
    );
    run::<()>(&mut conn, &["XACK", "s", "fast", &read_ids[0]]).await;
    assert_eq!(unfinished(&mut conn, "s").await.unwrap(), 4);

    run::<()>(&mut conn, &["XGROUP", "CREATE", "s", "late", "$"]).await;
    assert_eq!(
        unfinished(&mut conn, "s").await.unwrap(),
        4,
        "the busiest group"
    );
    add(&mut conn, 1).await;
    assert_eq!(unfinished(&mut conn, "s").await.unwrap(), 5);
}

#[tokio::test]
async fn a_group_without_a_lag_is_counted_from_its_position() {
    let redis = RedisService::start(None).unwrap();
    let mut conn = connect(&redis).await;
    let ids = add(&mut conn, 10).await;
    run::<()>(&mut conn, &["XGROUP", "CREATE", "s", "g", "0"]).await;
    read(&mut conn, "g", 3).await;
    // An entry deleted after the group's position: Redis can no longer tell its lag.
    run::<()>(&mut conn, &["XDEL", "s", &ids[6]]).await;
    let groups: Vec<Vec<::redis::Value>> = run(&mut conn, &["XINFO", "GROUPS", "s"]).await;
    let lag = groups[0]
        .chunks(2)
        .find(|kv| kv[0] == ::redis::Value::BulkString(b"lag".to_vec()))
        .map(|kv| kv[1].clone());
    assert_eq!(lag, Some(::redis::Value::Nil), "Redis cannot tell the lag");
    assert_eq!(
        unfinished(&mut conn, "s").await.unwrap(),
        3 + 6,
        "3 pending, 6 entries left after the position"
    );
}

#[tokio::test]
async fn many_entries_after_an_unknown_position_are_bounded_by_the_length() {
    let redis = RedisService::start(None).unwrap();
    let mut conn = connect(&redis).await;
    let ids = add(&mut conn, 300).await;
    run::<()>(&mut conn, &["XGROUP", "CREATE", "s", "g", "0"]).await;
    read(&mut conn, "g", 10).await;
    run::<()>(&mut conn, &["XDEL", "s", &ids[200]]).await;
    let unfinished = unfinished(&mut conn, "s").await.unwrap();
    assert_eq!(
        unfinished, 299,
        "the stream's length holds pending and undelivered"
    );
}

/// The trim point is computed on ids as decimal strings: sequence numbers beyond what a Lua number
/// holds exactly still trim only what the group finished.
#[tokio::test]
async fn large_sequence_numbers_trim_exactly() {
    use crate::pipeline::batch::{write_part, Batch};
    let redis = RedisService::start(None).unwrap();
    let sink = RedisSink::connect(&RedisConfig::standalone(redis.address.clone()))
        .await
        .unwrap();
    let mut conn = sink.connection();
    for seq in [
        "9007199254740993",
        "9007199254740994",
        "18446744073709551615",
    ] {
        run::<String>(&mut conn, &["XADD", "s", &format!("5-{seq}"), "value", seq]).await;
    }
    run::<()>(&mut conn, &["XGROUP", "CREATE", "s", "g", "0"]).await;
    let read_ids = read(&mut conn, "g", 1).await;
    run::<()>(&mut conn, &["XACK", "s", "g", &read_ids[0]]).await;
    let mut batch = Batch::new("s".into(), "s:dead".into());
    batch.add_with(0, None, false, |buf| {
        write_part(buf, b"value");
        write_part(buf, b"new");
    });
    sink.push_stream(&batch, None, None, None).await.unwrap();
    let left: Vec<(String, Vec<Vec<u8>>)> = run(&mut conn, &["XRANGE", "s", "-", "+"]).await;
    let ids: Vec<&str> = left.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        &ids[..2],
        ["5-9007199254740994", "5-18446744073709551615"],
        "only the acknowledged entry trimmed"
    );
    assert_eq!(unfinished(&mut conn, "s").await.unwrap(), 3);
}

#[test]
fn entry_ids_carry_milliseconds() {
    assert_eq!(id_ms("1700000000123-4"), Some(1_700_000_000_123));
    assert_eq!(id_ms("17"), Some(17));
    assert_eq!(id_ms("x-1"), None);
}

/// The unfinished count and the oldest unfinished entry's millisecond.
async fn waiting_ms(conn: &mut RedisConnection) -> (u64, Option<i64>) {
    let w = waiting_with_oldest(conn, "s").await.unwrap();
    (w.unfinished, w.oldest.as_deref().and_then(id_ms))
}

#[tokio::test]
async fn the_oldest_unfinished_entry_is_the_earliest_over_groups_of_pending_or_undelivered() {
    let redis = RedisService::start(None).unwrap();
    let mut conn = connect(&redis).await;
    assert_eq!(waiting_ms(&mut conn).await, (0, None), "no stream");
    for i in 1..=10 {
        let _: String = run(&mut conn, &["XADD", "s", &format!("{i}000-0"), "v", "x"]).await;
    }
    assert_eq!(
        waiting_ms(&mut conn).await,
        (10, Some(1000)),
        "without groups the whole stream waits, from its first entry"
    );

    // Group a: 4 delivered, 2 of them acknowledged -> 6 undelivered + 2 pending.
    let _: () = run(&mut conn, &["XGROUP", "CREATE", "s", "a", "0"]).await;
    let read = [
        "XREADGROUP",
        "GROUP",
        "a",
        "w1",
        "COUNT",
        "4",
        "STREAMS",
        "s",
        ">",
    ];
    let _: ::redis::Value = run(&mut conn, &read).await;
    let _: u64 = run(&mut conn, &["XACK", "s", "a", "1000-0", "2000-0"]).await;
    // Group b: 7 delivered, all acknowledged -> 3 undelivered.
    let _: () = run(&mut conn, &["XGROUP", "CREATE", "s", "b", "0"]).await;
    let read = [
        "XREADGROUP",
        "GROUP",
        "b",
        "w2",
        "COUNT",
        "7",
        "STREAMS",
        "s",
        ">",
    ];
    let _: ::redis::Value = run(&mut conn, &read).await;
    let ids: Vec<String> = (1..=7).map(|i| format!("{i}000-0")).collect();
    let mut ack = vec!["XACK", "s", "b"];
    ack.extend(ids.iter().map(String::as_str));
    let _: u64 = run(&mut conn, &ack).await;
    assert_eq!(
        waiting_ms(&mut conn).await,
        (8, Some(3000)),
        "a: 6 undelivered + 2 pending, its oldest pending entry"
    );

    // a acknowledges its pending entries: its oldest is then its first undelivered (5000), b's the
    // first after its last-delivered id (8000).
    let _: u64 = run(&mut conn, &["XACK", "s", "a", "3000-0", "4000-0"]).await;
    assert_eq!(waiting_ms(&mut conn).await, (6, Some(5000)));

    // Everything finished by both groups: nothing waits.
    for g in ["a", "b"] {
        let read = [
            "XREADGROUP",
            "GROUP",
            g,
            "w",
            "COUNT",
            "100",
            "STREAMS",
            "s",
            ">",
        ];
        let _: ::redis::Value = run(&mut conn, &read).await;
    }
    for id in ["5000-0", "6000-0", "7000-0", "8000-0", "9000-0", "10000-0"] {
        let _: u64 = run(&mut conn, &["XACK", "s", "a", id]).await;
        let _: u64 = run(&mut conn, &["XACK", "s", "b", id]).await;
    }
    assert_eq!(waiting_ms(&mut conn).await, (0, None));
}
