//! Redis topologies for the topology tests: a Sentinel group (1 master, 1 replica, 3 sentinels) and a
//! Cluster (3 masters, 3 replicas), as real `redis-server` processes on free loopback ports, with
//! optional ACL users, passwords and TLS (a throwaway CA made with the `openssl` command). Every
//! process is killed when its handle drops, and with the test process (see `die_with_parent`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{die_with_parent, free_port, wait_until};

// ---------------------------------------------------------------------------------------------
// Security settings shared by every node of a topology

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in a temporary directory.
pub struct Certs {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Certs {
    /// Generates the CA and both certificates with `openssl` (EC P-256 keys, PKCS#8 PEM).
    pub fn generate() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(dir.path())
                .args(args)
                .output()
                .expect("openssl (apt install openssl)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = |name: &str| {
            openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                name,
            ])
        };
        key("ca.key");
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-days",
            "2",
            "-subj",
            "/CN=k2r test CA",
            "-out",
            "ca.pem",
        ]);
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            key(&format!("{name}.key"));
            std::fs::write(p(&format!("{name}.ext")), ext).unwrap();
            openssl(&[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN=k2r test {name}"),
                "-out",
                &format!("{name}.csr"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ]);
        }
        Certs {
            ca: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
            _dir: dir,
        }
    }

    /// The `[redis]` TOML lines that make the bridge trust this CA and present the client cert.
    pub fn toml(&self) -> String {
        format!(
            "tls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            self.ca.display(),
            self.client_cert.display(),
            self.client_key.display()
        )
    }

    fn tls_certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: std::fs::read(&self.client_cert).unwrap(),
                client_key: std::fs::read(&self.client_key).unwrap(),
            }),
            root_cert: Some(std::fs::read(&self.ca).unwrap()),
        }
    }
}

/// How the nodes of a topology are protected.
#[derive(Default)]
pub struct Security {
    /// `requirepass` (the default user's password), also used between nodes and by the sentinels.
    pub admin_password: Option<String>,
    /// An ACL user `(name, password)` with full rights, for the bridge to log in as.
    pub acl_user: Option<(String, String)>,
    /// The sentinels' own `requirepass`.
    pub sentinel_password: Option<String>,
    /// TLS only (`port 0`), with client certificates required.
    pub tls: Option<Certs>,
    /// With TLS: accept clients without a certificate (`tls-auth-clients optional`).
    pub tls_client_cert_optional: bool,
}

impl Security {
    /// `redis-server` arguments for a data node.
    fn node_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(pw) = &self.admin_password {
            args.extend(["--requirepass".into(), pw.clone()]);
            args.extend(["--masterauth".into(), pw.clone()]);
        }
        if let Some((user, pw)) = &self.acl_user {
            args.extend([
                "--user".into(),
                user.clone(),
                "on".into(),
                format!(">{pw}"),
                "~*".into(),
                "&*".into(),
                "+@all".into(),
            ]);
        }
        if let Some(certs) = &self.tls {
            args.extend(tls_args(certs, self.tls_client_cert_optional));
            args.extend(["--tls-replication".into(), "yes".into()]);
        }
        args
    }

    /// A client for a node, as an administrator (default user), over TLS when enabled.
    pub fn client(&self, port: u16) -> redis::Client {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let auth = match &self.admin_password {
            Some(pw) => format!(":{pw}@"),
            None => String::new(),
        };
        let url = format!("{scheme}://{auth}127.0.0.1:{port}/");
        match &self.tls {
            Some(certs) => redis::Client::build_with_tls(url, certs.tls_certificates()).unwrap(),
            None => redis::Client::open(url).unwrap(),
        }
    }

    /// The `[redis]` TOML lines for the bridge: the ACL user (or the admin password) and TLS.
    pub fn bridge_toml(&self) -> String {
        let mut toml = String::new();
        match (&self.acl_user, &self.admin_password) {
            (Some((user, pw)), _) => {
                toml += &format!("username = \"{user}\"\npassword = \"{pw}\"\n")
            }
            (None, Some(pw)) => toml += &format!("password = \"{pw}\"\n"),
            (None, None) => {}
        }
        if let Some(certs) = &self.tls {
            toml += &certs.toml();
        }
        toml
    }
}

fn tls_args(certs: &Certs, client_cert_optional: bool) -> Vec<String> {
    [
        ("--tls-cert-file", &certs.server_cert),
        ("--tls-key-file", &certs.server_key),
        ("--tls-ca-cert-file", &certs.ca),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v.display().to_string()])
    .chain([
        "--tls-auth-clients".into(),
        if client_cert_optional {
            "optional"
        } else {
            "yes"
        }
        .into(),
    ])
    .collect()
}

// ---------------------------------------------------------------------------------------------
// One redis-server process

/// A `redis-server` (or sentinel) process that can be killed and restarted on the same port and
/// data directory.
pub struct Node {
    pub port: u16,
    dir: tempfile::TempDir,
    /// Everything after the program name; for a sentinel, the config file comes first.
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    fn start(args: Vec<String>, port: u16, dir: tempfile::TempDir) -> Node {
        let mut node = Node {
            port,
            dir,
            args,
            child: None,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.current_dir(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::from(log))
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        self.child = Some(
            cmd.spawn()
                .expect("redis-server (apt install redis-server)"),
        );
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`SIGSTOP` freezes the node without closing its connections, `SIGCONT`
    /// thaws it).
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// Starts the process again with the same arguments, port and directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Starts the process again as a replica of `master_port`. A data node has no persistence
    /// here, so restarting an old master as it was would bring it back as an *empty master*: until
    /// Sentinel demotes it, a client (or the promoted replica) may follow it and lose the data set —
    /// Redis' documented hazard of masters without persistence, not what these tests are about.
    pub fn restart_as_replica_of(&mut self, master_port: u16) {
        if let Some(i) = self.args.iter().position(|a| a == "--replicaof") {
            self.args.drain(i..i + 3);
        }
        self.args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            master_port.to_string(),
        ]);
        self.restart();
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A standalone server with the given security (ACL user, TLS).
pub fn standalone(security: &Security) -> Node {
    standalone_with(security, &[])
}

/// A standalone server with the given security and extra `redis-server` arguments (a
/// `--maxmemory-policy`, a `--rename-command`, …).
pub fn standalone_with(security: &Security, extra: &[&str]) -> Node {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut args = base_args(port, dir.path(), security);
    args.extend(extra.iter().map(|a| a.to_string()));
    let node = Node::start(args, port, dir);
    wait_until("redis-server answers PING", Duration::from_secs(10), || {
        connect(&security.client(port))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    });
    node
}

/// Like [`wait_until`], but a timeout shows the end of every node's log, so that a node that did not
/// start (a port taken meanwhile, say) is visible.
fn wait_or_dump(
    what: &str,
    timeout: Duration,
    nodes: &[&Node],
    mut condition: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() > deadline {
            let mut logs = String::new();
            for node in nodes {
                let log = std::fs::read_to_string(node.dir().join("redis.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                logs += &format!("--- node on port {} ---\n", node.port);
                for line in tail.iter().rev() {
                    logs += line;
                    logs += "\n";
                }
            }
            panic!("timed out after {timeout:?} waiting for: {what}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Arguments every data node gets: loopback, no persistence, the given port (or TLS port).
fn base_args(port: u16, dir: &Path, security: &Security) -> Vec<String> {
    let mut args: Vec<String> = vec!["--bind".into(), "127.0.0.1".into()];
    if security.tls.is_some() {
        args.extend([
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
        ]);
    } else {
        args.extend(["--port".into(), port.to_string()]);
    }
    args.extend([
        "--dir".into(),
        dir.display().to_string(),
        "--save".into(),
        "".into(),
        "--appendonly".into(),
        "no".into(),
        // A restarted node resyncs at once instead of waiting 5 s for more replicas to join.
        "--repl-diskless-sync-delay".into(),
        "0".into(),
    ]);
    args.extend(security.node_args());
    args
}

fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    client.get_connection_with_timeout(Duration::from_millis(500))
}

/// `INFO replication` as key/value pairs.
fn replication_info(client: &redis::Client) -> Option<std::collections::HashMap<String, String>> {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut connect(client).ok()?)
        .ok()?;
    Some(
        info.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// Sentinel

pub const MASTER_NAME: &str = "k2rmaster";

/// One sentinel that monitors nothing: a Sentinel address where a Redis server was expected.
pub fn lone_sentinel() -> Node {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentinel.conf");
    std::fs::write(
        &path,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let node = Node::start(
        vec![path.display().to_string(), "--sentinel".into()],
        port,
        dir,
    );
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
        let master = Node::start(
            base_args(master_port, master_dir.path(), &security),
            master_port,
            master_dir,
        );
        let replica_port = free_port();
        let replica_dir = tempfile::tempdir().unwrap();
        let mut replica_args = base_args(replica_port, replica_dir.path(), &security);
        replica_args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            master_port.to_string(),
        ]);
        let replica = Node::start(replica_args, replica_port, replica_dir);

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
            let path = dir.path().join("sentinel.conf");
            std::fs::write(&path, conf).unwrap();
            sentinels.push(Node::start(
                vec![path.display().to_string(), "--sentinel".into()],
                port,
                dir,
            ));
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

    /// The `[redis]` section for the bridge.
    pub fn bridge_toml(&self) -> String {
        let addresses: Vec<String> = self
            .sentinel_addresses()
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect();
        let mut toml = format!(
            "[redis]\nmode = \"sentinel\"\nmaster_name = \"{MASTER_NAME}\"\naddresses = [{}]\n",
            addresses.join(", ")
        );
        if let Some(pw) = &self.security.sentinel_password {
            toml += &format!("sentinel_password = \"{pw}\"\n");
        }
        toml + &self.security.bridge_toml()
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster

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
        if !clashes && std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            ports.push(port);
        }
    }
    ports
}

/// Three masters and three replicas made with `redis-cli --cluster create --cluster-replicas 1`.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub security: Security,
}

impl Cluster {
    pub fn start(security: Security) -> Cluster {
        let mut nodes = Vec::new();
        for port in cluster_ports(6) {
            let dir = tempfile::tempdir().unwrap();
            let mut args = base_args(port, dir.path(), &security);
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
            nodes.push(Node::start(args, port, dir));
        }
        let cluster = Cluster { nodes, security };
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
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
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
    /// each followed by one live replica whose link to it is up.
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
                                    == 1
                            })
                    });
                    state_ok && view_ok
                }) && self.masters().iter().all(|port| {
                    replication_info(&self.security.client(*port)).is_some_and(|i| {
                        i.get("slave0").is_some_and(|s| s.contains("state=online"))
                    })
                })
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
        let from = self.master_for(key).expect("a master serves the key");
        let view = self.nodes.iter().find_map(|n| self.view(n.port)).unwrap();
        let id = |port: u16| view.iter().find(|v| v.port == port).unwrap().id.clone();
        let (from_id, to_id) = (id(from), id(to));
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
            let mut migrate = redis::cmd("MIGRATE");
            migrate.arg("127.0.0.1").arg(to).arg("").arg(0).arg(5000);
            if let Some(pw) = &self.security.admin_password {
                migrate.arg("AUTH").arg(pw);
            }
            migrate.arg("KEYS").arg(&keys);
            migrate.query::<()>(&mut source).unwrap();
        }
        slot
    }

    /// Ends a migration: `SETSLOT slot NODE` on every master; clients now get `MOVED`.
    pub fn finish_migration(&self, slot: u16, to: u16) {
        let view = self.nodes.iter().find_map(|n| self.view(n.port)).unwrap();
        let to_id = view.iter().find(|v| v.port == to).unwrap().id.clone();
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

    /// The `[redis]` section for the bridge.
    pub fn bridge_toml(&self) -> String {
        let addresses: Vec<String> = self
            .nodes
            .iter()
            .take(3)
            .map(|n| format!("\"{}\"", n.address()))
            .collect();
        format!(
            "[redis]\nmode = \"cluster\"\naddresses = [{}]\n{}",
            addresses.join(", "),
            self.security.bridge_toml()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Failing over, the same way for both

/// The parts of a failover test that differ between Sentinel and Cluster.
pub trait Topology {
    fn redis_toml(&self) -> String;
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
    fn redis_toml(&self) -> String {
        self.bridge_toml()
    }
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
    fn redis_toml(&self) -> String {
        self.bridge_toml()
    }
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

// ---------------------------------------------------------------------------------------------
// Measuring a failover

/// Polls `len` (the total length of the lists under watch, `None` while unreadable) until it grows
/// past the first value read after `since`; returns the time from `since` until then.
pub fn time_to_resume(
    since: Instant,
    timeout: Duration,
    mut len: impl FnMut() -> Option<usize>,
) -> Duration {
    let mut first: Option<usize> = None;
    let deadline = since + timeout;
    loop {
        if let Some(n) = len() {
            match first {
                None => first = Some(n),
                Some(f) if n > f => return since.elapsed(),
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "the stream did not resume within {timeout:?} of the failover (list length stuck at {first:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Distinct elements, duplicates and missing values of `produced`, checking that first occurrences
/// keep partition order.
pub fn tally(elements: &[Vec<u8>], produced: &[String]) -> (usize, usize, Vec<String>) {
    let mut seen = HashSet::new();
    let mut firsts = Vec::new();
    for e in elements {
        if seen.insert(e.clone()) {
            firsts.push(e.clone());
        }
    }
    super::assert_partition_order(&firsts);
    let produced_set: HashSet<&[u8]> = produced.iter().map(|p| p.as_bytes()).collect();
    for e in &seen {
        assert!(
            produced_set.contains(e.as_slice()),
            "unexpected element {:?}",
            String::from_utf8_lossy(e)
        );
    }
    let missing = produced
        .iter()
        .filter(|p| !seen.contains(p.as_bytes()))
        .cloned()
        .collect();
    (seen.len(), elements.len() - seen.len(), missing)
}
