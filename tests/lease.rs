//! The exclusive lease: one instance pushes, a standby takes over after a `kill -9` or a clean
//! stop of the holder, and two instances never push at the same time.
//!
//! Each instance pushes the same topic to its *own* list (`A:<topic>`, `B:<topic>`), so the data
//! says who pushed when: a sampler thread watches both lists and records every interval in which
//! each grew.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::proxy::HoldingProxy;
use common::*;

const TTL_MS: u64 = 2000;

/// The lease on `topic` (TTL [`TTL_MS`]), with one instance's own list `<owner>:<topic>`.
fn config(broker: &Broker, redis: &RedisServer, topic: &str, owner: &str) -> Config {
    Config::new(
        broker,
        redis,
        topic,
        &format!(r#"[{{ name = "{topic}", list = "{owner}:{topic}" }}]"#),
    )
    .sections(&lease(topic))
    .sections("[lag]\ninterval_ms = 500")
}

fn lease(topic: &str) -> String {
    format!("[lease]\nkey = \"lease:{topic}\"\nttl_ms = {TTL_MS}")
}

/// Samples both lists' lengths every 20 ms; records (when, which lists grew).
struct Sampler {
    stop: Arc<AtomicBool>,
    growth: Arc<Mutex<Vec<(Instant, bool, bool)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    fn start(redis: &RedisServer, a: String, b: String) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let growth = Arc::new(Mutex::new(Vec::new()));
        let mut conn = redis.conn();
        let (flag, log) = (stop.clone(), growth.clone());
        let thread = std::thread::spawn(move || {
            let len = |conn: &mut redis::Connection, k: &str| -> usize {
                redis::cmd("LLEN").arg(k).query(conn).unwrap_or(0)
            };
            let (mut last_a, mut last_b) = (len(&mut conn, &a), len(&mut conn, &b));
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
                let (na, nb) = (len(&mut conn, &a), len(&mut conn, &b));
                log.lock()
                    .unwrap()
                    .push((Instant::now(), na > last_a, nb > last_b));
                (last_a, last_b) = (na, nb);
            }
        });
        Sampler {
            stop,
            growth,
            thread: Some(thread),
        }
    }

    /// First moment after `since` at which list A (`a = true`) or B grew.
    fn first_growth(&self, since: Instant, a: bool) -> Option<Instant> {
        self.growth
            .lock()
            .unwrap()
            .iter()
            .find(|(t, ga, gb)| *t > since && if a { *ga } else { *gb })
            .map(|(t, _, _)| *t)
    }

    fn finish(mut self) -> Vec<(Instant, bool, bool)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.growth.lock().unwrap())
    }
}

#[test]
fn standby_takes_over_after_kill_and_clean_stop_and_never_pushes_alongside() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("lease");
    broker.create_topic(&topic, 2);
    let (list_a, list_b) = (format!("A:{topic}"), format!("B:{topic}"));
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    config(broker, &redis, &topic, "A").write(dir_a.path(), "k.toml");
    config(broker, &redis, &topic, "B").write(dir_b.path(), "k.toml");
    let port_b = free_port();
    let http_b = format!("127.0.0.1:{port_b}");

    let mut a = Bridge::start(dir_a.path(), &["--config", "k.toml"]);
    a.wait_assigned();
    let producer = Trickle::start(broker, &topic);
    wait_until("A pushes", Duration::from_secs(30), || {
        redis.llen(&list_a) > 0
    });
    let mut b = Bridge::start(dir_b.path(), &["--config", "k.toml", "--http", &http_b]);
    wait_until("B stands by", Duration::from_secs(30), || {
        b.log_text().contains("waiting as a standby")
    });
    let sampler = Sampler::start(&redis, list_a.clone(), list_b.clone());

    // While A holds the lease, only A's list grows.
    std::thread::sleep(Duration::from_millis(2 * TTL_MS)); // an observation window, not a wait
    assert_eq!(redis.llen(&list_b), 0, "the standby pushed nothing");
    assert!(!b.log_text().contains("partitions assigned"));

    // kill -9 the holder: B takes over once the lease expires.
    let killed = Instant::now();
    a.kill9();
    wait_until("B takes the lease", Duration::from_secs(30), || {
        b.log_text().contains("lease taken")
    });
    let lease_after_kill = killed.elapsed();
    wait_until(
        "B pushes after A was killed",
        Duration::from_secs(60),
        || redis.llen(&list_b) > 0,
    );
    let after_kill = sampler
        .first_growth(killed, false)
        .unwrap_or_else(Instant::now)
        .duration_since(killed);

    // A comes back as the standby; a clean stop of B hands over at once (no TTL wait).
    let a = Bridge::start(dir_a.path(), &["--config", "k.toml"]);
    wait_until("A stands by", Duration::from_secs(30), || {
        a.log_text().contains("waiting as a standby")
    });
    let len_a = redis.llen(&list_a);
    std::thread::sleep(Duration::from_millis(TTL_MS)); // observation window
    assert_eq!(redis.llen(&list_a), len_a, "the new standby pushed nothing");
    let stopped = Instant::now();
    b.signal(libc::SIGTERM);
    wait_until("A pushes after B stopped", Duration::from_secs(60), || {
        redis.llen(&list_a) > len_a
    });
    let after_stop = sampler
        .first_growth(stopped, true)
        .unwrap_or_else(Instant::now)
        .duration_since(stopped);
    assert!(b.wait_exit(Duration::from_secs(30)).success());
    assert!(b.log_text().contains("lease released"));

    let produced = producer.finish();
    let growth = sampler.finish();
    let both: Vec<_> = growth.iter().filter(|(_, ga, gb)| *ga && *gb).collect();
    assert!(
        both.is_empty(),
        "both lists grew within one 20 ms sample {} time(s)",
        both.len()
    );
    eprintln!(
        "lease TTL {TTL_MS} ms: after kill -9 the standby took the lease in {} ms and pushed in {} ms; \
         after a clean stop it pushed in {} ms ({produced} messages produced)",
        lease_after_kill.as_millis(),
        after_kill.as_millis(),
        after_stop.as_millis()
    );
    // The lease itself: within one TTL (plus the standby's retry step).
    assert!(
        lease_after_kill <= Duration::from_millis(TTL_MS + TTL_MS / 10 + 700),
        "lease taken {lease_after_kill:?} after kill -9"
    );
    // Pushing: the lease plus the group join. Static membership means no session timeout (45 s)
    // to wait out; Tansu pauses a static member's JoinGroup and SyncGroup 3 s each (a broker
    // artefact; Kafka answers a known static member at once), hence the allowance.
    let join = Duration::from_millis(12_000); // far below the 45 s session timeout
    assert!(
        after_kill <= Duration::from_millis(TTL_MS) + join,
        "takeover after kill -9 took {after_kill:?}"
    );
    assert!(
        after_stop <= join,
        "takeover after a clean stop took {after_stop:?}"
    );
    // Nothing lost: every produced message reached one of the lists.
    let mut seen = std::collections::HashSet::new();
    for e in redis.list(&list_a).into_iter().chain(redis.list(&list_b)) {
        seen.insert(e);
    }
    wait_until("everything delivered", Duration::from_secs(30), || {
        let mut all = seen.clone();
        all.extend(redis.list(&list_a));
        all.len() >= produced
    });
    drop(a);
}

/// A holder whose lease now carries another owner's token stops pushing within one renewal, stands
/// by, and pushes again once the lease is free.
#[test]
fn holder_stops_pushing_when_the_token_changes() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("fence");
    broker.create_topic(&topic, 2);
    let list = format!("A:{topic}");
    let key = format!("lease:{topic}");
    let dir = tempfile::tempdir().unwrap();
    config(broker, &redis, &topic, "A").write(dir.path(), "k.toml");
    let a = Bridge::start(dir.path(), &["--config", "k.toml"]);
    a.wait_assigned();
    let producer = Trickle::start(broker, &topic);
    wait_until("A pushes", Duration::from_secs(30), || {
        redis.llen(&list) > 0
    });

    // `status` names the holder.
    let out = run_bridge(dir.path(), &["status", "--config", "k.toml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("lease {key:?}: held by ")), "{text}");

    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("intruder")
        .arg("PX")
        .arg(60_000)
        .query(&mut redis.conn())
        .unwrap();
    let changed = Instant::now();
    wait_until(
        "A notices the lease is lost",
        Duration::from_secs(10),
        || a.log_text().contains("lease lost"),
    );
    let noticed = changed.elapsed();
    assert!(
        noticed <= Duration::from_millis(TTL_MS / 3 + 1000),
        "noticed after {noticed:?}"
    );
    // Whatever was in flight has landed by now; from here on the list must not grow.
    wait_until("A stands by again", Duration::from_secs(30), || {
        a.log_text().matches("waiting as a standby").count() == 1
    });
    let frozen = redis.llen(&list);
    std::thread::sleep(Duration::from_millis(2 * TTL_MS)); // observation window
    assert_eq!(redis.llen(&list), frozen, "no push without the lease");

    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query(&mut redis.conn())
        .unwrap();
    wait_until(
        "A pushes again once the lease is free",
        Duration::from_secs(30),
        || redis.llen(&list) > frozen,
    );
    producer.finish();
}

/// A lease holder A that reaches Redis only through a [`HoldingProxy`], a standby B connected
/// directly, both on one topic of 2 partitions and one list, after A pushed a first `batch`.
struct CutHolder {
    redis: RedisServer,
    proxy: HoldingProxy,
    topic: String,
    list: String,
    a: Bridge,
    b: Bridge,
    batch: usize,
    _dirs: [tempfile::TempDir; 2],
}

impl CutHolder {
    fn start(broker: &'static Broker, prefix: &str) -> CutHolder {
        let redis = RedisServer::start();
        let proxy = HoldingProxy::start(redis.port);
        let topic = unique(prefix);
        broker.create_topic(&topic, 2);
        let list = format!("queues:{topic}");
        let config = |redis: &str| {
            Config::new(broker, redis, &topic, &format!(r#"["{topic}"]"#)).sections(&lease(&topic))
        };
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        config(&format!(
            "[redis]\naddresses = [\"127.0.0.1:{}\"]\n",
            proxy.port
        ))
        .write(dirs[0].path(), "k.toml");
        config(&redis.redis_section()).write(dirs[1].path(), "k.toml");
        let a = Bridge::start(dirs[0].path(), &["--config", "k.toml"]);
        a.wait_assigned();
        let b = Bridge::start(dirs[1].path(), &["--config", "k.toml"]);
        wait_until("B stands by", Duration::from_secs(30), || {
            b.log_text().contains("waiting as a standby")
        });
        // One numbering for the whole run, so that per partition the sequence says the order.
        let batch = 300;
        broker.produce_numbered(&topic, 2, 0, batch);
        wait_until("A pushes", Duration::from_secs(30), || {
            redis.llen(&list) >= batch
        });
        CutHolder {
            redis,
            proxy,
            topic,
            list,
            a,
            b,
            batch,
            _dirs: dirs,
        }
    }
}

/// SIGTERM to each in turn; each must stop cleanly.
fn stop_cleanly(bridges: [&mut Bridge; 2]) {
    for bridge in bridges {
        bridge.signal(libc::SIGTERM);
        assert!(
            bridge.wait_exit(Duration::from_secs(30)).success(),
            "{}",
            bridge.log_text()
        );
    }
}

/// The `count` messages `produce_numbered` makes over the topic's 2 partitions.
fn numbered(topic: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("{topic}:{}:{i:08}", i % 2))
        .collect()
}

/// Fencing inside Redis. Holder A reaches Redis through a link that stops passing bytes (held, as
/// a partition holds them) for longer than the lease's TTL; standby B takes the lease and pushes;
/// then the link heals and everything A had sent arrives. Both push to the same list: per
/// partition its sequence may go back once (B re-delivers from the last commit), never again (A's
/// late pushes landing after B's), and nothing may be missing.
#[test]
fn a_holder_cut_off_past_the_ttl_cannot_land_a_push_after_the_new_holder() {
    let broker = Broker::shared();
    let CutHolder {
        redis,
        proxy,
        topic,
        list,
        mut a,
        mut b,
        batch,
        _dirs,
    } = CutHolder::start(broker, "fence");

    // Cut A off, then give it messages: its pushes of them go on the wire and wait there.
    proxy.hold();
    // Everything in the list now reached Redis before the cut; whatever lands from here on must
    // come from one writer at a time.
    let before_cut = redis.llen(&list);
    broker.produce_numbered(&topic, 2, batch, batch);
    wait_until("B takes the lease", Duration::from_secs(30), || {
        b.log_text().contains("lease taken")
    });
    wait_until("B pushes what A could not", Duration::from_secs(60), || {
        redis.llen(&list) >= 2 * batch
    });
    proxy.release();
    broker.produce_numbered(&topic, 2, 2 * batch, batch);
    let produced = 3 * batch;
    wait_until("A gives up the lease", Duration::from_secs(30), || {
        a.log_text().contains("back to standby")
    });
    wait_until(
        "everything produced is in Redis",
        Duration::from_secs(60),
        || redis.llen(&list) >= produced,
    );
    stop_cleanly([&mut b, &mut a]);
    let elements = redis.list(&list);
    let all = numbered(&topic, produced);
    let tally = Tally::new(&all, &elements).report(
        "lease holder cut off from Redis past the TTL, then healed",
        "at-least-once",
    );
    // After the cut only B pushes: per partition its sequence rises strictly. B may start below
    // where A got to (it re-delivers from the last commit), but a push of A's that was on the wire
    // and landed after B's would make a partition go back within this part.
    let went_back: Vec<String> = Tally::new(&all, &elements[before_cut..])
        .went_back
        .into_values()
        .flatten()
        .collect();
    let distinct = tally.distinct;
    eprintln!(
        "fence: {produced} produced, {} elements ({before_cut} before the cut), {distinct} distinct; \
         after the cut {} went back",
        elements.len(),
        went_back.len()
    );
    assert_eq!(distinct, produced, "every produced message is in the list");
    assert!(
        went_back.is_empty(),
        "the old holder's pushes landed after the new holder's: {} elements went back, e.g. {:?}",
        went_back.len(),
        &went_back[..went_back.len().min(5)]
    );
}

/// The other side of the TTL: holder A is cut off from Redis (its bytes held) for half the TTL
/// while it pushes. A renewal may time out meanwhile and pause its pushing, but the lease has not
/// expired, so A renews it once the link heals and goes on: standby B never takes over, and every
/// message is in the list once, in order.
#[test]
fn a_holder_cut_off_shorter_than_the_ttl_keeps_the_lease_and_loses_nothing() {
    let broker = Broker::shared();
    let CutHolder {
        redis,
        proxy,
        topic,
        list,
        mut a,
        mut b,
        batch,
        _dirs,
    } = CutHolder::start(broker, "shortcut");

    // The cut: its length is the fault itself, half the TTL. Messages produced meanwhile are
    // pushed into the held link.
    proxy.hold();
    broker.produce_numbered(&topic, 2, batch, batch);
    std::thread::sleep(Duration::from_millis(TTL_MS / 2));
    assert_eq!(
        redis.llen(&list),
        batch,
        "nothing lands while the holder is cut off and the standby waits"
    );
    proxy.release();
    broker.produce_numbered(&topic, 2, 2 * batch, batch);
    let produced = 3 * batch;
    wait_until(
        "everything produced is in Redis",
        Duration::from_secs(60),
        || redis.llen(&list) >= produced,
    );
    stop_cleanly([&mut b, &mut a]);
    let elements = redis.list(&list);
    let all = numbered(&topic, produced);
    let cost = Tally::new(&all, &elements).report(
        "lease holder cut off from Redis for half the TTL, then healed",
        "at-least-once",
    );
    assert!(
        !b.log_text().contains("lease taken"),
        "the standby took a lease that had not expired:\n{}",
        b.log_text()
    );
    assert_eq!(
        (cost.missing.len(), cost.duplicated, cost.order_violations()),
        (0, 0, 0),
        "every message once, in order: {cost:?}"
    );
}

/// A stop while Redis does not answer: the lease's release is tried within what is left of the
/// stop's bound, not for a whole response timeout, so the process exits in time (the lease then
/// expires by itself and a standby takes over after its TTL).
#[test]
fn a_stop_while_redis_is_frozen_releases_the_lease_within_the_bound() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("frozenstop");
    broker.create_topic(&topic, 2);
    let dir = tempfile::tempdir().unwrap();
    config(broker, &redis, &topic, "A")
        .response_timeout_ms(15_000)
        .sections("[shutdown]\ntimeout_ms = 2000")
        .write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let produced = broker.produce_numbered(&topic, 2, 0, 100);
    let list = format!("A:{topic}");
    wait_until("the holder delivers", Duration::from_secs(30), || {
        redis.llen(&list) == 100
    });
    redis.signal(libc::SIGSTOP);
    let stopping = Instant::now();
    bridge.signal(libc::SIGTERM);
    // The bound (2 s), the watchdog's grace for leaving the group (2 s), and a margin.
    bridge.wait_exit(Duration::from_secs(7));
    let took = stopping.elapsed();
    redis.signal(libc::SIGCONT);
    assert!(
        bridge
            .log_text()
            .contains("Redis did not answer the lease's release in time"),
        "{}",
        bridge.log_text()
    );
    eprintln!("stopped in {took:?} with Redis frozen");
    Tally::new(&produced, &redis.list(&list)).report(
        &format!(
            "stop while Redis is frozen, lease holder: exited in {:.1} s (bound 2 s + 2 s to leave the group)",
            took.as_secs_f64()
        ),
        "at-least-once",
    );
}
