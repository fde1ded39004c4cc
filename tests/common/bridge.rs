//! The bridge under test, as a child process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{die_with_parent, wait_until};

fn send_signal(child: &Child, signal: i32) {
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_kafka2redis")
}

/// The command line of kafka2redis in `dir` with `args`, reading nothing from stdin.
pub fn bridge_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.current_dir(dir).args(args).stdin(Stdio::null());
    cmd
}

/// Runs kafka2redis in `dir` with `args` to its end (`check`, `status`, a config error): its exit
/// status and what it printed.
pub fn run_bridge(dir: &Path, args: &[&str]) -> Output {
    bridge_command(dir, args).output().expect("run kafka2redis")
}

/// The daemon, running: `RUST_LOG` as given, stderr (the log) in `dir/kafka2redis.N.log`, stdout
/// in `dir/kafka2redis.N.out`.
pub struct Bridge {
    child: Option<Child>,
    pub log: PathBuf,
    pub out: PathBuf,
    pub dir: PathBuf,
}

impl Bridge {
    /// Starts kafka2redis in `dir` with `args`, logging at debug level for itself, info for the rest.
    pub fn start(dir: &Path, args: &[&str]) -> Bridge {
        Self::start_logging(dir, args, "info,kafka2redis=debug")
    }

    /// Starts kafka2redis in `dir` with `args` and `RUST_LOG=rust_log`.
    pub fn start_logging(dir: &Path, args: &[&str], rust_log: &str) -> Bridge {
        use std::sync::atomic::{AtomicU32, Ordering};
        static RUN: AtomicU32 = AtomicU32::new(0);
        let run = RUN.fetch_add(1, Ordering::Relaxed);
        let log = dir.join(format!("kafka2redis.{run}.log"));
        let out = dir.join(format!("kafka2redis.{run}.out"));
        let mut cmd = bridge_command(dir, args);
        cmd.env("RUST_LOG", rust_log)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        die_with_parent(&mut cmd);
        Bridge {
            child: Some(cmd.spawn().expect("start kafka2redis")),
            log,
            out,
            dir: dir.to_path_buf(),
        }
    }

    /// What it printed on stdout.
    pub fn out_text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the lanes to start (the bridge logs each assignment).
    pub fn wait_assigned(&self) {
        wait_until(
            "kafka2redis logs its partition assignment",
            Duration::from_secs(60),
            || self.log_text().contains("partitions assigned"),
        );
    }

    pub fn signal(&self, signal: i32) {
        send_signal(self.child.as_ref().expect("running"), signal);
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "kafka2redis did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log_text());
        }
    }
}
