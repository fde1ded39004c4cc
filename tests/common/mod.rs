//! Test harness: real `redis-server` and Tansu broker processes on free loopback ports, the
//! kafka2redis binary as a child process, and helpers that read outcomes from Redis and Kafka.
//! Ports, the `redis-server` command line and waiting are the bench's launcher
//! (`kafka2redis::bench::launch`), so there is one of each.
// Each test binary uses a part of the harness.
#![allow(dead_code, unused_imports)]

pub mod bridge;
pub mod cluster;
pub mod config;
pub mod faults;
pub mod http;
pub mod kafka;
pub mod mock_broker;
pub mod proxy;
pub mod redis_server;
pub mod security;
pub mod sentinel;
pub mod streams;
pub mod topology;
pub mod workers;

pub use bridge::*;
pub use cluster::*;
pub use config::*;
pub use faults::*;
pub use http::*;
pub use kafka::*;
pub use mock_broker::*;
pub use redis_server::*;
pub use security::*;
pub use sentinel::*;
pub use streams::*;
pub use topology::*;
pub use workers::*;

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kafka2redis::bench::launch;

/// Polls `condition` every 50 ms until it holds or `timeout` passes; panics with `what` on timeout.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    launch::wait_for(what, timeout, Duration::from_millis(50), || Ok(condition()))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A loopback port nothing listens on, not handed out before in this test process
/// ([`launch::free_port`]).
pub fn free_port() -> u16 {
    launch::free_port().expect("free port")
}

/// Makes the child die with the thread that spawned it (the test's thread, or a parked thread for
/// shared services), so no service outlives a test run even if it panics.
pub fn die_with_parent(cmd: &mut Command) {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Runs `program` with `args` in `dir` to its end; panics with its stderr unless it succeeded.
pub fn run_ok(dir: &Path, program: impl AsRef<OsStr>, args: &[&str]) {
    let program = program.as_ref();
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program:?} (scripts/install-deps.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{program:?} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A unique name for a test's topic and group.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
