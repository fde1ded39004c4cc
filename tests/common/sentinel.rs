//! A Sentinel group (1 master, 1 replica, 3 sentinels) and a lone sentinel.

use std::time::Duration;

use super::config::{toml_list, RedisSection};
use super::redis_server::{connect, replication_info, server_args, wait_or_dump, Node};
use super::security::Security;
use super::{free_port, wait_until};

pub const MASTER_NAME: &str = "k2rmaster";

/// One sentinel that monitors nothing: a Sentinel address where a Redis server was expected.
pub fn lone_sentinel() -> Node {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "port {port}\nbind 127.0.0.1\ndir {}\n",
        dir.path().display()
    );
    let node = Node::sentinel(port, dir, &config);
    let client = Security::default().client(port);
    wait_until("the sentinel answers PING", Duration::from_secs(10), || {
        connect(&client)
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    });
    node
}

/// One master, one replica and three sentinels (quorum 2), with fast failure detection.
pub struct SentinelGroup {
    /// The two data nodes; which one is master changes with failovers.
    pub nodes: Vec<Node>,
    pub sentinels: Vec<Node>,
    pub security: Security,
}

impl SentinelGroup {
    pub fn start(security: Security) -> SentinelGroup {
        let master_port = free_port();
        let master_dir = tempfile::tempdir().unwrap();
        let master = Node::server(master_port, master_dir, server_args(master_port, &security));
        let replica_port = free_port();
        let replica_dir = tempfile::tempdir().unwrap();
        let mut replica_args = server_args(replica_port, &security);
        replica_args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            master_port.to_string(),
        ]);
        let replica = Node::server(replica_port, replica_dir, replica_args);

        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let dir = tempfile::tempdir().unwrap();
            let listen = match &security.tls {
                // TLS only, also towards the master, replicas and the other sentinels.
                Some(certs) => format!(
                    "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
                     tls-ca-cert-file {}\ntls-auth-clients yes\ntls-replication yes\n",
                    certs.server_cert.display(),
                    certs.server_key.display(),
                    certs.ca.display()
                ),
                None => format!("port {port}\n"),
            };
            let mut conf = format!(
                "{listen}bind 127.0.0.1\ndir {}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir.path().display()
            );
            if let Some(pw) = &security.admin_password {
                conf += &format!("sentinel auth-pass {MASTER_NAME} {pw}\n");
            }
            if let Some(pw) = &security.sentinel_password {
                conf += &format!("requirepass {pw}\nsentinel sentinel-pass {pw}\n");
            }
            sentinels.push(Node::sentinel(port, dir, &conf));
        }
        let group = SentinelGroup {
            nodes: vec![master, replica],
            sentinels,
            security,
        };
        // TLS handshakes between the sentinels make a loaded machine slow to settle.
        group.wait_healthy(Duration::from_secs(120));
        group
    }

    /// Waits until the master has an online replica and every sentinel knows the replica and the
    /// two other sentinels (without which no failover can be agreed).
    pub fn wait_healthy(&self, timeout: Duration) {
        wait_or_dump(
            "the Sentinel group is healthy",
            timeout,
            &self.all_nodes(),
            || {
                let Some(master) = self.master_port() else {
                    return false;
                };
                let online = replication_info(&self.security.client(master)).is_some_and(|i| {
                    i.get("role").map(String::as_str) == Some("master")
                        && i.get("connected_slaves").map(String::as_str) == Some("1")
                        && i.get("slave0").is_some_and(|s| s.contains("state=online"))
                });
                online
                    && self.sentinels.iter().all(|s| {
                        let Ok(mut conn) = connect(&self.sentinel_client(s.port)) else {
                            return false;
                        };
                        let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                            .arg("REPLICAS")
                            .arg(MASTER_NAME)
                            .query(&mut conn)
                            .unwrap_or_default();
                        let others: Vec<redis::Value> = redis::cmd("SENTINEL")
                            .arg("SENTINELS")
                            .arg(MASTER_NAME)
                            .query(&mut conn)
                            .unwrap_or_default();
                        replicas.len() == 1 && others.len() == 2
                    })
            },
        );
    }

    fn all_nodes(&self) -> Vec<&Node> {
        self.nodes.iter().chain(&self.sentinels).collect()
    }

    fn sentinel_client(&self, port: u16) -> redis::Client {
        let scheme = if self.security.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let url = match &self.security.sentinel_password {
            Some(pw) => format!("{scheme}://:{pw}@127.0.0.1:{port}/"),
            None => format!("{scheme}://127.0.0.1:{port}/"),
        };
        match &self.security.tls {
            Some(certs) => redis::Client::build_with_tls(url, certs.tls_certificates()).unwrap(),
            None => redis::Client::open(url).unwrap(),
        }
    }

    /// A planned failover (`SENTINEL FAILOVER`), asked of the first sentinel.
    pub fn failover(&self) {
        let mut conn = connect(&self.sentinel_client(self.sentinels[0].port)).unwrap();
        redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER_NAME)
            .query::<()>(&mut conn)
            .unwrap();
    }

    /// The master port a majority of reachable sentinels report.
    pub fn master_port(&self) -> Option<u16> {
        let mut answers = Vec::new();
        for s in &self.sentinels {
            let answer: Option<(String, u16)> = connect(&self.sentinel_client(s.port))
                .ok()
                .and_then(|mut c| {
                    redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg(MASTER_NAME)
                        .query(&mut c)
                        .ok()
                })
                .flatten();
            answers.extend(answer.map(|(_, port)| port));
        }
        let first = *answers.first()?;
        (answers.iter().filter(|p| **p == first).count() * 2 > answers.len()).then_some(first)
    }

    /// The data node that is master now.
    pub fn master_index(&self) -> usize {
        let port = self.master_port().expect("sentinels agree on a master");
        self.nodes.iter().position(|n| n.port == port).unwrap()
    }

    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels.iter().map(Node::address).collect()
    }

    /// A connection to the current master, as administrator.
    pub fn master_conn(&self) -> Option<redis::Connection> {
        connect(&self.security.client(self.master_port()?)).ok()
    }
}

/// The `[redis]` section for the bridge.
impl RedisSection for SentinelGroup {
    fn redis_section(&self) -> String {
        let mut toml = format!(
            "[redis]\nmode = \"sentinel\"\nmaster_name = \"{MASTER_NAME}\"\naddresses = {}\n",
            toml_list(&self.sentinel_addresses())
        );
        if let Some(pw) = &self.security.sentinel_password {
            toml += &format!("sentinel_password = \"{pw}\"\n");
        }
        toml + &self.security.bridge_toml()
    }
}
