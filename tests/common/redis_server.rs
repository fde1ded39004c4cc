//! `redis-server` processes on free loopback ports: one node that can be killed and restarted on
//! the same port and data directory, and standalone servers. Every process is killed when its
//! handle drops, and with the test process (see `die_with_parent`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka2redis::bench::launch;

use super::security::Security;
use super::{die_with_parent, free_port, wait_until};

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
    pub(super) fn start(args: Vec<String>, port: u16, dir: tempfile::TempDir) -> Node {
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

/// Arguments every data node gets: loopback, no persistence, the given port (or TLS port).
pub(super) fn base_args(port: u16, dir: &Path, security: &Security) -> Vec<String> {
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

pub(super) fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    client.get_connection_with_timeout(Duration::from_millis(500))
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

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    aof: bool,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// With `appendonly yes` and `appendfsync always`, so data survives a kill and restart.
    pub fn start_durable() -> RedisServer {
        Self::start_with(true)
    }

    fn start_with(aof: bool) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            aof,
            child: None,
        };
        server.restart();
        server
    }

    /// Starts (again) on the same port and data directory.
    pub fn restart(&mut self) {
        let appendonly = if self.aof { "yes" } else { "no" };
        let mut cmd = launch::redis_server(
            self.port,
            self.dir.path(),
            &["--appendonly", appendonly, "--appendfsync", "always"],
        );
        die_with_parent(&mut cmd);
        self.child = Some(
            cmd.spawn()
                .expect("redis-server (apt install redis-server)"),
        );
        launch::wait_for_ping(&self.address(), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
