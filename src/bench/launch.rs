//! Local service processes on loopback ports: the one way to start a `redis-server` and wait for
//! it, shared by the bench, the demo and the test suites (`tests/common`), so that a change to how
//! Redis is launched is made once.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;

/// A loopback port nothing listens on right now, not handed out before in this process (the OS
/// picks it; another process may still take it before the caller binds, which a launcher's wait
/// then reports).
///
/// The OS may hand one free port to two callers that ask before either listens — two tests of
/// one binary, or a test's new server and a node restarting on the port it had — and then one's
/// client reaches the other's server; so this process never hands a port out twice.
pub fn free_port() -> std::io::Result<u16> {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if reserve_port(port) {
            return Ok(port);
        }
    }
}

/// Marks `port` as handed out by this process (a port a server also listens on beside its own,
/// such as a Cluster node's bus port); false if it already was.
pub fn reserve_port(port: u16) -> bool {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(port)
}

/// The command line of a `redis-server` on 127.0.0.1:`port` keeping its files in `dir`, with RDB
/// snapshots off and its output discarded; `extra` follows (`--appendonly yes`, `--replicaof …`).
/// The caller spawns it, so that it can add what its own processes need (the tests make theirs
/// die with the test).
pub fn redis_server(port: u16, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", ""])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Waits until the Redis at `address` (HOST:PORT) answers `PING`.
pub fn wait_for_ping(address: &str, timeout: Duration) -> anyhow::Result<()> {
    let url = format!("redis://{address}/");
    wait_for(
        &format!("Redis at {address} to answer PING"),
        timeout,
        Duration::from_millis(5),
        || {
            Ok(redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok())
        },
    )
}

/// Polls `done` every `every` until it holds; an error after `timeout` names `what`.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let until = Instant::now() + timeout;
    while !done()? {
        if Instant::now() > until {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
    Ok(())
}
