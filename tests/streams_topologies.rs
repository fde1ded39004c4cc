//! Streams on Redis Cluster and Sentinel: exactly-once through a Cluster failover, with the stream
//! and its offset record in one slot, and at-least-once through a Sentinel failover with the WAIT
//! guard, each checked entry by entry.

mod common;

use std::time::{Duration, Instant};

use common::*;

const PARTITIONS: i32 = 2;
const STOP_BOUND: Duration = Duration::from_secs(15);

fn messages() -> usize {
    std::env::var("K2R_TOPOLOGY_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(9_000)
}

/// A connection to the master that serves a key, as each topology finds it.
trait MasterOf: Topology {
    fn master_conn_for(&self, key: &str) -> Option<redis::Connection>;
}

impl MasterOf for SentinelGroup {
    fn master_conn_for(&self, _key: &str) -> Option<redis::Connection> {
        self.master_conn()
    }
}

impl MasterOf for Cluster {
    fn master_conn_for(&self, key: &str) -> Option<redis::Connection> {
        let port = self.master_for(key)?;
        self.security
            .client(port)
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()
    }
}

fn xlen<T: MasterOf>(topology: &T, stream: &str) -> usize {
    topology
        .master_conn_for(stream)
        .and_then(|mut c| redis::cmd("XLEN").arg(stream).query(&mut c).ok())
        .unwrap_or(0)
}

/// Streams numbered messages into a stream while `switch` moves its master (returning the old
/// master's port) once a third is in; waits until another node serves it, everything is committed
/// and `settle` finds the topology healthy; returns the stream's entries and the bridge's log.
fn failover_mid_stream<T: MasterOf>(
    topology: &T,
    name: &str,
    delivery: &str,
    switch: impl FnOnce(&T, &str) -> u16,
    settle: impl FnOnce(&T),
) -> (Vec<Entry>, String) {
    let broker = Broker::shared();
    let topic = unique(name);
    broker.create_topic(&topic, PARTITIONS);
    let stream = format!("queues:{topic}");
    let dir = tempfile::tempdir().unwrap();
    Config::new(
        broker,
        topology,
        &topic,
        &format!(r#"[{{ name = "{topic}", structure = "stream" }}]"#),
    )
    .delivery(delivery)
    .redis_settings("connect_timeout_ms = 1000")
    .write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let total = messages();
    let producer = broker.produce_paced(vec![topic.clone()], PARTITIONS, total);
    wait_until("a third is in the stream", Duration::from_secs(120), || {
        xlen(topology, &stream) >= total / 3
    });
    let switched_at = Instant::now();
    let old = switch(topology, &stream);
    wait_until(
        "another node serves the stream",
        Duration::from_secs(30),
        || topology.failed_over(&stream, old),
    );
    eprintln!(
        "{name}: failed over after {:.2} s",
        switched_at.elapsed().as_secs_f64()
    );
    producer.join().unwrap();
    broker.wait_committed(
        &topic,
        std::slice::from_ref(&topic),
        PARTITIONS,
        Duration::from_secs(180),
    );
    settle(topology);
    let mut conn = topology
        .master_conn_for(&stream)
        .expect("the stream's master");
    let entries = stream_entries(&mut conn, &stream);
    if delivery == "exactly-once" {
        // The record sits in the stream's slot: on the same master, written by the same script.
        let recorded: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(format!("{{{stream}}}:offsets"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(
            recorded.len(),
            PARTITIONS as usize,
            "a record per partition beside the stream"
        );
    }
    bridge.signal(libc::SIGTERM);
    assert!(
        bridge.wait_exit(STOP_BOUND).success(),
        "{}",
        bridge.log_text()
    );
    (entries, bridge.log_text())
}

#[test]
fn cluster_failover_exactly_once_adds_every_entry_once() {
    let cluster = Cluster::start(Security::default());
    let (entries, _) = failover_mid_stream(
        &cluster,
        "stream-cluster",
        "exactly-once",
        |cluster, stream| cluster.failover(stream, ClusterFailover::Coordinated),
        |cluster| cluster.wait_healthy(Duration::from_secs(60)),
    );
    assert_once_in_order(&entries, messages(), "the stream on Cluster");
}

#[test]
fn sentinel_failover_with_the_wait_guard_loses_no_entry() {
    let sentinels = SentinelGroup::start(Security::default());
    let (entries, log) = failover_mid_stream(
        &sentinels,
        "stream-sentinel",
        "at-least-once",
        |sentinels, _| {
            let old = sentinels.master_port().unwrap();
            sentinels.failover();
            old
        },
        |sentinels| sentinels.wait_healthy(Duration::from_secs(60)),
    );
    // Followed by Sentinel's announcement, or by asking the sentinels after a failed push.
    let new = sentinels.master_port().expect("the sentinels agree");
    let resolved = format!("Redis master resolved through Sentinel master=127.0.0.1:{new}");
    assert!(
        log.contains("Sentinel announced a new master") || log.contains(&resolved),
        "{log}"
    );
    let positions: std::collections::BTreeSet<(i32, i64)> =
        entries.iter().map(Entry::position).collect();
    assert_eq!(positions.len(), messages(), "no entry lost");
}
