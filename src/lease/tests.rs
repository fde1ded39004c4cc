//! The fence scripts against a real `redis-server`: a fence only moves forward, and a fencing
//! number never restarts below one a fence holds.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::bench::services::RedisService;
use crate::config::RedisConfig;
use crate::redis::RedisSink;

async fn connection(redis: &RedisService) -> RedisConnection {
    RedisSink::connect(&RedisConfig::standalone(redis.address.clone()))
        .await
        .expect("connecting to the test Redis")
        .connection()
}

async fn get(conn: &RedisConnection, key: &str) -> Option<String> {
    let mut conn = conn.clone();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn set(conn: &RedisConnection, key: &str, value: &str) {
    let mut conn = conn.clone();
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

/// Takes the lease on `key` and writes its fences.
async fn holder(conn: &RedisConnection, key: &str, fences: &[String]) -> (Lease, Fenced) {
    let stop = CancellationToken::new();
    let mut lease = Lease::acquire(conn.clone(), key, Duration::from_secs(10), &stop)
        .await
        .expect("the lease is free");
    let fenced = lease.fence(fences, &stop).await;
    (lease, fenced)
}

#[tokio::test]
async fn a_fence_only_moves_forward() {
    let redis = RedisService::start(None).unwrap();
    let conn = connection(&redis).await;
    let fences = vec!["{a}:fence".to_string(), "{b}:fence".to_string()];

    let (old, fenced) = holder(&conn, "lease", &fences).await;
    assert_eq!(fenced, Fenced::Written);
    assert_eq!(old.number, 1);
    assert_eq!(get(&conn, "{a}:fence").await, Some(old.fence_value()));
    old.release().await;
    let (new, fenced) = holder(&conn, "lease", &fences).await;
    assert_eq!(fenced, Fenced::Written);
    assert_eq!(new.number, 2);

    // The old holder writing its fence again (a heal that raced the takeover) changes nothing.
    assert_eq!(
        old.write_fences(false).await.unwrap(),
        Fenced::Superseded,
        "a lower fencing number cannot overwrite a newer fence"
    );
    assert_eq!(get(&conn, "{a}:fence").await, Some(new.fence_value()));
    assert_eq!(get(&conn, "{b}:fence").await, Some(new.fence_value()));

    // A fence that vanished is written again by its holder, with the same value.
    redis_del(&conn, "{b}:fence").await;
    assert_eq!(new.write_fences(false).await.unwrap(), Fenced::Written);
    assert_eq!(get(&conn, "{b}:fence").await, Some(new.fence_value()));

    // …but not by the old holder, which sees the newer number on another fence before writing.
    redis_del(&conn, "{b}:fence").await;
    assert_eq!(old.write_fences(false).await.unwrap(), Fenced::Superseded);
    assert_eq!(get(&conn, "{b}:fence").await, None);
}

#[tokio::test]
async fn a_lost_counter_does_not_restart_the_fencing_numbers() {
    let redis = RedisService::start(None).unwrap();
    let conn = connection(&redis).await;
    let fences = vec!["{a}:fence".to_string()];
    let (first, _) = holder(&conn, "lease", &fences).await;
    first.release().await;
    let (second, _) = holder(&conn, "lease", &fences).await;
    assert_eq!(second.number, 2);
    second.release().await;
    redis_del(&conn, "lease:fencing").await;
    let (third, fenced) = holder(&conn, "lease", &fences).await;
    assert_eq!(fenced, Fenced::Written);
    assert_eq!(third.number, 3, "above the highest fence, not 1");
    assert_eq!(get(&conn, "lease:fencing").await.as_deref(), Some("3"));
}

/// An older release's fence holds its token alone. A new holder overwrites it when it takes the
/// lease (the older instance gave the lease up or lost it); later, while holding, such a value
/// means an older instance took the lease, and the holder steps down.
#[tokio::test]
async fn an_older_releases_fence_is_replaced_when_the_lease_is_taken() {
    let redis = RedisService::start(None).unwrap();
    let conn = connection(&redis).await;
    let fences = vec!["{a}:fence".to_string(), "{b}:fence".to_string()];
    set(&conn, "{a}:fence", "oldhost:4242:0000abcd").await;
    let (holder, fenced) = holder(&conn, "lease", &fences).await;
    assert_eq!(fenced, Fenced::Written);
    assert_eq!(get(&conn, "{a}:fence").await, Some(holder.fence_value()));

    set(&conn, "{b}:fence", "oldhost:4242:0000abcd").await;
    assert_eq!(
        holder.write_fences(false).await.unwrap(),
        Fenced::Superseded
    );
    assert_eq!(
        get(&conn, "{b}:fence").await.as_deref(),
        Some("oldhost:4242:0000abcd")
    );
}

#[test]
fn fencing_numbers_are_read_from_fence_values() {
    assert_eq!(fencing_number("17 host:12:0000abcd"), Some(17));
    assert_eq!(fencing_number("host:12:0000abcd"), None);
    assert_eq!(fencing_number("12345:12:0000abcd"), None);
}

async fn redis_del(conn: &RedisConnection, key: &str) {
    let mut conn = conn.clone();
    redis::cmd("DEL")
        .arg(key)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}
