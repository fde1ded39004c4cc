//! The lane with several batches in flight: the same outcomes as with one (order, offsets stored
//! after Redis took everything before them, retries, pauses, exactly-once records), batches that
//! chain in the list's sequence hash, and connections killed under a window.

use super::*;

fn sequence(conn: &mut ::redis::Connection) -> Option<String> {
    ::redis::cmd("HGET")
        .arg("{list}:sequence")
        .arg("t:0")
        .query(conn)
        .unwrap()
}

/// Messages `range` queued behind what the fake already holds.
fn queue_more(fake: &FakePartition, range: std::ops::Range<i64>) {
    let mut queued = fake.queued.lock().unwrap();
    for o in range {
        queued.push_back((o, format!("m{o}").into_bytes()));
    }
}

#[tokio::test]
async fn a_window_delivers_in_order_and_chains_its_batches() {
    let redis = RedisService::start(None).unwrap();
    let mut conn = redis.connection().unwrap();
    let lane = start_lane_with(&redis, FakePartition::with_messages(103), None, None, 4).await;
    until("offset 103 stored", || lane.fake.stored() == Some(103)).await;
    assert_eq!(list(&redis), values(0..103));
    let chained = sequence(&mut conn).expect("the lane's sequence field");
    assert!(chained.ends_with(":103"), "{chained}");
    lane.stop().await;
}

#[tokio::test]
async fn a_window_retries_while_redis_refuses() {
    retries_while_redis_refuses(4).await;
}

#[tokio::test]
async fn a_window_pauses_on_a_full_list_and_keeps_what_did_not_fit() {
    pauses_on_a_full_list(4).await;
}

#[tokio::test]
async fn an_exactly_once_window_rereads_its_record_when_the_master_changes() {
    rereads_the_record_when_the_master_changes(4).await;
}

#[tokio::test]
async fn a_window_refused_behind_another_value_sends_again_without_a_gap_or_a_duplicate() {
    let redis = RedisService::start(None).unwrap();
    let mut conn = redis.connection().unwrap();
    let fake = FakePartition::with_messages(8);
    let lane = start_lane_with(&redis, fake.clone(), None, None, 4).await;
    until("offset 8 stored", || lane.fake.stored() == Some(8)).await;
    // Another value than the lane's last: its next window is refused whole, then sent again.
    ::redis::cmd("HSET")
        .arg("{list}:sequence")
        .arg("t:0")
        .arg("another:5")
        .query::<()>(&mut conn)
        .unwrap();
    queue_more(&fake, 8..40);
    until("offset 40 stored", || lane.fake.stored() == Some(40)).await;
    assert_eq!(list(&redis), values(0..40), "each message once, in order");
    lane.stop().await;
}

/// Kills the bridge's Redis connections every few milliseconds while a lane pushes `count`
/// messages with a window of 4; returns the list once every offset was stored.
async fn under_killed_connections(
    redis: &RedisService,
    exactly_once: Option<ExactlyOnceLane>,
    count: i64,
) -> Vec<String> {
    let mut conn = redis.connection().unwrap();
    let fake = FakePartition::with_messages(0);
    let lane = start_lane_with(redis, fake.clone(), None, exactly_once, 4).await;
    queue_more(&fake, 0..4);
    until("the first window stored", || lane.fake.stored() == Some(4)).await;
    queue_more(&fake, 4..count);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut kills = 0;
    while lane.fake.stored() != Some(count) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stored only {:?}",
            lane.fake.stored()
        );
        let killed: i64 = ::redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query(&mut conn)
            .unwrap();
        kills += killed;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(kills > 0, "no connection was killed");
    assert!(lane.stats.redis_errors.get() > 0, "no push failed");
    lane.stop().await;
    list(redis)
}

#[tokio::test]
async fn killed_connections_under_a_window_lose_nothing_and_keep_the_order() {
    let redis = RedisService::start(None).unwrap();
    let got = under_killed_connections(&redis, None, 5_000).await;
    // At least once: a batch whose answer was lost may be in twice, never out of order before
    // its first copy, and nothing is missing.
    let mut seen = std::collections::HashSet::new();
    let first_copies: Vec<String> = got.iter().filter(|v| seen.insert(*v)).cloned().collect();
    assert_eq!(first_copies, values(0..5_000));
    let duplicated = got.len() - first_copies.len();
    assert_eq!(
        duplicated, 0,
        "the window's chain keeps what landed from being pushed again"
    );
}

#[tokio::test]
async fn killed_connections_under_an_exactly_once_window_duplicate_nothing() {
    let redis = RedisService::start(None).unwrap();
    let record = ExactlyOnceLane::new("offsets".into(), "t:0".into(), None, true);
    let got = under_killed_connections(&redis, Some(record), 5_000).await;
    assert_eq!(got, values(0..5_000), "each message once, in order");
}

/// Calls of `command` the server has run (`INFO commandstats`).
fn calls(conn: &mut ::redis::Connection, command: &str) -> u64 {
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query(conn)
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn with_the_wait_guard_one_wait_covers_a_window() {
    let redis = RedisService::start(None).unwrap();
    let _replica = redis.start_replica().unwrap();
    let mut conn = redis.connection().unwrap();
    let mut config = RedisConfig::standalone(redis.address.clone());
    config.wait_replicas = Some(1);
    let fake = FakePartition::with_messages(400);
    let lane = start_lane_on(config, fake, None, None, 4).await;
    until("offset 400 stored", || lane.fake.stored() == Some(400)).await;
    assert_eq!(list(&redis), values(0..400));
    let (pushes, waits) = (calls(&mut conn, "exec"), calls(&mut conn, "wait"));
    // 100 batches of 4: each window's last batch carries the one WAIT of the window.
    assert!(pushes >= 100, "{pushes} pushes");
    assert!(waits * 2 <= pushes, "{waits} WAITs for {pushes} pushes");
    lane.stop().await;
}

fn replica_of(replica: &RedisService, master: Option<&RedisService>) {
    let mut cmd = ::redis::cmd("REPLICAOF");
    match master {
        Some(master) => {
            let (host, port) = master.address.rsplit_once(':').unwrap();
            cmd.arg(host).arg(port)
        }
        None => cmd.arg("NO").arg("ONE"),
    };
    cmd.query::<()>(&mut replica.connection().unwrap()).unwrap();
}

#[tokio::test]
async fn batches_that_landed_without_a_confirming_wait_are_not_pushed_again() {
    let redis = RedisService::start(None).unwrap();
    let replica = redis.start_replica().unwrap();
    let mut config = RedisConfig::standalone(redis.address.clone());
    config.wait_replicas = Some(1);
    config.wait_timeout = Duration::from_millis(100);
    let fake = FakePartition::with_messages(40);
    let lane = start_lane_on(config, fake.clone(), None, None, 4).await;
    until("offset 40 stored", || lane.fake.stored() == Some(40)).await;
    // No replica confirms anything now: what lands stays unconfirmed, its offsets unstored.
    replica_of(&replica, None);
    queue_more(&fake, 40..80);
    until("the messages on the master", || list(&redis).len() >= 80).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        lane.fake.stored(),
        Some(40),
        "stored before a WAIT confirmed"
    );
    replica_of(&replica, Some(&redis));
    until("offset 80 stored", || lane.fake.stored() == Some(80)).await;
    assert_eq!(list(&redis), values(0..80), "each message once, in order");
    lane.stop().await;
}
