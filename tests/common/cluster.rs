//! A Redis Cluster of 3 masters and 3 replicas (or none) made with `redis-cli --cluster create`.

use std::process::Command;
use std::time::Duration;

use super::config::{toml_list, RedisSection};
use super::redis_server::{connect, replication_info, server_args, wait_or_dump, Node};
use super::security::Security;
use super::{free_port, wait_until};

/// One line of `CLUSTER NODES`.
struct ClusterNodeView {
    port: u16,
    master: bool,
    failed: bool,
    /// The master's id, for a replica (`-` for a master).
    master_id: String,
    id: String,
    has_slots: bool,
}

impl ClusterNodeView {
    /// A live master that serves slots.
    fn serving(&self) -> bool {
        self.master && !self.failed && self.has_slots
    }
}

/// How [`Cluster::failover`] has a replica take over from its master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterFailover {
    /// `CLUSTER FAILOVER`, coordinated with the master: the replica asks its master to start a
    /// manual failover; the master pauses its clients' writes (they wait, nothing is refused) and
    /// tells the replica its replication offset; the replica waits until it has applied everything
    /// up to that offset, wins the election and takes the slots. The old master learns it lost them,
    /// becomes a replica of the new master and answers the paused writes with `MOVED`, so every
    /// write it acknowledged is on the new master.
    Coordinated,
    /// `CLUSTER FAILOVER FORCE`: no handshake with the master. The replica starts the election at
    /// once with whatever it has replicated so far, and the masters' votes suffice. The old master
    /// is not told: it keeps taking and acknowledging writes until gossip from the new master tells
    /// it that its slots have a newer owner; then it becomes a replica and, resyncing from the new
    /// master, discards what the replica never got. Only a client that waited for a replica
    /// (`WAIT`) knows which of those writes did not count.
    Force,
}

/// `count` ports for Cluster nodes. Each node also listens on its port + 10000 (the cluster bus),
/// so a port is taken only when that one is free too, and no node's port may be another's bus port.
fn cluster_ports(count: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < count {
        let port = free_port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        let clashes = ports
            .iter()
            .any(|&p| [p, p + 10_000].contains(&port) || [p, p + 10_000].contains(&bus));
        if !clashes
            && std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok()
            && kafka2redis::bench::launch::reserve_port(bus)
        {
            ports.push(port);
        }
    }
    ports
}

/// Three masters and three replicas made with `redis-cli --cluster create --cluster-replicas 1`
/// ([`Cluster::start`]), or three masters alone ([`Cluster::start_without_replicas`]).
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub security: Security,
    /// Replicas per master: 1 or 0.
    replicas: usize,
}

impl Cluster {
    pub fn start(security: Security) -> Cluster {
        Self::start_with(security, 1)
    }

    /// Three masters without replicas: a master that restarts comes back with its own files (its
    /// `nodes.conf`, so the same node id and slots, and its last RDB snapshot) — no replica takes
    /// over, and none resyncs it.
    pub fn start_without_replicas(security: Security) -> Cluster {
        Self::start_with(security, 0)
    }

    fn start_with(security: Security, replicas: usize) -> Cluster {
        let mut nodes = Vec::new();
        for port in cluster_ports(3 * (1 + replicas)) {
            let dir = tempfile::tempdir().unwrap();
            let mut args = server_args(port, &security);
            args.extend([
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                "nodes.conf".into(),
                "--cluster-node-timeout".into(),
                "1000".into(),
            ]);
            if security.tls.is_some() {
                args.extend(["--tls-cluster".into(), "yes".into()]);
            }
            nodes.push(Node::server(port, dir, args));
        }
        let cluster = Cluster {
            nodes,
            security,
            replicas,
        };
        for node in &cluster.nodes {
            wait_until("cluster node answers PING", Duration::from_secs(10), || {
                connect(&cluster.security.client(node.port))
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok()
            });
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        create.args(cluster.nodes.iter().map(Node::address));
        create.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        create.args(cluster.cli_args());
        let out = create.output().expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_healthy(Duration::from_secs(60));
        cluster
    }

    /// `redis-cli` options for auth and TLS.
    fn cli_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(pw) = &self.security.admin_password {
            args.extend(["-a".into(), pw.clone(), "--no-auth-warning".into()]);
        }
        if let Some(certs) = &self.security.tls {
            args.extend([
                "--tls".into(),
                "--cacert".into(),
                certs.ca.display().to_string(),
                "--cert".into(),
                certs.client_cert.display().to_string(),
                "--key".into(),
                certs.client_key.display().to_string(),
            ]);
        }
        args
    }

    /// `CLUSTER NODES` as seen by the node at `port`.
    fn view(&self, port: u16) -> Option<Vec<ClusterNodeView>> {
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut connect(&self.security.client(port)).ok()?)
            .ok()?;
        Some(
            text.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let port = f.get(1)?.split(['@', ',']).next()?.rsplit(':').next()?;
                    Some(ClusterNodeView {
                        port: port.parse().ok()?,
                        master: f[2].contains("master"),
                        failed: f[2].contains("fail"),
                        master_id: f[3].to_string(),
                        id: f[0].to_string(),
                        has_slots: f.len() > 8,
                    })
                })
                .collect(),
        )
    }

    /// Waits until every live node reports `cluster_state:ok` and sees three masters with slots,
    /// each followed by its live replica (if it has one) whose link to it is up.
    pub fn wait_healthy(&self, timeout: Duration) {
        wait_or_dump(
            "the cluster is healthy",
            timeout,
            &self.nodes.iter().collect::<Vec<_>>(),
            || {
                self.nodes.iter().all(|n| {
                    let state_ok = connect(&self.security.client(n.port))
                        .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                        .is_ok_and(|info| info.contains("cluster_state:ok"));
                    let view_ok = self.view(n.port).is_some_and(|view| {
                        let masters: Vec<_> = view.iter().filter(|v| v.serving()).collect();
                        masters.len() == 3
                            && masters.iter().all(|m| {
                                view.iter()
                                    .filter(|r| !r.master && !r.failed && r.master_id == m.id)
                                    .count()
                                    == self.replicas
                            })
                    });
                    state_ok && view_ok
                }) && (self.replicas == 0
                    || self.masters().iter().all(|port| {
                        replication_info(&self.security.client(*port)).is_some_and(|i| {
                            i.get("slave0").is_some_and(|s| s.contains("state=online"))
                        })
                    }))
            },
        );
    }

    /// Ports of the masters that hold slots, as the first reachable node sees them.
    pub fn masters(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .find_map(|n| self.view(n.port))
            .map(|view| {
                view.into_iter()
                    .filter(ClusterNodeView::serving)
                    .map(|v| v.port)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The port of the master serving `key`'s slot, asked of any live node.
    pub fn master_for(&self, key: &str) -> Option<u16> {
        for n in &self.nodes {
            let Ok(mut conn) = connect(&self.security.client(n.port)) else {
                continue;
            };
            let Ok(slot) = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query::<u16>(&mut conn)
            else {
                continue;
            };
            let Ok(slots) = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<redis::Value>(&mut conn)
            else {
                continue;
            };
            if let redis::Value::Array(ranges) = slots {
                for range in ranges {
                    let redis::Value::Array(parts) = range else {
                        continue;
                    };
                    let lo: u16 = redis::from_redis_value(parts[0].clone()).ok()?;
                    let hi: u16 = redis::from_redis_value(parts[1].clone()).ok()?;
                    if (lo..=hi).contains(&slot) {
                        let redis::Value::Array(master) = &parts[2] else {
                            continue;
                        };
                        return redis::from_redis_value(master[1].clone()).ok();
                    }
                }
            }
        }
        None
    }

    /// The port of a live replica of the master on `master_port`.
    pub fn replica_of(&self, master_port: u16) -> Option<u16> {
        let view = self.nodes.iter().find_map(|n| self.view(n.port))?;
        let id = &view.iter().find(|v| v.port == master_port)?.id;
        view.iter()
            .find(|v| !v.master && !v.failed && &v.master_id == id)
            .map(|v| v.port)
    }

    /// Has the replica of the master serving `key` take over its slots with `CLUSTER FAILOVER`
    /// (`CLUSTER FAILOVER FORCE` with [`ClusterFailover::Force`]; see there for the difference), and
    /// returns the old master's port. Both nodes stay up. The command only starts the failover:
    /// [`Topology::failed_over`] tells when the replica serves `key`.
    pub fn failover(&self, key: &str, how: ClusterFailover) -> u16 {
        let master = self.master_for(key).expect("a master serves the key");
        let replica = self.replica_of(master).expect("the master has a replica");
        let command: &[&str] = match how {
            ClusterFailover::Coordinated => &["CLUSTER", "FAILOVER"],
            ClusterFailover::Force => &["CLUSTER", "FAILOVER", "FORCE"],
        };
        redis::cmd(command[0])
            .arg(&command[1..])
            .query::<()>(&mut connect(&self.security.client(replica)).unwrap())
            .unwrap_or_else(|e| panic!("{command:?} on the replica on port {replica}: {e}"));
        master
    }

    /// Starts moving the slot of `key` (and the keys in it) to the master on `to`, the way
    /// `redis-cli --cluster reshard` does: IMPORTING/MIGRATING, then `MIGRATE` key by key. Until
    /// [`Cluster::finish_migration`], clients get `ASK` for the moved keys and must follow it.
    /// Returns the slot.
    pub fn start_migration(&self, key: &str, to: u16) -> u16 {
        let (slot, from) = self.open_migration(key, to);
        let mut source = connect(&self.security.client(from)).unwrap();
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut source)
                .unwrap();
            if keys.is_empty() {
                break;
            }
            self.migrate_keys(from, to, &keys);
        }
        slot
    }

    /// Marks the slot of `key` IMPORTING on the master on `to` and MIGRATING on the master serving
    /// it, moving no key yet (see [`Cluster::migrate_keys`]). Returns the slot and the source's port.
    pub fn open_migration(&self, key: &str, to: u16) -> (u16, u16) {
        let from = self.master_for(key).expect("a master serves the key");
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let mut source = connect(&self.security.client(from)).unwrap();
        let mut target = connect(&self.security.client(to)).unwrap();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut source)
            .unwrap();
        let setslot = |conn: &mut redis::Connection, state: &str, node: &str| {
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(node)
                .query::<()>(conn)
                .unwrap()
        };
        setslot(&mut target, "IMPORTING", &from_id);
        setslot(&mut source, "MIGRATING", &to_id);
        (slot, from)
    }

    /// `MIGRATE` of `keys` from the master on `from` to the master on `to`.
    pub fn migrate_keys<S: AsRef<str>>(&self, from: u16, to: u16, keys: &[S]) {
        let mut migrate = redis::cmd("MIGRATE");
        migrate.arg("127.0.0.1").arg(to).arg("").arg(0).arg(5000);
        if let Some(pw) = &self.security.admin_password {
            migrate.arg("AUTH").arg(pw);
        }
        migrate.arg("KEYS");
        for key in keys {
            migrate.arg(key.as_ref());
        }
        migrate
            .query::<()>(&mut connect(&self.security.client(from)).unwrap())
            .unwrap();
    }

    /// The cluster id of the node on `port`, as the first reachable node sees it.
    pub fn node_id(&self, port: u16) -> String {
        let view = self.nodes.iter().find_map(|n| self.view(n.port)).unwrap();
        view.into_iter().find(|v| v.port == port).unwrap().id
    }

    /// Whether the node on `observer` flags the node on `port` as failed.
    pub fn sees_failed(&self, observer: u16, port: u16) -> bool {
        self.view(observer)
            .is_some_and(|view| view.iter().any(|v| v.port == port && v.failed))
    }

    /// Ends a migration: `SETSLOT slot NODE` on every master; clients now get `MOVED`.
    pub fn finish_migration(&self, slot: u16, to: u16) {
        let to_id = self.node_id(to);
        for port in self.masters() {
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&to_id)
                .query::<()>(&mut connect(&self.security.client(port)).unwrap())
                .unwrap();
        }
    }

    /// `LLEN key` on the node importing its slot (`ASKING` first, as a redirected client does).
    pub fn llen_importing(&self, port: u16, key: &str) -> Option<usize> {
        let mut conn = connect(&self.security.client(port)).ok()?;
        let (_, len): ((), usize) = redis::pipe()
            .cmd("ASKING")
            .cmd("LLEN")
            .arg(key)
            .query(&mut conn)
            .ok()?;
        Some(len)
    }

    pub fn node_index(&self, port: u16) -> usize {
        self.nodes.iter().position(|n| n.port == port).unwrap()
    }

    /// Reads a list from the master that serves it.
    pub fn list(&self, key: &str) -> Option<Vec<Vec<u8>>> {
        let port = self.master_for(key)?;
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(&mut connect(&self.security.client(port)).ok()?)
            .ok()
    }

    pub fn llen(&self, key: &str) -> Option<usize> {
        let port = self.master_for(key)?;
        redis::cmd("LLEN")
            .arg(key)
            .query(&mut connect(&self.security.client(port)).ok()?)
            .ok()
    }
}

/// The `[redis]` section for the bridge.
impl RedisSection for Cluster {
    fn redis_section(&self) -> String {
        let addresses: Vec<String> = self.nodes.iter().take(3).map(Node::address).collect();
        format!(
            "[redis]\nmode = \"cluster\"\naddresses = {}\n{}",
            toml_list(&addresses),
            self.security.bridge_toml()
        )
    }
}
