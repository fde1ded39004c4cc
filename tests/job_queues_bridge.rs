//! `envelope = "bullmq"` and `envelope = "rq"` end to end: Kafka (Tansu) → kafka2redis → the stock,
//! unmodified worker (BullMQ's `Worker` from npm, `rq worker` from PyPI with its default
//! serializer), whose handler (tests/workers/bullmq/worker.mjs, tests/workers/rq/tasks.py) appends
//! one JSON line per job it ran. Every message runs once, in per-partition order (one worker, one
//! job at a time), values intact; the cap holds while no worker runs; exactly-once survives a
//! `kill -9`; a bridge restarted from an older committed offset adds no job twice (the derived ids);
//! BullMQ runs on Redis Cluster with a hash-tagged prefix.
//!
//! scripts/install-workers.sh installs the frameworks; one that is not installed skips its tests
//! with a message, except in CI (`CI=true`), where that is a failure.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::security::Security;
use common::*;
use serde_json::{json, Value};

const PARTITIONS: i32 = 3;
const DEADLINE: Duration = Duration::from_secs(120);
/// The BullMQ job name and the RQ function the fixtures define.
const BULLMQ_NAME: &str = "record";
const RQ_FUNCTION: &str = "tasks.record";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framework {
    Bullmq,
    Rq,
}

impl Framework {
    fn envelope(self) -> &'static str {
        match self {
            Framework::Bullmq => "bullmq",
            Framework::Rq => "rq",
        }
    }

    fn job(self) -> &'static str {
        match self {
            Framework::Bullmq => BULLMQ_NAME,
            Framework::Rq => RQ_FUNCTION,
        }
    }

    /// The list of waiting jobs, which the cap counts.
    fn waiting(self, prefix: &str, queue: &str) -> String {
        match self {
            Framework::Bullmq => format!("{prefix}:{queue}:wait"),
            Framework::Rq => format!("{prefix}:queue:{queue}"),
        }
    }

    fn default_prefix(self) -> &'static str {
        match self {
            Framework::Bullmq => "bull",
            Framework::Rq => "rq",
        }
    }

    /// The topic entry of the bridge's config.
    fn topic(self, topic: &str, queue: &str, extra: &str) -> String {
        format!(
            r#"[{{ name = "{topic}", envelope = "{}", job = "{}", queue = "{queue}"{extra} }}]"#,
            self.envelope(),
            self.job()
        )
    }
}

fn fixtures(framework: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workers")
        .join(framework)
}

fn venv_bin(name: &str) -> PathBuf {
    std::env::var_os("K2R_WORKERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-workers"))
        .join("bin")
        .join(name)
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a framework's tests can run: skipped (with a message) when it is not installed, except
/// in CI, where a missing framework fails the test.
fn available(framework: Framework) -> bool {
    let installed = match framework {
        Framework::Bullmq => {
            fixtures("bullmq")
                .join("node_modules/bullmq/package.json")
                .exists()
                && succeeds(Command::new("node").arg("--version"))
        }
        Framework::Rq => succeeds(Command::new(venv_bin("python")).args(["-c", "import rq"])),
    };
    if installed {
        return true;
    }
    let what = format!(
        "{} is not installed (run scripts/install-workers.sh)",
        framework.envelope()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}; CI must run these tests");
    }
    eprintln!("skipped: {what}");
    false
}

/// Where a worker connects.
enum Redis<'a> {
    Standalone(&'a RedisServer),
    Cluster(&'a Cluster),
}

/// A stock worker process, killed when dropped; its output shown if the test failed.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(
        framework: Framework,
        redis: Redis<'_>,
        prefix: &str,
        queue: &str,
        out: &Path,
    ) -> Worker {
        let log = out.with_extension(format!("worker.{}.log", free_port()));
        let mut cmd = match framework {
            Framework::Bullmq => {
                let mut cmd = Command::new("node");
                cmd.arg("worker.mjs")
                    .current_dir(fixtures("bullmq"))
                    .env("K2R_BULLMQ_QUEUE", queue)
                    .env("K2R_BULLMQ_PREFIX", prefix);
                match redis {
                    Redis::Standalone(r) => cmd.env("K2R_REDIS_PORT", r.port.to_string()),
                    Redis::Cluster(c) => {
                        let nodes: Vec<String> = c.nodes.iter().map(|n| n.address()).collect();
                        cmd.env("K2R_REDIS_CLUSTER", nodes.join(","))
                    }
                };
                cmd
            }
            Framework::Rq => {
                let Redis::Standalone(r) = redis else {
                    panic!("RQ does not run on Redis Cluster")
                };
                let mut cmd = Command::new(venv_bin("rq"));
                cmd.args(["worker", "--url"])
                    .arg(format!("redis://{}/0", r.address()))
                    .args(["--name", &format!("w{}", free_port())])
                    .arg(queue)
                    .current_dir(fixtures("rq"));
                if prefix != "rq" {
                    panic!("the rq fixture uses RQ's own prefix");
                }
                cmd
            }
        };
        cmd.env("K2R_WORKER_OUT", out)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        die_with_parent(&mut cmd);
        Worker {
            child: cmd.spawn().expect("start the worker"),
            log,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- {} ---\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn wait_ran(out: &Path, n: usize) -> Vec<Value> {
    wait_until(&format!("{n} jobs to run"), DEADLINE, || {
        ran(out).len() >= n
    });
    ran(out)
}

/// `per_partition` messages on each partition, cycling through plain text, JSON text, multi-byte
/// UTF-8 with the characters JSON writers treat apart, binary, a tombstone and an empty value.
/// Returns what the handler records for each (without the job's id and name), by partition in
/// offset order; `first` is the first offset of each partition (the topic is fresh).
fn produce(broker: &Broker, topic: &str, per_partition: i64, first: i64) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut expected = Vec::new();
    for partition in 0..PARTITIONS {
        for offset in first..first + per_partition {
            let value: Option<Vec<u8>> = match offset % 6 {
                0 => Some(format!("p{partition} m{offset} plain text").into_bytes()),
                1 => Some(format!(r#"{{"p":{partition},"q":"\"/\\<&>"}}"#).into_bytes()),
                2 => Some(format!("héllo 世界 🚀 \u{2028} \u{1} tab\t m{offset}").into_bytes()),
                3 => Some(vec![0xff, 0xfe, 0x00, partition as u8, offset as u8]),
                4 => None,
                _ => Some(Vec::new()),
            };
            let mut line = json!({"topic": topic, "partition": partition, "offset": offset});
            set_record_value(&mut line, value.as_deref());
            expected.push(line);
            messages.push(TestMessage::new(topic, partition, value.as_deref()));
        }
    }
    broker.produce(&messages);
    expected
}

/// The runs without the job's id and name, grouped by partition in the order they ran; and checks
/// that every job id ran once.
fn by_partition(runs: &[Value]) -> BTreeMap<i64, Vec<Value>> {
    let mut ids = std::collections::HashSet::new();
    let mut parts: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for run in runs {
        assert!(
            ids.insert(run["id"].to_string()),
            "job {} ran twice",
            run["id"]
        );
        let mut line = run.clone();
        let object = line.as_object_mut().unwrap();
        object.remove("id");
        object.remove("name");
        parts
            .entry(run["partition"].as_i64().unwrap())
            .or_default()
            .push(line);
    }
    parts
}

/// Each message ran exactly once, and each partition's in offset order.
fn assert_ran_once_in_order(runs: &[Value], expected: &[Value]) {
    assert_eq!(runs.len(), expected.len(), "one run per message");
    let want = by_partition(
        &expected
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut e = e.clone();
                e["id"] = i.into();
                e
            })
            .collect::<Vec<_>>(),
    );
    assert_eq!(by_partition(runs), want);
}

fn setup(name: &str) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique(name);
    Broker::shared().create_topic(&topic, PARTITIONS);
    // Queue names may not hold ':'; `unique` makes `name-pid-n`.
    let queue = unique("q");
    (dir, topic, queue)
}

fn every_message_once_in_order(framework: Framework) {
    if !available(framework) {
        return;
    }
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let (dir, topic, queue) = setup(&format!("{}-order", framework.envelope()));
    let expected = produce(broker, &topic, 12, 0);
    let config = Config::new(
        broker,
        &redis,
        &unique("g"),
        &framework.topic(&topic, &queue, ""),
    )
    .to_string();
    write_file(dir.path(), "k2r.toml", &config);
    let _bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    let out = dir.path().join("ran.jsonl");
    let prefix = framework.default_prefix();
    let _worker = Worker::start(framework, Redis::Standalone(&redis), prefix, &queue, &out);
    assert_ran_once_in_order(&wait_ran(&out, expected.len()), &expected);
    if framework == Framework::Bullmq {
        assert!(ran(&out).iter().all(|r| r["name"] == BULLMQ_NAME));
    }
    wait_committed(broker, &group_of(&config), &topic);
}

/// Waits until `group` committed every partition of `topic` up to its end.
fn wait_committed(broker: &Broker, group: &str, topic: &str) {
    wait_until(
        "the group to commit every partition to its end",
        DEADLINE,
        || {
            let ends: Vec<Option<i64>> = broker
                .high_watermarks(topic, PARTITIONS)
                .into_iter()
                .map(Some)
                .collect();
            broker.committed(group, topic, PARTITIONS) == ends
        },
    );
}

/// The group name in a config the harness wrote.
fn group_of(config: &str) -> String {
    let line = config.lines().find(|l| l.starts_with("group = ")).unwrap();
    line["group = ".len()..].trim_matches('"').to_string()
}

#[test]
fn bullmq_worker_runs_every_kafka_message_once_in_order() {
    every_message_once_in_order(Framework::Bullmq);
}

#[test]
fn rq_worker_runs_every_kafka_message_once_in_order() {
    every_message_once_in_order(Framework::Rq);
}

/// While no worker runs, the waiting list stays at the cap (the bridge pauses its partitions), and
/// the lag hash and `/metrics` show the queue like any list: its length, and the messages still in
/// Kafka. Once a worker starts, it drains and every message runs once, in order.
fn capped(framework: Framework) {
    if !available(framework) {
        return;
    }
    const CAP: usize = 5;
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let (dir, topic, queue) = setup(&format!("{}-cap", framework.envelope()));
    let expected = produce(broker, &topic, 10, 0);
    let config = Config::new(
        broker,
        &redis,
        &unique("g"),
        &framework.topic(&topic, &queue, &format!(", cap = {CAP}")),
    )
    .sections("[lag]\ninterval_ms = 100")
    .to_string();
    write_file(dir.path(), "k2r.toml", &config);
    let http = free_port();
    let address = format!("127.0.0.1:{http}");
    let _bridge = Bridge::start(dir.path(), &["--config", "k2r.toml", "--http", &address]);
    let prefix = framework.default_prefix();
    let waiting = framework.waiting(prefix, &queue);
    wait_until("the queue to fill up to its cap", DEADLINE, || {
        redis.llen(&waiting) >= CAP
    });
    // A few flow checks (every 100 ms) later the list is still at the cap, not past it.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(redis.llen(&waiting), CAP, "the cap holds");
        std::thread::sleep(Duration::from_millis(50));
    }
    let length = format!("kafka2redis_list_length{{list=\"{waiting}\"}} {CAP}");
    wait_until("/metrics to show the queue's length", DEADLINE, || {
        http_get(http, "/metrics").is_some_and(|(_, body)| body.contains(&length))
    });
    let behind = (expected.len() - CAP).to_string();
    wait_until(
        "the lag hash to count what is still in Kafka",
        DEADLINE,
        || {
            let lag: Option<String> = redis::cmd("HGET")
                .arg("topics_queue_len")
                .arg(&topic)
                .query(&mut redis.conn())
                .unwrap();
            lag.as_deref() == Some(behind.as_str())
        },
    );
    let out = dir.path().join("ran.jsonl");
    let _worker = Worker::start(framework, Redis::Standalone(&redis), prefix, &queue, &out);
    let mut longest = 0;
    wait_until("every job to run", DEADLINE, || {
        longest = longest.max(redis.llen(&waiting));
        ran(&out).len() >= expected.len()
    });
    assert!(longest <= CAP, "the waiting list reached {longest}");
    assert_ran_once_in_order(&ran(&out), &expected);
}

#[test]
fn bullmq_wait_list_is_capped() {
    capped(Framework::Bullmq);
}

#[test]
fn rq_queue_is_capped() {
    capped(Framework::Rq);
}

/// A stream of messages with `delivery = "exactly-once"`, the bridge killed with `kill -9` while it
/// pushes and started again: every message runs once, and no push was even replayed (BullMQ
/// writes a `duplicated` event for a job added twice; RQ's replays are not visible, so the
/// record's position is checked instead).
fn exactly_once_across_kill9(framework: Framework) {
    if !available(framework) {
        return;
    }
    let broker = Broker::shared();
    let redis = RedisServer::start_durable();
    let (dir, topic, queue) = setup(&format!("{}-eo", framework.envelope()));
    let per_partition = match framework {
        Framework::Bullmq => 400,
        // Each RQ job forks a work horse: fewer, so the test stays short.
        Framework::Rq => 60,
    };
    let expected = produce(broker, &topic, per_partition, 0);
    let config = Config::new(
        broker,
        &redis,
        &unique("g"),
        &framework.topic(&topic, &queue, ", delivery = \"exactly-once\""),
    )
    .max_messages(20)
    .to_string();
    write_file(dir.path(), "k2r.toml", &config);
    let prefix = framework.default_prefix();
    let waiting = framework.waiting(prefix, &queue);
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    wait_until("the first jobs", DEADLINE, || redis.llen(&waiting) > 0);
    // Killed right after its first pushes: it commits every 500 ms, so what it pushed since its
    // last commit is in Redis (with the record) and not committed to Kafka.
    bridge.kill9();
    let _bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    let out = dir.path().join("ran.jsonl");
    let _worker = Worker::start(framework, Redis::Standalone(&redis), prefix, &queue, &out);
    assert_ran_once_in_order(&wait_ran(&out, expected.len()), &expected);
    if framework == Framework::Bullmq {
        assert_eq!(
            duplicated_events(&redis, prefix, &queue),
            0,
            "no job pushed twice"
        );
    }
    let offsets: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("{{{waiting}}}:offsets"))
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(offsets.len(), PARTITIONS as usize, "{offsets:?}");
    assert!(
        offsets.values().all(|o| *o == per_partition.to_string()),
        "{offsets:?}"
    );
}

/// The `duplicated` events in a BullMQ queue's events stream: one per job added again.
fn duplicated_events(redis: &RedisServer, prefix: &str, queue: &str) -> usize {
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(format!("{prefix}:{queue}:events"))
        .arg("-")
        .arg("+")
        .query(&mut redis.conn())
        .unwrap();
    entries
        .iter()
        .filter(|(_, fields)| fields.get(1).is_some_and(|e| e == "duplicated"))
        .count()
}

#[test]
fn bullmq_exactly_once_across_a_bridge_kill9() {
    exactly_once_across_kill9(Framework::Bullmq);
}

#[test]
fn rq_exactly_once_across_a_bridge_kill9() {
    exactly_once_across_kill9(Framework::Rq);
}

/// At least once: after every job ran, the group's committed offsets are set back to the start
/// and the bridge started again. It pushes every message a second time, and each finds its job
/// (the id is derived from topic, partition and offset): no job is added or run twice.
fn replay_adds_nothing(framework: Framework) {
    if !available(framework) {
        return;
    }
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let (dir, topic, queue) = setup(&format!("{}-replay", framework.envelope()));
    let expected = produce(broker, &topic, 6, 0);
    let group = unique("g");
    let config =
        Config::new(broker, &redis, &group, &framework.topic(&topic, &queue, "")).to_string();
    write_file(dir.path(), "k2r.toml", &config);
    let prefix = framework.default_prefix();
    let out = dir.path().join("ran.jsonl");
    let _worker = Worker::start(framework, Redis::Standalone(&redis), prefix, &queue, &out);
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    assert_ran_once_in_order(&wait_ran(&out, expected.len()), &expected);
    wait_committed(broker, &group, &topic);
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(DEADLINE).success());

    commit_start(broker, &group, &topic);
    let _bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    wait_committed(broker, &group, &topic);
    wait_until("the replay to reach Redis", DEADLINE, || {
        framework != Framework::Bullmq
            || duplicated_events(&redis, prefix, &queue) == expected.len()
    });
    // Nothing was added: the waiting list stays empty and nothing runs again.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(redis.llen(&framework.waiting(prefix, &queue)), 0);
    assert_ran_once_in_order(&ran(&out), &expected);
}

/// Commits offset 0 of every partition for `group` (whose members have all left).
fn commit_start(broker: &Broker, group: &str, topic: &str) {
    use rdkafka::consumer::{CommitMode, Consumer};
    let consumer = broker.consumer(group);
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(0))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    assert_eq!(
        broker.committed(group, topic, PARTITIONS),
        vec![Some(0); PARTITIONS as usize]
    );
}

#[test]
fn bullmq_restart_from_an_older_offset_adds_no_job_twice() {
    replay_adds_nothing(Framework::Bullmq);
}

#[test]
fn rq_restart_from_an_older_offset_adds_no_job_twice() {
    replay_adds_nothing(Framework::Rq);
}

/// BullMQ on a 3-master Redis Cluster with the prefix `{bull}` (every key of the queue, and the
/// bridge's offset record, in one slot), exactly-once: the stock Worker, connected to the
/// cluster, runs every message once, in order.
#[test]
fn bullmq_on_redis_cluster_with_a_hash_tagged_prefix() {
    if !available(Framework::Bullmq) {
        return;
    }
    let broker = Broker::shared();
    let cluster = Cluster::start(Security::default());
    cluster.wait_healthy(Duration::from_secs(60));
    let (dir, topic, queue) = setup("bullmq-cluster");
    let expected = produce(broker, &topic, 12, 0);
    let config = Config::new(
        broker,
        &cluster,
        &unique("g"),
        &Framework::Bullmq.topic(&topic, &queue, r#", queue_prefix = "{bull}""#),
    )
    .delivery("exactly-once")
    .max_messages(20)
    .to_string();
    write_file(dir.path(), "k2r.toml", &config);
    let _bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    let out = dir.path().join("ran.jsonl");
    let _worker = Worker::start(
        Framework::Bullmq,
        Redis::Cluster(&cluster),
        "{bull}",
        &queue,
        &out,
    );
    assert_ran_once_in_order(&wait_ran(&out, expected.len()), &expected);
}
