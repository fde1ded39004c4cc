//! What waits in a Redis stream for its consumer groups: how many entries some group has not
//! finished, and the id of the oldest such entry.
//!
//! A group has not finished the entries it was never handed (`lag` in `XINFO GROUPS`) and those it
//! was handed but has not acknowledged (`pending`); the stream's figure is the largest over its
//! groups, since every group gets every entry. Where Redis reports no `lag` (entries deleted past
//! the group's last-delivered id, or `entries-read` unknown) the entries after the last-delivered id
//! are counted instead, when few (else the stream's length, which holds them all, stands for them).
//! A stream without any group is waited on by its whole length.
//!
//! The oldest unfinished entry of a group is its oldest pending one (`XPENDING`'s summary) or, with
//! nothing pending, the first entry after its last-delivered id. Entry ids begin with the
//! millisecond Redis added them at, which gives the age.

use redis::aio::ConnectionLike;
use redis::{RedisResult, Value};

/// At most this many entries are counted one by one for a group without `lag`; more, and the
/// stream's length stands for them (an upper bound).
const COUNT_LIMIT: usize = 100;

/// A stream's unfinished work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamWaiting {
    /// The largest over the groups of (not yet delivered + pending); the length without groups.
    pub unfinished: u64,
    /// Milliseconds part of the oldest unfinished entry's id; `None` when nothing waits.
    pub oldest_ms: Option<i64>,
}

/// One consumer group as `XINFO GROUPS` describes it.
#[derive(Debug, Default)]
struct Group {
    name: String,
    pending: u64,
    last_delivered: String,
    lag: Option<u64>,
}

pub async fn stream_waiting<C: ConnectionLike>(
    conn: &mut C,
    key: &str,
) -> RedisResult<StreamWaiting> {
    let exists: bool = redis::cmd("EXISTS").arg(key).query_async(conn).await?;
    if !exists {
        return Ok(StreamWaiting::default());
    }
    let reply: Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(key)
        .query_async(conn)
        .await?;
    let groups = parse_groups(reply);
    if groups.is_empty() {
        let length: u64 = redis::cmd("XLEN").arg(key).query_async(conn).await?;
        let first = first_id_after(conn, key, None).await?;
        return Ok(StreamWaiting {
            unfinished: length,
            oldest_ms: first.as_deref().and_then(id_ms),
        });
    }
    let mut waiting = StreamWaiting::default();
    for group in &groups {
        let undelivered = match group.lag {
            Some(lag) => lag,
            None => match count_after(conn, key, &group.last_delivered).await? {
                n if n < COUNT_LIMIT as u64 => n,
                _ => redis::cmd("XLEN").arg(key).query_async(conn).await?,
            },
        };
        waiting.unfinished = waiting.unfinished.max(undelivered + group.pending);
        let oldest = if group.pending > 0 {
            oldest_pending(conn, key, &group.name).await?
        } else {
            first_id_after(conn, key, Some(&group.last_delivered)).await?
        };
        if let Some(ms) = oldest.as_deref().and_then(id_ms) {
            waiting.oldest_ms = Some(waiting.oldest_ms.map_or(ms, |o| o.min(ms)));
        }
    }
    Ok(waiting)
}

/// The groups out of an `XINFO GROUPS` reply (RESP2 flat pairs or RESP3 maps).
fn parse_groups(reply: Value) -> Vec<Group> {
    let Value::Array(groups) = reply else {
        return Vec::new();
    };
    groups
        .into_iter()
        .map(|g| {
            let pairs: Vec<(Value, Value)> = match g {
                Value::Map(pairs) => pairs,
                Value::Array(flat) => {
                    let mut it = flat.into_iter();
                    std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
                }
                _ => Vec::new(),
            };
            let mut group = Group::default();
            for (field, value) in pairs {
                match text(&field).as_deref() {
                    Some("name") => group.name = text(&value).unwrap_or_default(),
                    Some("pending") => group.pending = number(&value).unwrap_or(0),
                    Some("last-delivered-id") => {
                        group.last_delivered = text(&value).unwrap_or_default()
                    }
                    Some("lag") => group.lag = number(&value),
                    _ => {}
                }
            }
            group
        })
        .collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// The millisecond part of an entry id (`<ms>-<seq>`).
pub fn id_ms(id: &str) -> Option<i64> {
    id.split_once('-').map_or(id, |(ms, _)| ms).parse().ok()
}

/// The first entry's id, or the first after `after` (exclusive).
async fn first_id_after<C: ConnectionLike>(
    conn: &mut C,
    key: &str,
    after: Option<&str>,
) -> RedisResult<Option<String>> {
    let start = after.map_or("-".to_string(), |id| format!("({id}"));
    let entries: Vec<(String, Value)> = redis::cmd("XRANGE")
        .arg(key)
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(entries.into_iter().next().map(|(id, _)| id))
}

/// Entries after `after`, counted (up to [`COUNT_LIMIT`]).
async fn count_after<C: ConnectionLike>(conn: &mut C, key: &str, after: &str) -> RedisResult<u64> {
    let entries: Vec<(String, Value)> = redis::cmd("XRANGE")
        .arg(key)
        .arg(format!("({after}"))
        .arg("+")
        .arg("COUNT")
        .arg(COUNT_LIMIT)
        .query_async(conn)
        .await?;
    Ok(entries.len() as u64)
}

/// The smallest pending id of `group` (`XPENDING key group`: count, smallest, greatest, consumers).
async fn oldest_pending<C: ConnectionLike>(
    conn: &mut C,
    key: &str,
    group: &str,
) -> RedisResult<Option<String>> {
    let summary: Vec<Value> = redis::cmd("XPENDING")
        .arg(key)
        .arg(group)
        .query_async(conn)
        .await?;
    Ok(summary.get(1).and_then(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::services::RedisService;

    async fn connect(redis: &RedisService) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://{}", redis.address))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    async fn run(conn: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> Value {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(conn).await.unwrap()
    }

    #[test]
    fn entry_ids_carry_milliseconds() {
        assert_eq!(id_ms("1700000000123-4"), Some(1_700_000_000_123));
        assert_eq!(id_ms("17"), Some(17));
        assert_eq!(id_ms("x-1"), None);
    }

    #[tokio::test]
    async fn unfinished_entries_are_the_largest_over_groups_of_undelivered_plus_pending() {
        let redis = RedisService::start(None).unwrap();
        let mut conn = connect(&redis).await;
        assert_eq!(
            stream_waiting(&mut conn, "s").await.unwrap(),
            StreamWaiting::default()
        );
        for i in 1..=10 {
            run(&mut conn, &["XADD", "s", &format!("{i}000-0"), "v", "x"]).await;
        }
        // Without groups the whole stream waits, from its first entry.
        let w = stream_waiting(&mut conn, "s").await.unwrap();
        assert_eq!((w.unfinished, w.oldest_ms), (10, Some(1000)));

        // Group a: 4 delivered, 2 of them acknowledged -> 6 undelivered + 2 pending.
        run(&mut conn, &["XGROUP", "CREATE", "s", "a", "0"]).await;
        run(
            &mut conn,
            &[
                "XREADGROUP",
                "GROUP",
                "a",
                "w1",
                "COUNT",
                "4",
                "STREAMS",
                "s",
                ">",
            ],
        )
        .await;
        run(&mut conn, &["XACK", "s", "a", "1000-0", "2000-0"]).await;
        // Group b: 7 delivered, all acknowledged -> 3 undelivered.
        run(&mut conn, &["XGROUP", "CREATE", "s", "b", "0"]).await;
        run(
            &mut conn,
            &[
                "XREADGROUP",
                "GROUP",
                "b",
                "w2",
                "COUNT",
                "7",
                "STREAMS",
                "s",
                ">",
            ],
        )
        .await;
        let ids: Vec<String> = (1..=7).map(|i| format!("{i}000-0")).collect();
        let mut ack = vec!["XACK", "s", "b"];
        ack.extend(ids.iter().map(String::as_str));
        run(&mut conn, &ack).await;

        let w = stream_waiting(&mut conn, "s").await.unwrap();
        assert_eq!(w.unfinished, 8, "group a: 6 undelivered + 2 pending");
        assert_eq!(w.oldest_ms, Some(3000), "a's oldest pending entry");

        // a acknowledges its pending entries: its oldest is then the first undelivered (5000),
        // b's the first after its last-delivered id (8000).
        run(&mut conn, &["XACK", "s", "a", "3000-0", "4000-0"]).await;
        let w = stream_waiting(&mut conn, "s").await.unwrap();
        assert_eq!((w.unfinished, w.oldest_ms), (6, Some(5000)));

        // Deleting past a's last-delivered id leaves its lag unknown: the entries after it count.
        run(&mut conn, &["XDEL", "s", "9000-0"]).await;
        let w = stream_waiting(&mut conn, "s").await.unwrap();
        assert_eq!((w.unfinished, w.oldest_ms), (5, Some(5000)));

        // Everything finished by both groups: nothing waits.
        for g in ["a", "b"] {
            run(
                &mut conn,
                &[
                    "XREADGROUP",
                    "GROUP",
                    g,
                    "w",
                    "COUNT",
                    "100",
                    "STREAMS",
                    "s",
                    ">",
                ],
            )
            .await;
        }
        for id in ["5000-0", "6000-0", "7000-0", "8000-0", "10000-0"] {
            run(&mut conn, &["XACK", "s", "a", id]).await;
            run(&mut conn, &["XACK", "s", "b", id]).await;
        }
        let w = stream_waiting(&mut conn, "s").await.unwrap();
        assert_eq!((w.unfinished, w.oldest_ms), (0, None));
    }
}
