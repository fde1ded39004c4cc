//! `redis-server` processes on free loopback ports: a node (data node or sentinel) that can be
//! killed and restarted on the same port and data directory, and the standalone server. Data
//! nodes run the bench's `redis-server` command line (`kafka2redis::bench::launch`). Every process
//! is killed when its handle drops, and with the test process (see `die_with_parent`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka2redis::bench::launch;

use super::security::Security;
use super::{die_with_parent, free_port, wait_until};

/// What a node runs.
enum Program {
    /// A data node: the bench's `redis-server` command line, then these arguments.
    Server(Vec<String>),
    /// A sentinel, with `sentinel.conf` in its directory (which it rewrites).
    Sentinel,
}

/// A `redis-server` (or sentinel) process that can be killed and restarted on the same port and
/// data directory.
pub struct Node {
    pub port: u16,
    dir: tempfile::TempDir,
    program: Program,
    child: Option<Child>,
}

impl Node {
    /// Starts a data node on `port` with its files in `dir`; `args` follow the bench's command
    /// line (see [`server_args`]).
    pub(super) fn server(port: u16, dir: tempfile::TempDir, args: Vec<String>) -> Node {
        Self::start(port, dir, Program::Server(args))
    }

    /// Starts a sentinel on `port` with `config` as its `sentinel.conf` in `dir`.
    pub(super) fn sentinel(port: u16, dir: tempfile::TempDir, config: &str) -> Node {
        std::fs::write(dir.path().join("sentinel.conf"), config).unwrap();
        Self::start(port, dir, Program::Sentinel)
    }

    fn start(port: u16, dir: tempfile::TempDir, program: Program) -> Node {
        let mut node = Node {
            port,
            dir,
            program,
            child: None,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let mut cmd = match &self.program {
            Program::Server(args) => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                launch::redis_server(self.port, self.dir.path(), &args)
            }
            Program::Sentinel => {
                let mut cmd = Command::new("redis-server");
                cmd.arg(self.dir.path().join("sentinel.conf"))
                    .arg("--sentinel");
                cmd
            }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .unwrap();
        cmd.current_dir(self.dir.path())
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

    /// Starts a data node again as a replica of `master_port`. A data node has no persistence
    /// here, so restarting an old master as it was would bring it back as an *empty master*: until
    /// Sentinel demotes it, a client (or the promoted replica) may follow it and lose the data set —
    /// Redis' documented hazard of masters without persistence, not what these tests are about.
    pub fn restart_as_replica_of(&mut self, master_port: u16) {
        let Program::Server(args) = &mut self.program else {
            panic!("a sentinel is no replica");
        };
        if let Some(i) = args.iter().position(|a| a == "--replicaof") {
            args.drain(i..i + 3);
        }
        args.extend([
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

/// What a data node gets after the bench's command line: the TLS port instead of the plain one
/// when `security` has TLS, a replica resync without delay, and `security`'s own arguments.
pub(super) fn server_args(port: u16, security: &Security) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    if security.tls.is_some() {
        args.extend([
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
        ]);
    }
    // A restarted node resyncs at once instead of waiting 5 s for more replicas to join.
    args.extend(["--repl-diskless-sync-delay".into(), "0".into()]);
    args.extend(security.node_args());
    args
}

/// A standalone `redis-server`, protected as its [`Security`] says (nothing, by default).
pub struct RedisServer {
    pub port: u16,
    pub security: Security,
    node: Node,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(Security::default(), &[])
    }

    /// With `appendonly yes` and `appendfsync always`, so data survives a kill and restart.
    pub fn start_durable() -> RedisServer {
        Self::start_with(
            Security::default(),
            &["--appendonly", "yes", "--appendfsync", "always"],
        )
    }

    /// With `security` (an ACL user, a password, TLS) and extra `redis-server` arguments (a
    /// `--maxmemory-policy`, a `--rename-command`, …).
    pub fn start_with(security: Security, extra: &[&str]) -> RedisServer {
        let port = free_port();
        let mut args = server_args(port, &security);
        args.extend(extra.iter().map(|a| a.to_string()));
        let server = RedisServer {
            port,
            node: Node::server(port, tempfile::tempdir().unwrap(), args),
            security,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        wait_until("redis-server answers PING", Duration::from_secs(10), || {
            connect(&self.security.client(self.port))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
    }

    /// Starts again on the same port and data directory (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        self.node.restart();
        self.wait_ready();
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.node.kill9();
    }

    /// Sends `signal` (`SIGSTOP` freezes the server, `SIGCONT` thaws it).
    pub fn signal(&self, signal: i32) {
        self.node.signal(signal);
    }

    pub fn address(&self) -> String {
        self.node.address()
    }

    /// A connection as administrator (the default user), over TLS when enabled.
    pub fn conn(&self) -> redis::Connection {
        self.security
            .client(self.port)
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to test redis")
    }

    pub fn list(&self, key: &str) -> Vec<Vec<u8>> {
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(&mut self.conn())
            .unwrap()
    }

    pub fn llen(&self, key: &str) -> usize {
        redis::cmd("LLEN")
            .arg(key)
            .query(&mut self.conn())
            .unwrap_or(0)
    }
}

/// Like [`wait_until`], but a timeout shows the end of every node's log, so that a node that did not
/// start (a port taken meanwhile, say) is visible.
pub(super) fn wait_or_dump(
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

pub(super) fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    client.get_connection_with_timeout(Duration::from_millis(500))
}

/// `connected_slaves` of the node on `port`: how many replicas its `INFO replication` lists.
pub fn connected_replicas(security: &Security, port: u16) -> Option<u32> {
    replication_info(&security.client(port))?
        .get("connected_slaves")?
        .parse()
        .ok()
}

/// `INFO replication` as key/value pairs.
pub(super) fn replication_info(
    client: &redis::Client,
) -> Option<std::collections::HashMap<String, String>> {
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
