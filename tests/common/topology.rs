//! Failing over, the same way for Sentinel and Cluster.

use std::time::Duration;

use super::cluster::Cluster;
use super::config::RedisSection;
use super::sentinel::SentinelGroup;
use super::wait_until;

/// The parts of a failover test that differ between Sentinel and Cluster.
pub trait Topology: RedisSection {
    /// Sum of the lists' lengths, read from the master(s) now serving them; `None` if unreadable.
    fn total_len(&self, lists: &[String]) -> Option<usize>;
    fn list(&self, key: &str) -> Vec<Vec<u8>>;
    /// Kills the master that serves `key` with `kill -9`; returns its port.
    fn kill_master(&mut self, key: &str) -> u16;
    /// Whether a new master serves `key` (not `old`).
    fn failed_over(&self, key: &str, old: u16) -> bool;
    /// Starts the killed node again; it rejoins as a replica of the new master.
    fn restart(&mut self, port: u16);
    /// Kills the replica of the master that serves `key` with `kill -9`; returns its port.
    fn kill_replica(&mut self, key: &str) -> u16;
    /// Sends `signal` to the node on `port`.
    fn signal(&self, port: u16, signal: i32);
    /// The port of the replica of the master that serves `key`.
    fn replica_port(&self, key: &str) -> u16;
    /// Closes the replication links of the master that serves `key` (`CLIENT KILL TYPE replica`).
    fn cut_replication(&self, key: &str);
}

fn kill_replica_links(client: redis::Client) {
    let killed: usize = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query(&mut client.get_connection().unwrap())
        .unwrap();
    assert_eq!(killed, 1, "one replication link closed");
}

impl Topology for SentinelGroup {
    fn total_len(&self, lists: &[String]) -> Option<usize> {
        let mut conn = self.master_conn()?;
        let mut sum = 0;
        for key in lists {
            sum += redis::cmd("LLEN").arg(key).query::<usize>(&mut conn).ok()?;
        }
        Some(sum)
    }
    fn list(&self, key: &str) -> Vec<Vec<u8>> {
        // Right after a failover the sentinels may not yet agree on the master.
        let mut conn = None;
        wait_until(
            "the sentinels agree on a reachable master",
            Duration::from_secs(30),
            || {
                conn = self.master_conn();
                conn.is_some()
            },
        );
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(conn.as_mut().unwrap())
            .unwrap()
    }
    fn kill_master(&mut self, _key: &str) -> u16 {
        let i = self.master_index();
        self.nodes[i].kill9();
        self.nodes[i].port
    }
    fn failed_over(&self, _key: &str, old: u16) -> bool {
        self.master_port().is_some_and(|p| p != old)
    }
    fn restart(&mut self, port: u16) {
        let master = self
            .master_port()
            .expect("sentinels agree on the new master");
        let i = self.nodes.iter().position(|n| n.port == port).unwrap();
        self.nodes[i].restart_as_replica_of(master);
    }
    fn kill_replica(&mut self, _key: &str) -> u16 {
        let i = 1 - self.master_index();
        self.nodes[i].kill9();
        self.nodes[i].port
    }
    fn signal(&self, port: u16, signal: i32) {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap()
            .signal(signal);
    }
    fn replica_port(&self, _key: &str) -> u16 {
        self.nodes[1 - self.master_index()].port
    }
    fn cut_replication(&self, _key: &str) {
        kill_replica_links(self.security.client(self.master_port().unwrap()));
    }
}

impl Topology for Cluster {
    fn total_len(&self, lists: &[String]) -> Option<usize> {
        lists.iter().map(|l| self.llen(l)).sum()
    }
    fn list(&self, key: &str) -> Vec<Vec<u8>> {
        Cluster::list(self, key).expect("list readable")
    }
    fn kill_master(&mut self, key: &str) -> u16 {
        let port = self.master_for(key).expect("a master serves the list");
        let i = self.node_index(port);
        self.nodes[i].kill9();
        port
    }
    fn failed_over(&self, key: &str, old: u16) -> bool {
        self.master_for(key).is_some_and(|p| p != old)
    }
    fn restart(&mut self, port: u16) {
        let i = self.node_index(port);
        self.nodes[i].restart();
    }
    fn kill_replica(&mut self, key: &str) -> u16 {
        let master = self.master_for(key).expect("a master serves the list");
        let port = self.replica_of(master).expect("the master has a replica");
        let i = self.node_index(port);
        self.nodes[i].kill9();
        port
    }
    fn signal(&self, port: u16, signal: i32) {
        self.nodes[self.node_index(port)].signal(signal);
    }
    fn replica_port(&self, key: &str) -> u16 {
        let master = self.master_for(key).expect("a master serves the list");
        self.replica_of(master).expect("the master has a replica")
    }
    fn cut_replication(&self, key: &str) {
        kill_replica_links(self.security.client(self.master_for(key).unwrap()));
    }
}
