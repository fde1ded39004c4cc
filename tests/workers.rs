//! The job envelopes end to end: Kafka → kafka2redis → the stock, unmodified worker of each
//! framework (Laravel's `queue:work`, Celery's worker, Sidekiq), run by tests/workers/run_worker.sh
//! on the fixtures beside it. Each fixture's handler appends one JSON line per job it ran —
//! `{"topic","partition","offset","value"[,"value_encoding"]}` of the record it was given — so the
//! tests read what each worker actually ran.
//!
//! A framework that is not installed (scripts/install-workers.sh) skips its tests with a message,
//! except in CI (`CI=true`), where that is a failure.

mod common;

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const PARTITIONS: i32 = 3;
const DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framework {
    Laravel,
    Celery,
    Sidekiq,
}

impl Framework {
    fn name(self) -> &'static str {
        match self {
            Framework::Laravel => "laravel",
            Framework::Celery => "celery",
            Framework::Sidekiq => "sidekiq",
        }
    }

    /// The handler each fixture defines, as the topic's `job` (a TOML literal string).
    fn job(self) -> &'static str {
        match self {
            Framework::Laravel => r"'App\Jobs\RecordMessage@handle'",
            Framework::Celery => "'tasks.record'",
            Framework::Sidekiq => "'RecordWorker'",
        }
    }

    /// The list the bridge pushes to by default, which the worker below pops.
    fn list(self, topic: &str) -> String {
        match self {
            Framework::Laravel => format!("queues:{topic}"),
            Framework::Celery => "celery".into(),
            Framework::Sidekiq => format!("queue:{topic}"),
        }
    }

    /// The worker's `--queue` for that list.
    fn queue(self, topic: &str) -> String {
        match self {
            Framework::Celery => "celery".into(),
            Framework::Laravel | Framework::Sidekiq => topic.into(),
        }
    }

    /// Jobs a worker holds taken but not finished, in the framework's own reservation.
    fn reserved(self, redis: &RedisServer, topic: &str) -> usize {
        let mut conn = redis.conn();
        let n: usize = match self {
            Framework::Laravel => redis::cmd("ZCARD")
                .arg(format!("queues:{topic}:reserved"))
                .query(&mut conn),
            Framework::Celery => redis::cmd("HLEN").arg("unacked").query(&mut conn),
            // Basic fetch reserves nothing in Redis.
            Framework::Sidekiq => Ok(0),
        }
        .unwrap();
        n
    }

    fn installed(self) -> bool {
        let ok = |cmd: &mut Command| {
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        match self {
            Framework::Laravel => ok(Command::new("php").args([
                "-r",
                r#"exit(extension_loaded("redis") && stream_resolve_include_path("Illuminate/autoload.php") ? 0 : 1);"#,
            ])),
            Framework::Celery => ok(Command::new(celery_venv().join("bin/python"))
                .args(["-c", "import celery, redis"])),
            Framework::Sidekiq => ok(Command::new("ruby").args(["-e", "require 'sidekiq'"])),
        }
    }
}

fn celery_venv() -> PathBuf {
    std::env::var_os("K2R_WORKERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-workers"))
}

/// Whether the framework's tests can run: skipped (with a message) when it is not installed,
/// except in CI, where a missing framework fails the test.
fn available(framework: Framework) -> bool {
    if framework.installed() {
        return true;
    }
    let what = format!(
        "the {} worker is not installed (run scripts/install-workers.sh)",
        framework.name()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}; CI must run these tests");
    }
    eprintln!("skipped: {what}");
    false
}

/// One stock worker process: run_worker.sh `exec`s it, so the child's pid is the worker's.
struct Worker {
    child: Option<Child>,
    log: PathBuf,
}

impl Worker {
    fn start(
        framework: Framework,
        redis: &RedisServer,
        topic: &str,
        out: &Path,
        env: &[(&str, &str)],
    ) -> Worker {
        let log = out.with_extension(format!("{}.{}.log", framework.name(), free_port()));
        let mut cmd = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/workers/run_worker.sh"
        ));
        cmd.arg(framework.name())
            .args(["--port", &redis.port.to_string()])
            .args(["--queue", &framework.queue(topic)])
            .arg("--out")
            .arg(out)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        // The worker dies with the test thread that started it, even when the test panics.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Worker {
            child: Some(cmd.spawn().expect("start the worker")),
            log,
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- {} ---\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Messages over every partition, cycling through text, JSON text, multi-byte UTF-8, binary and
/// a tombstone; `first` is the offset the first of each partition gets (the topic is fresh).
/// Returns what the handler must record for each, by partition in offset order.
fn produce(broker: &Broker, topic: &str, per_partition: usize, first: usize) -> Vec<Value> {
    let all: Vec<i32> = (0..PARTITIONS).collect();
    produce_on(broker, topic, &all, per_partition, first)
}

fn produce_on(
    broker: &Broker,
    topic: &str,
    partitions: &[i32],
    per_partition: usize,
    first: usize,
) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut expected = Vec::new();
    for &partition in partitions {
        for i in first..first + per_partition {
            let value: Option<Vec<u8>> = match i % 5 {
                0 => Some(format!("p{partition} m{i} plain text").into_bytes()),
                1 => Some(format!(r#"{{"p":{partition},"m":{i},"q":"\"/\\<&>"}}"#).into_bytes()),
                2 => Some(format!("p{partition} m{i} héllo 世界 🚀 \u{2028} é/x").into_bytes()),
                3 => Some(vec![0xff, 0xfe, 0x00, partition as u8, i as u8]),
                _ => None,
            };
            let mut line = json!({
                "topic": topic,
                "partition": partition,
                "offset": i,
            });
            set_record_value(&mut line, value.as_deref());
            expected.push(line);
            messages.push(TestMessage::new(topic, partition, value.as_deref()));
        }
    }
    broker.produce(&messages);
    expected
}

/// Every expected job ran exactly once, values intact, and each partition's jobs in offset order.
fn assert_ran_exactly_once_in_order(ran: &[Value], expected: &[Value]) {
    assert_ran_exactly_once(ran, expected);
    let mut last: HashMap<i64, i64> = HashMap::new();
    for line in ran {
        let (p, o) = (
            line["partition"].as_i64().unwrap(),
            line["offset"].as_i64().unwrap(),
        );
        if let Some(prev) = last.insert(p, o) {
            assert!(prev < o, "partition {p} ran offset {o} after {prev}");
        }
    }
}

/// Every expected job ran exactly once, values intact, and nothing else ran.
fn assert_ran_exactly_once(ran: &[Value], expected: &[Value]) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for line in ran {
        *count.entry(line.to_string()).or_default() += 1;
    }
    for e in expected {
        assert_eq!(
            count.get(&e.to_string()).copied().unwrap_or(0),
            1,
            "job {e} ran once; all runs: {ran:#?}"
        );
    }
    assert_eq!(ran.len(), expected.len(), "nothing else ran: {ran:#?}");
}

/// A test's services and files: a Redis of its own, a fresh topic on the shared broker, and a
/// directory for the config, logs and the worker's output file.
struct Setup {
    framework: Framework,
    broker: &'static Broker,
    redis: RedisServer,
    topic: String,
    dir: tempfile::TempDir,
    out: PathBuf,
}

impl Setup {
    fn new(framework: Framework) -> Setup {
        let broker = Broker::shared();
        let topic = unique(&format!("jobs-{}", framework.name()));
        broker.create_topic(&topic, PARTITIONS);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ran.jsonl");
        Setup {
            framework,
            broker,
            redis: RedisServer::start(),
            topic,
            dir,
            out,
        }
    }

    fn list(&self) -> String {
        self.framework.list(&self.topic)
    }

    /// The config for the topic with the framework's envelope and `topic_extra` (e.g. a cap).
    fn config(&self, topic_extra: &str) -> Config {
        let topics = format!(
            r#"[{{ name = "{}", envelope = "{}", job = {}{topic_extra} }}]"#,
            self.topic,
            self.framework.name(),
            self.framework.job()
        );
        Config::new(self.broker, &self.redis, &self.topic, &topics)
    }

    /// Writes `config` to k2r.toml.
    fn write(&self, config: Config) {
        config.write(self.dir.path(), "k2r.toml");
    }

    fn bridge(&self) -> Bridge {
        let bridge = Bridge::start(self.dir.path(), &["--config", "k2r.toml"]);
        bridge.wait_assigned();
        bridge
    }

    fn worker(&self, env: &[(&str, &str)]) -> Worker {
        Worker::start(self.framework, &self.redis, &self.topic, &self.out, env)
    }

    /// Waits until the worker has run `n` jobs and holds none: nothing left to run again.
    fn wait_done(&self, n: usize) -> Vec<Value> {
        wait_until(
            &format!("the {} worker ran {n} jobs", self.framework.name()),
            DEADLINE,
            || {
                ran(&self.out).len() >= n
                    && self.redis.llen(&self.list()) == 0
                    && self.framework.reserved(&self.redis, &self.topic) == 0
            },
        );
        ran(&self.out)
    }

    /// While `jobs` wait in the list, untouched: what the framework's client writes beside them.
    fn assert_pending_companions(&self, jobs: usize) {
        if self.framework == Framework::Laravel {
            let notify = self.redis.llen(&format!("{}:notify", self.list()));
            assert_eq!(notify, jobs, "one :notify element per job pushed");
        }
    }

    /// What the framework's own client leaves beside the jobs, once they all ran.
    fn assert_companions(&self) {
        let mut conn = self.redis.conn();
        match self.framework {
            Framework::Laravel => {
                // One `1` per job, which the worker's pop takes with each job: none left over.
                let notify: usize = redis::cmd("LLEN")
                    .arg(format!("{}:notify", self.list()))
                    .query(&mut conn)
                    .unwrap();
                assert_eq!(notify, 0, "one :notify element per job, each taken");
            }
            Framework::Sidekiq => {
                let queues: Vec<String> = redis::cmd("SMEMBERS")
                    .arg("queues")
                    .query(&mut conn)
                    .unwrap();
                assert_eq!(
                    queues,
                    vec![self.topic.as_str()],
                    "the queue is listed for the Web UI"
                );
            }
            Framework::Celery => {}
        }
    }
}

fn runs_every_message_once_in_partition_order(framework: Framework) {
    if !available(framework) {
        return;
    }
    let s = Setup::new(framework);
    s.write(s.config(""));
    let expected = produce(s.broker, &s.topic, 10, 0);
    let _bridge = s.bridge();
    let _worker = s.worker(&[]);
    let ran = s.wait_done(expected.len());
    assert_ran_exactly_once_in_order(&ran, &expected);
    s.assert_companions();
}

#[test]
fn laravel_runs_every_message_once_in_partition_order() {
    runs_every_message_once_in_partition_order(Framework::Laravel);
}

#[test]
fn celery_runs_every_message_once_in_partition_order() {
    runs_every_message_once_in_partition_order(Framework::Celery);
}

#[test]
fn sidekiq_runs_every_message_once_in_partition_order() {
    runs_every_message_once_in_partition_order(Framework::Sidekiq);
}

/// The list the framework pops is capped: the bridge fills it to the cap and pauses, and the
/// worker started afterwards still runs everything, once, in order.
fn capped_list_holds_jobs_back(framework: Framework) {
    if !available(framework) {
        return;
    }
    let cap = 7;
    let s = Setup::new(framework);
    s.write(
        s.config(&format!(", cap = {cap}"))
            .sections("[flow]\ncheck_interval_ms = 20"),
    );
    let expected = produce(s.broker, &s.topic, 10, 0);
    let bridge = s.bridge();
    wait_until("the bridge pauses on the full list", DEADLINE, || {
        bridge.log_text().contains("list full: partition paused")
    });
    assert_eq!(
        s.redis.llen(&s.list()),
        cap,
        "filled to the cap, not past it"
    );
    let _worker = s.worker(&[]);
    let ran = s.wait_done(expected.len());
    assert_ran_exactly_once_in_order(&ran, &expected);
    s.assert_companions();
    assert!(bridge
        .log_text()
        .contains("list drained: partition resumed"));
}

#[test]
fn laravel_capped_list_holds_jobs_back() {
    capped_list_holds_jobs_back(Framework::Laravel);
}

#[test]
fn celery_capped_list_holds_jobs_back() {
    capped_list_holds_jobs_back(Framework::Celery);
}

#[test]
fn sidekiq_capped_list_holds_jobs_back() {
    capped_list_holds_jobs_back(Framework::Sidekiq);
}

/// Exactly-once: a bridge killed with -9 after pushing, long before it committed to Kafka, and
/// restarted in a group with no committed offsets at all, resumes from the offsets Redis recorded
/// with the jobs, so no job runs twice.
fn exactly_once_survives_a_bridge_kill(framework: Framework) {
    if !available(framework) {
        return;
    }
    let s = Setup::new(framework);
    // No commit before the kill: an at-least-once bridge would push everything again.
    let config = s
        .config(", delivery = \"exactly-once\"")
        .commit_interval_ms(600_000);
    s.write(config.clone());
    let mut expected = produce(s.broker, &s.topic, 5, 0);
    let mut bridge = s.bridge();
    let _worker = s.worker(&[]);
    s.wait_done(expected.len());
    bridge.kill9();
    assert!(
        s.broker
            .committed(&s.topic, &s.topic, PARTITIONS)
            .iter()
            .all(Option::is_none),
        "nothing was committed to Kafka before the kill"
    );

    // A new group: the killed member would hold the old group's partitions until the broker
    // expires its session, and Kafka offers the new one nothing to resume from but the beginning.
    s.write(config.group(&format!("{}-restarted", s.topic)));
    expected.extend(produce(s.broker, &s.topic, 5, 5));
    let _bridge = s.bridge();
    let ran = s.wait_done(expected.len());
    assert_ran_exactly_once_in_order(&ran, &expected);
    s.assert_companions();
    let offsets: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("{{{}}}:offsets", s.list()))
        .query(&mut s.redis.conn())
        .unwrap();
    for p in 0..PARTITIONS {
        assert_eq!(
            offsets.get(&format!("{}:{p}", s.topic)).map(String::as_str),
            Some("10"),
            "partition {p}'s next offset recorded with its jobs: {offsets:?}"
        );
    }
}

#[test]
fn laravel_exactly_once_survives_a_bridge_kill() {
    exactly_once_survives_a_bridge_kill(Framework::Laravel);
}

#[test]
fn celery_exactly_once_survives_a_bridge_kill() {
    exactly_once_survives_a_bridge_kill(Framework::Celery);
}

#[test]
fn sidekiq_exactly_once_survives_a_bridge_kill() {
    exactly_once_survives_a_bridge_kill(Framework::Sidekiq);
}

/// Two jobs on partition 0. A worker takes the first and sleeps in it (before recording anything)
/// and is killed with -9 there; a second worker with the same settings and no sleep then runs
/// what is left. Returns the two jobs expected, and what ran once `runs` jobs ran and nothing is
/// left in the list or the framework's reservation.
fn kill_worker_mid_job(s: &Setup, env: &[(&str, &str)], runs: usize) -> (Vec<Value>, Vec<Value>) {
    s.write(s.config(""));
    let expected = produce_on(s.broker, &s.topic, &[0], 2, 0);
    let _bridge = s.bridge();
    wait_until("the bridge pushed both jobs", DEADLINE, || {
        s.redis.llen(&s.list()) == 2
    });
    s.assert_pending_companions(2);
    let slow: Vec<(&str, &str)> = env
        .iter()
        .copied()
        .chain([("K2R_WORKER_SLEEP", "600")])
        .collect();
    let mut worker = s.worker(&slow);
    let reserves = s.framework != Framework::Sidekiq;
    wait_until("the worker took the first job", DEADLINE, || {
        s.redis.llen(&s.list()) == 1 && (!reserves || s.framework.reserved(&s.redis, &s.topic) == 1)
    });
    worker.kill9();
    assert!(ran(&s.out).is_empty(), "the killed job recorded nothing");
    let _worker = s.worker(env);
    wait_until(
        &format!("the second worker ran {runs} jobs and holds none"),
        DEADLINE,
        || {
            ran(&s.out).len() >= runs
                && s.redis.llen(&s.list()) == 0
                && s.framework.reserved(&s.redis, &s.topic) == 0
        },
    );
    (expected, ran(&s.out))
}

#[test]
fn laravel_job_of_a_killed_worker_runs_again_after_retry_after() {
    if !available(Framework::Laravel) {
        return;
    }
    let s = Setup::new(Framework::Laravel);
    // The reserved copy waits retry_after seconds in `:reserved`; then the next worker's pop moves
    // it back and runs it (the fixture's --tries=0 sets no attempt limit).
    let (expected, ran) = kill_worker_mid_job(&s, &[("K2R_LARAVEL_RETRY_AFTER", "3")], 2);
    assert_ran_exactly_once(&ran, &expected);
    assert_eq!(
        ran[0]["offset"], 1,
        "the second job ran while the first waited out retry_after"
    );
}

#[test]
fn celery_task_of_a_killed_worker_is_redelivered_after_the_visibility_timeout() {
    if !available(Framework::Celery) {
        return;
    }
    let s = Setup::new(Framework::Celery);
    // With --pool=solo the (early) ack is written only after the task returns, so the killed
    // task stays in `unacked` and is restored to the list once older than the visibility timeout.
    let (expected, ran) = kill_worker_mid_job(
        &s,
        &[
            ("K2R_CELERY_VISIBILITY_TIMEOUT", "3"),
            ("K2R_CELERY_RESTORE_INTERVAL", "1"),
        ],
        2,
    );
    assert_ran_exactly_once(&ran, &expected);
}

#[test]
fn sidekiq_job_of_a_killed_worker_is_lost_with_basic_fetch() {
    if !available(Framework::Sidekiq) {
        return;
    }
    let s = Setup::new(Framework::Sidekiq);
    let (mut expected, ran) = kill_worker_mid_job(&s, &[], 1);
    // Basic fetch popped the job and reserved nothing in Redis: the kill lost it. The other ran.
    let lost = expected.remove(0);
    assert_eq!(
        (lost["partition"].as_i64(), lost["offset"].as_i64()),
        (Some(0), Some(0))
    );
    assert_ran_exactly_once(&ran, &expected);
    let mut conn = s.redis.conn();
    for set in ["retry", "dead", "schedule"] {
        let n: usize = redis::cmd("ZCARD").arg(set).query(&mut conn).unwrap();
        assert_eq!(n, 0, "the lost job is not in Sidekiq's {set} set either");
    }
}
