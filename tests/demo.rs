//! `kafka2redis demo`, the README's first command: it brings its own Kafka (librdkafka's mock
//! cluster) and, unless given one, its own `redis-server`. While it runs, messages land on the
//! list, `kafka2redis status` (the command line it prints) and the status page answer; SIGINT, as
//! Ctrl-C sends, stops it with exit 0 and takes its Redis and config with it.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{binary, die_with_parent, http_get, wait_until, RedisServer};

/// A running `kafka2redis demo`, its stdout and stderr in files.
struct Demo {
    child: Child,
    dir: tempfile::TempDir,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("demo")
            .args(args)
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
        die_with_parent(&mut cmd);
        Demo {
            child: cmd.spawn().expect("start kafka2redis demo"),
            dir,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    fn output(&self) -> String {
        let stderr = std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default();
        format!("stdout:\n{}\nstderr:\n{stderr}", self.stdout())
    }

    /// The rest of the first stdout line containing `marker`, once the demo has printed it.
    fn printed_after(&self, marker: &str) -> String {
        wait_until(
            &format!("the demo prints {marker:?}"),
            Duration::from_secs(30),
            || self.stdout().contains(marker),
        );
        let out = self.stdout();
        let line = out.lines().find(|l| l.contains(marker)).unwrap();
        line.split_once(marker).unwrap().1.trim().to_string()
    }

    /// SIGINT, as Ctrl-C sends, then the exit status (within `timeout`).
    fn interrupt(&mut self, timeout: Duration) -> ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not stop within {timeout:?} of SIGINT\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.output());
        }
    }
}

fn llen(conn: &mut redis::Connection, key: &str) -> usize {
    redis::cmd("LLEN").arg(key).query(conn).unwrap_or(0)
}

#[test]
fn demo_runs_on_its_own_redis_answers_status_and_stops_on_sigint() {
    let mut demo = Demo::start(&["--interval-ms", "100"]);

    // redis-cli -p PORT LRANGE queues:demo 0 -1
    let port: u16 = demo
        .printed_after("redis-cli -p ")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .expect("the demo's redis-server answers");
    wait_until(
        "five messages on queues:demo",
        Duration::from_secs(60),
        || llen(&mut conn, "queues:demo") >= 5,
    );
    let first: Vec<String> = redis::cmd("LRANGE")
        .arg("queues:demo")
        .arg(0)
        .arg(4)
        .query(&mut conn)
        .unwrap();
    for element in &first {
        let record: serde_json::Value = serde_json::from_str(element).unwrap();
        assert_eq!(record["topic"], "demo", "{element}");
        assert!(
            record["value"].as_str().unwrap().contains("\"order\":"),
            "{element}"
        );
    }
    wait_until(
        "the demo shows the messages arriving",
        Duration::from_secs(10),
        || demo.stdout().contains("queues:demo <- {\"topic\":\"demo\""),
    );

    // The status command line it printed, as printed.
    let config = PathBuf::from(demo.printed_after(" status --config "));
    let status = Command::new(binary())
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "status: {table}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let rows = table
        .lines()
        .filter(|l| l.starts_with("demo ") && l.contains("queues:demo"))
        .count();
    assert_eq!(rows, 3, "one row per partition:\n{table}");

    let url = demo.printed_after("status page: ");
    let http_port: u16 = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let (code, page) = http_get(http_port, "/").expect("the status page answers");
    assert_eq!(code, 200);
    assert!(page.contains("<title>kafka2redis</title>"), "{page}");

    let exit = demo.interrupt(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(0), "{}", demo.output());
    assert!(demo.stdout().contains("demo stopped:"), "{}", demo.output());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the demo's redis-server stops with it"
    );
    assert!(!config.exists(), "the demo's config is removed");
}

#[test]
fn demo_pushes_to_a_given_redis_and_leaves_it_running() {
    let redis = RedisServer::start();
    let mut demo = Demo::start(&["--redis", &redis.address(), "--interval-ms", "50"]);
    assert_eq!(
        demo.printed_after("redis-cli -h 127.0.0.1 -p "),
        format!("{} LRANGE queues:demo 0 -1", redis.port)
    );
    wait_until(
        "three messages on queues:demo",
        Duration::from_secs(60),
        || redis.llen("queues:demo") >= 3,
    );
    let exit = demo.interrupt(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(0), "{}", demo.output());
    assert!(
        redis.llen("queues:demo") >= 3,
        "a given Redis keeps running"
    );
}

/// `kafka2redis demo ARGS` with `PATH` = `path`: one sentence on stderr containing `why`, exit 2.
fn assert_refused(args: &[&str], path: &std::path::Path, why: &str) {
    let output = Command::new(binary())
        .arg("demo")
        .args(args)
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: one sentence: {stderr}"
    );
    assert!(stderr.contains(why), "{args:?}: {stderr}");
}

#[test]
fn a_demo_that_cannot_run_says_why_in_one_sentence_and_exits_2() {
    let empty = tempfile::tempdir().unwrap();
    assert_refused(&[], empty.path(), "redis-server is not installed");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::path::Path::new(&path);
    assert_refused(&["--redis", "nowhere"], path, "--redis \"nowhere\"");
    assert_refused(
        &["--redis", "http://127.0.0.1:1"],
        path,
        "not a redis:// URL",
    );
    let closed = format!("127.0.0.1:{}", common::free_port());
    assert_refused(&["--redis", &closed], path, "cannot reach Redis");
}
