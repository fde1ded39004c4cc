//! BullMQ and RQ jobs as kafka2redis encodes them, written into a real `redis-server` by the
//! bridge's own push scripts, against the frameworks themselves:
//!
//! - each framework's own client (BullMQ's `Queue.add`, RQ's `Queue.enqueue`) adds the same jobs
//!   into another database of the same server, and both databases must then hold the same keys
//!   and values — also after each job is added a second time (a replay);
//! - the stock, unmodified worker (BullMQ's `Worker` from npm, `rq worker` from PyPI) runs the
//!   jobs: every one once, in order (one worker, concurrency 1), values intact (text, UTF-8,
//!   binary, null); a replayed batch adds nothing.
//!
//! The fixtures are in tests/workers/bullmq and tests/workers/rq; scripts/install-workers.sh
//! installs the frameworks. One that is not installed skips its tests with a message, except in CI
//! (`CI=true`), where that is a failure.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use kafka2redis::bench::launch;
use kafka2redis::jobs::{
    bullmq, rq, BullmqKeys, BullmqOptions, HashJob, Record, RqKeys, RqOptions, BULLMQ_FIELDS,
    RQ_FIELDS,
};
use serde_json::{json, Value};

const TOPIC: &str = "orders.eu_1";
const PARTITIONS: i32 = 3;
const DEADLINE: Duration = Duration::from_secs(60);
/// The BullMQ job name and the RQ function the fixtures define.
const BULLMQ_NAME: &str = "record";
const RQ_FUNCTION: &str = "tasks.record";
const QUEUE: &str = "orders";

// ---------------------------------------------------------------------------------------------
// The writes of one batch, by the bridge's own push scripts (src/redis/scripts), called as the
// bridge calls them for an at-least-once push without a cap or a lease (the bridge's tests,
// tests/job_queues_bridge.rs, run them with those too).

/// BullMQ's script: per job as `addStandardJob` (BullMQ 6.7) adds a job with a custom id.
const BULLMQ_PUSH: &str = concat!(
    include_str!("../src/redis/scripts/hash_jobs.lua"),
    include_str!("../src/redis/scripts/bullmq_push.lua")
);

/// RQ's script: per job as `Queue.enqueue` (RQ 3.0) with a job id writes it.
const RQ_PUSH: &str = concat!(
    include_str!("../src/redis/scripts/hash_jobs.lua"),
    include_str!("../src/redis/scripts/rq_push.lua")
);

/// The scripts' arguments (src/redis/scripts.rs): no cap, no lease token, no offset record; the
/// job key prefix, the number of fields, then per job its offset (here its place in the batch),
/// id and fields as name, value pairs.
fn push_args(base: &str, names: &[&str], jobs: &[HashJob]) -> Vec<Vec<u8>> {
    let mut args: Vec<Vec<u8>> = vec![
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        jobs.len().to_string().into_bytes(),
        base.as_bytes().to_vec(),
        names.len().to_string().into_bytes(),
    ];
    for (offset, job) in jobs.iter().enumerate() {
        args.push(offset.to_string().into_bytes());
        args.push(job.id.clone().into_bytes());
        for ((name, value), want) in job.fields.iter().zip(names) {
            assert_eq!(name, want, "fields in the script's order");
            args.push(name.as_bytes().to_vec());
            args.push(value.clone());
        }
    }
    args
}

/// Pushes the jobs; returns how many the script took (added, or found already there).
fn push_bullmq(conn: &mut redis::Connection, keys: &BullmqKeys, jobs: &[HashJob]) -> usize {
    redis::Script::new(BULLMQ_PUSH)
        .key(keys.wait())
        .key(keys.meta())
        .key(keys.id())
        .key(keys.events())
        .key(keys.marker())
        .key(keys.active())
        .arg(push_args(&keys.base, &BULLMQ_FIELDS, jobs))
        .invoke::<(usize, usize, String)>(conn)
        .unwrap()
        .0
}

/// Pushes the jobs; returns how many the script took (added, or found already there).
fn push_rq(conn: &mut redis::Connection, keys: &RqKeys, jobs: &[HashJob]) -> usize {
    redis::Script::new(RQ_PUSH)
        .key(&keys.queue)
        .key(&keys.queues)
        .arg(push_args(&keys.job_prefix, &RQ_FIELDS, jobs))
        .invoke::<(usize, usize, String)>(conn)
        .unwrap()
        .0
}

// ---------------------------------------------------------------------------------------------
// The messages.

/// A Kafka message of the test topic.
struct Message {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

impl Message {
    fn record(&self) -> Record<'_> {
        Record {
            topic: TOPIC,
            partition: self.partition,
            offset: self.offset,
            timestamp: Some(1_700_000_000_123 + self.offset),
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &[],
        }
    }

    /// The record as the `json` envelope writes it.
    fn record_text(&self) -> String {
        let mut out = Vec::new();
        self.record().write_json(None, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// The record as the `json` envelope writes it, parsed.
    fn record_json(&self) -> Value {
        serde_json::from_str(&self.record_text()).unwrap()
    }

    /// What the fixture's handler records for it.
    fn ran(&self, id: &str) -> Value {
        let mut line = json!({
            "id": id,
            "topic": TOPIC,
            "partition": self.partition,
            "offset": self.offset,
        });
        match self.value.as_deref().map(std::str::from_utf8) {
            None => line["value"] = Value::Null,
            Some(Ok(text)) => line["value"] = text.into(),
            Some(Err(_)) => {
                line["value"] = base64::engine::general_purpose::STANDARD
                    .encode(self.value.as_deref().unwrap())
                    .into();
                line["value_encoding"] = "base64".into();
            }
        }
        line
    }
}

/// `per_partition` messages on each partition from offset `first`, cycling through plain text,
/// JSON text, multi-byte UTF-8 with the characters JSON writers treat apart, binary, a tombstone
/// and an empty value; in the order a bridge pushes them: partition by partition.
fn messages(per_partition: i64, first: i64) -> Vec<Message> {
    let mut all = Vec::new();
    for partition in 0..PARTITIONS {
        for offset in first..first + per_partition {
            let value: Option<Vec<u8>> = match offset % 6 {
                0 => Some(format!("p{partition} m{offset} plain text").into_bytes()),
                1 => Some(format!(r#"{{"p":{partition},"q":"\"/\\<&>"}}"#).into_bytes()),
                2 => Some(format!("héllo 世界 🚀 \u{2028} é/x \u{1} tab\t m{offset}").into_bytes()),
                3 => Some(vec![0xff, 0xfe, 0x00, partition as u8, offset as u8]),
                4 => None,
                _ => Some(Vec::new()),
            };
            let key = match offset % 3 {
                0 => Some(format!("k{offset}").into_bytes()),
                1 => Some(vec![0xc3, 0x28]),
                _ => None,
            };
            all.push(Message {
                partition,
                offset,
                key,
                value,
            });
        }
    }
    all
}

// ---------------------------------------------------------------------------------------------
// Services and tools.

/// A `redis-server` of the test's own on a free loopback port.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let port = launch::free_port().unwrap();
        let mut cmd = launch::redis_server(port, dir.path(), &["--appendonly", "no"]);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start redis-server");
        launch::wait_for_ping(&format!("127.0.0.1:{port}"), Duration::from_secs(10)).unwrap();
        RedisServer {
            child,
            port,
            _dir: dir,
        }
    }

    fn conn(&self, db: u8) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/{db}", self.port))
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a child die with the test thread that started it, even when the test panics.
fn die_with_parent(cmd: &mut Command) {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn fixtures(framework: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workers")
        .join(framework)
}

fn venv_python() -> PathBuf {
    std::env::var_os("K2R_WORKERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-workers"))
        .join("bin/python")
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a framework's tests can run: skipped (with a message) when it is not installed, except
/// in CI, where a missing framework fails the test.
fn available(framework: &str) -> bool {
    let installed = match framework {
        "bullmq" => {
            fixtures("bullmq")
                .join("node_modules/bullmq/package.json")
                .exists()
                && succeeds(Command::new("node").arg("--version"))
        }
        _ => succeeds(Command::new(venv_python()).args(["-c", "import rq"])),
    };
    if installed {
        return true;
    }
    let what = format!("{framework} is not installed (run scripts/install-workers.sh)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}; CI must run these tests");
    }
    eprintln!("skipped: {what}");
    false
}

/// Runs a fixture command to its end with `stdin`, failing the test with its output if it fails.
fn run(mut cmd: Command, stdin: &str) -> String {
    use std::io::Write;
    die_with_parent(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the fixture");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn node(script: &str, redis: &RedisServer, db: u8) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .current_dir(fixtures("bullmq"))
        .env("K2R_REDIS_PORT", redis.port.to_string())
        .env("K2R_REDIS_DB", db.to_string())
        .env("K2R_BULLMQ_QUEUE", QUEUE)
        .env("K2R_BULLMQ_NAME", BULLMQ_NAME);
    cmd
}

fn rq_client(redis: &RedisServer, db: u8, args: &[&str]) -> Command {
    let mut cmd = Command::new(venv_python());
    cmd.arg("client.py")
        .args(args)
        .current_dir(fixtures("rq"))
        .env("K2R_REDIS_PORT", redis.port.to_string())
        .env("K2R_REDIS_DB", db.to_string());
    cmd
}

/// A stock worker process, killed when dropped; its output shown if the test failed.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(mut cmd: Command, log: PathBuf) -> Worker {
        die_with_parent(&mut cmd);
        let child = cmd
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("start the worker");
        Worker { child, log }
    }

    /// Waits for the worker to exit by itself (`rq worker --burst`).
    fn wait_exit(&mut self) {
        launch::wait_for(
            "the worker to exit",
            DEADLINE,
            Duration::from_millis(50),
            || Ok(self.child.try_wait()?.is_some()),
        )
        .unwrap();
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

/// What the worker's handler recorded, one JSON object per job run, in the order they ran.
fn ran(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

fn wait_ran(out: &Path, n: usize) -> Vec<Value> {
    launch::wait_for(
        &format!("{n} jobs to run"),
        DEADLINE,
        Duration::from_millis(50),
        || Ok(ran(out).len() >= n),
    )
    .unwrap();
    ran(out)
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// What a database holds, for comparing the client's writes with the bridge's.

fn text(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.into(),
        Err(_) => json!({ "bytes": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}

/// Every key of the database with its type and contents; stream entries without their ids.
fn dump(conn: &mut redis::Connection) -> BTreeMap<String, Value> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(conn).unwrap();
    let mut all = BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query(conn).unwrap();
        let value = match kind.as_str() {
            "string" => {
                let v: Vec<u8> = redis::cmd("GET").arg(&key).query(conn).unwrap();
                text(&v)
            }
            "list" => {
                let v: Vec<Vec<u8>> = redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query(conn)
                    .unwrap();
                v.iter().map(|e| text(e)).collect()
            }
            "set" => {
                let mut v: Vec<String> = redis::cmd("SMEMBERS").arg(&key).query(conn).unwrap();
                v.sort();
                json!(v)
            }
            "zset" => {
                let v: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query(conn)
                    .unwrap();
                json!(v)
            }
            "hash" => {
                let v: BTreeMap<String, Vec<u8>> =
                    redis::cmd("HGETALL").arg(&key).query(conn).unwrap();
                Value::Object(v.iter().map(|(f, b)| (f.clone(), text(b))).collect())
            }
            "stream" => {
                let v: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query(conn)
                    .unwrap();
                v.iter()
                    .map(|(_, fields)| fields.iter().map(|f| text(f)).collect::<Value>())
                    .collect()
            }
            other => panic!("{key} is a {other}"),
        };
        all.insert(key, json!({ "type": kind, "value": value }));
    }
    all
}

// ---------------------------------------------------------------------------------------------
// The scripts' guards: the lease's fence, the exactly-once record, the cap, the key types

/// One framework's push script with one batch of its jobs.
struct GuardedPush<'a> {
    script: &'a str,
    keys: Vec<String>,
    base: &'a str,
    names: &'a [&'a str],
    jobs: Vec<HashJob>,
    /// The list of waiting jobs.
    waiting: String,
}

impl GuardedPush<'_> {
    /// The push with every guard the bridge can ask for, as `src/pipeline/deliver_jobs.rs` calls
    /// the scripts: `KEYS` the framework's keys, the offsets hash, the fence key; `ARGV` cap,
    /// token, field, expected record, the batch's end, then the jobs (offsets 10, 11, …).
    fn push(
        &self,
        conn: &mut redis::Connection,
        cap: &str,
        token: &str,
        expected: &str,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        let mut args = push_args(self.base, self.names, &self.jobs);
        args[0] = cap.into();
        args[1] = token.into();
        args[2] = b"t:0".to_vec();
        args[3] = expected.into();
        args[4] = (10 + self.jobs.len()).to_string().into_bytes();
        let stride = 2 + 2 * self.names.len();
        for (i, arg) in args.iter_mut().skip(7).step_by(stride).enumerate() {
            *arg = (10 + i).to_string().into_bytes();
        }
        redis::Script::new(self.script)
            .key(&self.keys)
            .key("{q}:offsets")
            .key("{q}:fence")
            .arg(args)
            .invoke(conn)
    }
}

/// Both scripts: refused with `{-2, ""}` when the fence holds another token, `{-1, recorded}` when
/// the record is not the expected one (nothing written either way); a key of the wrong type is an
/// error and nothing is written; the cap takes what fits and records the first offset left out;
/// jobs already there are taken without a write.
#[test]
fn push_scripts_guard_the_fence_the_record_the_cap_and_key_types() {
    let redis = RedisServer::start();
    let mut conn = redis.conn(0);
    let msgs = messages(2, 0);
    let bull = BullmqKeys::new("bull", QUEUE);
    let rqk = RqKeys::new("rq", QUEUE);
    let frameworks = [
        GuardedPush {
            script: BULLMQ_PUSH,
            keys: vec![
                bull.wait(),
                bull.meta(),
                bull.id(),
                bull.events(),
                bull.marker(),
                bull.active(),
            ],
            base: &bull.base,
            names: &BULLMQ_FIELDS,
            jobs: msgs
                .iter()
                .map(|m| bullmq(BULLMQ_NAME, &m.record(), &BullmqOptions::default(), 0.0))
                .collect(),
            waiting: bull.wait(),
        },
        GuardedPush {
            script: RQ_PUSH,
            keys: vec![rqk.queue.clone(), rqk.queues.clone()],
            base: &rqk.job_prefix,
            names: &RQ_FIELDS,
            jobs: msgs
                .iter()
                .map(|m| rq(RQ_FUNCTION, QUEUE, &m.record(), &RqOptions::default(), 0.0))
                .collect(),
            waiting: rqk.queue.clone(),
        },
    ];
    let int = |v: &redis::Value| -> i64 { redis::from_redis_value_ref(v).unwrap() };
    let text = |v: &redis::Value| -> String { redis::from_redis_value_ref(v).unwrap() };
    for framework in &frameworks {
        redis::cmd("FLUSHDB").query::<()>(&mut conn).unwrap();
        let waiting = &framework.waiting;
        let push = |conn: &mut redis::Connection, cap: &str, token: &str, expected: &str| {
            framework.push(conn, cap, token, expected)
        };
        redis::cmd("SET")
            .arg("{q}:fence")
            .arg("mine")
            .query::<()>(&mut conn)
            .unwrap();

        let fenced = push(&mut conn, "", "theirs", "").unwrap();
        assert_eq!((int(&fenced[0]), text(&fenced[1])), (-2, String::new()));
        redis::cmd("HSET")
            .arg("{q}:offsets")
            .arg("t:0")
            .arg("7")
            .query::<()>(&mut conn)
            .unwrap();
        let refused = push(&mut conn, "", "mine", "").unwrap();
        assert_eq!((int(&refused[0]), text(&refused[1])), (-1, "7".to_string()));
        redis::cmd("SET")
            .arg(waiting)
            .arg("not a list")
            .query::<()>(&mut conn)
            .unwrap();
        let wrong = push(&mut conn, "", "mine", "7").unwrap();
        assert_eq!(
            (
                int(&wrong[0]),
                text(&wrong[1]),
                text(&wrong[2]),
                text(&wrong[3])
            ),
            (
                -3,
                waiting.clone(),
                "string".to_string(),
                "list".to_string()
            ),
            "the refusal names the key and both types"
        );
        let mut keys_now: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        keys_now.sort();
        assert_eq!(
            keys_now,
            [waiting.as_str(), "{q}:fence", "{q}:offsets"],
            "nothing written"
        );
        redis::cmd("DEL")
            .arg(waiting)
            .query::<()>(&mut conn)
            .unwrap();

        // A cap of 1: the first job goes in, the record points at the second (offset 11).
        let capped = push(&mut conn, "1", "mine", "7").unwrap();
        assert_eq!(
            (int(&capped[0]), int(&capped[1]), text(&capped[2])),
            (1, 1, "11".into())
        );
        // Again with room for one more, from the record: the first job is taken without a write
        // (it is there), the second goes in, the third does not fit: the record points at it.
        let rest = push(&mut conn, "2", "mine", "11").unwrap();
        assert_eq!(
            (int(&rest[0]), int(&rest[1]), text(&rest[2])),
            (2, 2, "12".into())
        );
        let recorded: String = redis::cmd("HGET")
            .arg("{q}:offsets")
            .arg("t:0")
            .query(&mut conn)
            .unwrap();
        assert_eq!(recorded, "12");
        let ids: Vec<String> = redis::cmd("LRANGE")
            .arg(waiting)
            .arg(0)
            .arg(-1)
            .query(&mut conn)
            .unwrap();
        assert_eq!(ids.len(), 2, "{ids:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// BullMQ

/// BullMQ's client and the bridge's script leave the same keys and values, once each job was
/// added and again after each was added a second time. The differences that remain are the
/// client's and are stated: the queue's `version` in `meta` (written by a `Queue` object when it
/// connects, not by adding a job), the clock (`timestamp`), and `opts`' key order (cjson's).
#[test]
fn bullmq_script_writes_what_the_client_writes() {
    if !available("bullmq") {
        return;
    }
    let redis = RedisServer::start();
    let keys = BullmqKeys::new("bull", QUEUE);
    let options = BullmqOptions::default();
    let msgs = messages(4, 0);
    let before = now_seconds();
    let jobs: Vec<HashJob> = msgs
        .iter()
        .map(|m| bullmq(BULLMQ_NAME, &m.record(), &options, now_seconds()))
        .collect();

    let mut input = String::new();
    for (m, job) in msgs.iter().zip(&jobs) {
        let mut opts: Value = serde_json::from_slice(&field(job, "opts")).unwrap();
        opts.as_object_mut().unwrap().remove("jobId");
        // The record as written (a Value would sort its keys), so the client sees them in order.
        input += &format!(
            r#"{{"id":{},"record":{},"opts":{opts}}}"#,
            json!(job.id),
            m.record_text()
        );
        input.push('\n');
    }
    let mut bridge = redis.conn(0);
    let mut client = redis.conn(1);
    for round in 0..2 {
        let ids = run(node("client_add.mjs", &redis, 1), &input);
        let want: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(
            ids.lines().collect::<Vec<_>>(),
            want,
            "the client returns the ids"
        );
        // Every job taken: added the first time, found already there (the dumps below: added
        // again by neither) the second.
        assert_eq!(
            push_bullmq(&mut bridge, &keys, &jobs),
            jobs.len(),
            "round {round}"
        );

        let (mut ours, mut theirs) = (dump(&mut bridge), dump(&mut client));
        let version = theirs
            .get_mut(&keys.meta())
            .and_then(|m| m["value"].as_object_mut())
            .and_then(|m| m.remove("version"));
        assert_eq!(
            version,
            Some(json!("bullmq:6.7.6")),
            "the version the tests pin"
        );
        for dumped in [&mut ours, &mut theirs] {
            for job in &jobs {
                let hash = &mut dumped.get_mut(&keys.job(&job.id)).unwrap()["value"];
                let ts: i64 = hash["timestamp"].as_str().unwrap().parse().unwrap();
                assert!(
                    ts >= (before * 1000.0) as i64 - 1,
                    "a current timestamp: {ts}"
                );
                hash["timestamp"] = "<ms>".into();
                let opts: Value = serde_json::from_str(hash["opts"].as_str().unwrap()).unwrap();
                hash["opts"] = opts;
            }
        }
        assert_eq!(ours, theirs);
    }
    // The data bytes too, not only their meaning: JSON.stringify writes serde_json's bytes.
    let data: Vec<u8> = redis::cmd("HGET")
        .arg(keys.job(&jobs[2].id))
        .arg("data")
        .query(&mut client)
        .unwrap();
    assert_eq!(data, field(&jobs[2], "data"));
}

fn field(job: &HashJob, name: &str) -> Vec<u8> {
    job.fields
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
        .clone()
}

/// The stock Worker runs every job once, in order, values intact; a replayed batch adds nothing,
/// and the jobs' hashes stay, completed, within the retention the options set.
#[test]
fn bullmq_worker_runs_every_job_once_in_order() {
    if !available("bullmq") {
        return;
    }
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ran.jsonl");
    let keys = BullmqKeys::new("bull", QUEUE);
    let options = BullmqOptions::default();
    let mut conn = redis.conn(0);

    let first = messages(12, 0);
    let encode = |msgs: &[Message]| -> Vec<HashJob> {
        let now = now_seconds();
        msgs.iter()
            .map(|m| bullmq(BULLMQ_NAME, &m.record(), &options, now))
            .collect()
    };
    let jobs = encode(&first);
    // One batch per partition, as a lane pushes.
    for batch in jobs.chunks(12) {
        assert_eq!(push_bullmq(&mut conn, &keys, batch), batch.len());
    }
    let mut cmd = node("worker.mjs", &redis, 0);
    cmd.env("K2R_WORKER_OUT", &out);
    let _worker = Worker::start(cmd, dir.path().join("worker.log"));

    let expected: Vec<Value> = first
        .iter()
        .zip(&jobs)
        .map(|(m, j)| with_name(m.ran(&j.id)))
        .collect();
    assert_eq!(
        wait_ran(&out, expected.len()),
        expected,
        "each once, in order"
    );

    // The same batches again, then one new message: the replay adds nothing (nothing runs twice).
    for batch in encode(&first).chunks(12) {
        assert_eq!(push_bullmq(&mut conn, &keys, batch), batch.len());
    }
    let next = messages(1, 12);
    let next_jobs = encode(&next);
    assert_eq!(push_bullmq(&mut conn, &keys, &next_jobs), next.len());
    let mut all = expected.clone();
    all.extend(
        next.iter()
            .zip(&next_jobs)
            .map(|(m, j)| with_name(m.ran(&j.id))),
    );
    assert_eq!(wait_ran(&out, all.len()), all);

    let completed: usize = redis::cmd("ZCARD")
        .arg(format!("{}completed", keys.base))
        .query(&mut conn)
        .unwrap();
    assert_eq!(completed, all.len(), "every job completed and kept");
    let ttl: i64 = redis::cmd("TTL")
        .arg(keys.job(&jobs[0].id))
        .query(&mut conn)
        .unwrap();
    assert_eq!(ttl, -1, "kept by count and age, not by a TTL");
}

fn with_name(mut line: Value) -> Value {
    line["name"] = BULLMQ_NAME.into();
    line
}

// ---------------------------------------------------------------------------------------------
// RQ

/// RQ's client and the bridge's script leave the same keys and values (the job data decoded by
/// `pickle.loads`), also after each job was enqueued again, which RQ's `unique=True` and the
/// script both refuse; only the clock readings differ, in the same format.
#[test]
fn rq_script_writes_what_the_client_writes() {
    if !available("rq") {
        return;
    }
    let redis = RedisServer::start();
    let keys = RqKeys::new("rq", QUEUE);
    let options = RqOptions::default();
    let msgs = messages(4, 0);
    let jobs: Vec<HashJob> = msgs
        .iter()
        .map(|m| rq(RQ_FUNCTION, QUEUE, &m.record(), &options, now_seconds()))
        .collect();
    let mut input = String::new();
    for (m, job) in msgs.iter().zip(&jobs) {
        let description = String::from_utf8(field(job, "description")).unwrap();
        let mut line = json!({
            "id": job.id,
            "description": description,
            "timeout": options.timeout_seconds,
            "result_ttl": options.result_ttl_seconds,
        })
        .to_string();
        // The record as written (a Value would sort its keys), so the client's dict keeps the order.
        line.insert_str(line.len() - 1, &format!(r#","record":{}"#, m.record_text()));
        input += &line;
        input.push('\n');
    }
    run(
        rq_client(&redis, 1, &["enqueue", QUEUE, RQ_FUNCTION]),
        &input,
    );
    let mut bridge = redis.conn(0);
    assert_eq!(push_rq(&mut bridge, &keys, &jobs), jobs.len());
    assert_eq!(push_rq(&mut bridge, &keys, &jobs), jobs.len());
    let queued: usize = redis::cmd("LLEN")
        .arg(&keys.queue)
        .query(&mut bridge)
        .unwrap();
    assert_eq!(queued, jobs.len(), "a replay adds nothing");

    let normalise = |db: u8| -> Value {
        let mut dumped: Value =
            serde_json::from_str(&run(rq_client(&redis, db, &["dump", QUEUE]), "")).unwrap();
        for job in dumped["jobs"].as_object_mut().unwrap().values_mut() {
            for at in ["created_at", "enqueued_at"] {
                let t = job[at].as_str().unwrap();
                assert!(is_rq_time(t), "{at} {t:?} in RQ's format");
                job[at] = "<time>".into();
            }
        }
        dumped
    };
    let (ours, theirs) = (normalise(0), normalise(1));
    assert_eq!(ours, theirs);
    assert_eq!(
        ours["jobs"][&jobs[1].id]["data"],
        json!([RQ_FUNCTION, null, [msgs[1].record_json()], {}]),
        "the function, no instance, the record alone, no keyword arguments"
    );
    // The same keys besides the jobs: the queue list and the queues set, nothing else.
    let names = |conn: &mut redis::Connection| -> Vec<String> { dump(conn).into_keys().collect() };
    assert_eq!(names(&mut bridge), names(&mut redis.conn(1)));
}

/// `%Y-%m-%dT%H:%M:%S.%fZ`.
fn is_rq_time(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// `rq worker` runs every job once, in order, values intact; a replayed batch adds nothing, and
/// each finished job's hash is kept for `result_ttl`.
#[test]
fn rq_worker_runs_every_job_once_in_order() {
    if !available("rq") {
        return;
    }
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ran.jsonl");
    let keys = RqKeys::new("rq", QUEUE);
    let options = RqOptions::default();
    let mut conn = redis.conn(0);
    let encode = |msgs: &[Message]| -> Vec<HashJob> {
        let now = now_seconds();
        msgs.iter()
            .map(|m| rq(RQ_FUNCTION, QUEUE, &m.record(), &options, now))
            .collect()
    };
    let burst = |log: &str| {
        let mut cmd = Command::new(venv_python().with_file_name("rq"));
        cmd.args(["worker", "--burst", "--url"])
            .arg(format!("redis://127.0.0.1:{}/0", redis.port))
            .arg(QUEUE)
            .current_dir(fixtures("rq"))
            .env("K2R_WORKER_OUT", &out);
        Worker::start(cmd, dir.path().join(log)).wait_exit();
    };

    let first = messages(12, 0);
    let jobs = encode(&first);
    for batch in jobs.chunks(12) {
        assert_eq!(push_rq(&mut conn, &keys, batch), batch.len());
    }
    burst("worker1.log");
    let expected: Vec<Value> = first.iter().zip(&jobs).map(|(m, j)| m.ran(&j.id)).collect();
    assert_eq!(ran(&out), expected, "each once, in order");

    for batch in encode(&first).chunks(12) {
        assert_eq!(push_rq(&mut conn, &keys, batch), batch.len());
    }
    let queued: usize = redis::cmd("LLEN")
        .arg(&keys.queue)
        .query(&mut conn)
        .unwrap();
    assert_eq!(queued, 0, "a replay adds nothing");
    let next = messages(1, 12);
    let next_jobs = encode(&next);
    assert_eq!(push_rq(&mut conn, &keys, &next_jobs), next.len());
    burst("worker2.log");
    let mut all = expected;
    all.extend(next.iter().zip(&next_jobs).map(|(m, j)| m.ran(&j.id)));
    assert_eq!(ran(&out), all);

    let status: String = redis::cmd("HGET")
        .arg(keys.job(&jobs[0].id))
        .arg("status")
        .query(&mut conn)
        .unwrap();
    assert_eq!(status, "finished");
    let ttl: i64 = redis::cmd("TTL")
        .arg(keys.job(&jobs[0].id))
        .query(&mut conn)
        .unwrap();
    assert!(
        (1..=options.result_ttl_seconds as i64).contains(&ttl),
        "kept for result_ttl: {ttl}"
    );
}

/// A job whose worker is killed mid-job (`kill -9`) is moved back to `wait` by the next worker's
/// stalled-job check, once its lock expired, and runs again there (stalled interval and lock
/// duration 1 s here, 30 s by default).
#[test]
fn bullmq_job_of_a_killed_worker_runs_again_after_the_stalled_check() {
    if !available("bullmq") {
        return;
    }
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ran.jsonl");
    let keys = BullmqKeys::new("bull", QUEUE);
    let mut conn = redis.conn(0);
    let msgs = messages(1, 0);
    let job = bullmq(
        BULLMQ_NAME,
        &msgs[0].record(),
        &BullmqOptions::default(),
        now_seconds(),
    );
    assert_eq!(push_bullmq(&mut conn, &keys, std::slice::from_ref(&job)), 1);

    let worker = |sleep: &str, log: &str| {
        let mut cmd = node("worker.mjs", &redis, 0);
        cmd.env("K2R_WORKER_OUT", &out)
            .env("K2R_WORKER_SLEEP", sleep)
            .env("K2R_BULLMQ_STALLED_INTERVAL", "1000");
        Worker::start(cmd, dir.path().join(log))
    };
    let mut first = worker("60", "worker1.log");
    launch::wait_for(
        "the job to be active",
        DEADLINE,
        Duration::from_millis(20),
        || {
            let active: Vec<String> = redis::cmd("LRANGE")
                .arg(keys.active())
                .arg(0)
                .arg(-1)
                .query(&mut redis.conn(0))?;
            Ok(active == [job.id.clone()])
        },
    )
    .unwrap();
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let _second = worker("0", "worker2.log");
    assert_eq!(wait_ran(&out, 1), [with_name(msgs[0].ran(&job.id))]);
    let stalls: String = redis::cmd("HGET")
        .arg(keys.job(&job.id))
        .arg("stc")
        .query(&mut conn)
        .unwrap();
    assert_eq!(stalls, "1", "counted as stalled once");
}

/// A job whose work horse is killed mid-job is failed by its worker (moved to the failed job
/// registry), not run again: RQ re-runs nothing by itself.
#[test]
fn rq_job_of_a_killed_work_horse_is_failed_not_run_again() {
    if !available("rq") {
        return;
    }
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ran.jsonl");
    let keys = RqKeys::new("rq", QUEUE);
    let mut conn = redis.conn(0);
    let msgs = messages(1, 0);
    let job = rq(
        RQ_FUNCTION,
        QUEUE,
        &msgs[0].record(),
        &RqOptions::default(),
        now_seconds(),
    );
    assert_eq!(push_rq(&mut conn, &keys, std::slice::from_ref(&job)), 1);

    let mut cmd = Command::new(venv_python().with_file_name("rq"));
    cmd.args(["worker", "--url"])
        .arg(format!("redis://127.0.0.1:{}/0", redis.port))
        .arg(QUEUE)
        .current_dir(fixtures("rq"))
        .env("K2R_WORKER_OUT", &out)
        .env("K2R_WORKER_SLEEP", "60");
    let worker = Worker::start(cmd, dir.path().join("worker.log"));
    let status = |conn: &mut redis::Connection| -> redis::RedisResult<Option<String>> {
        redis::cmd("HGET")
            .arg(keys.job(&job.id))
            .arg("status")
            .query(conn)
    };
    launch::wait_for(
        "the job to start",
        DEADLINE,
        Duration::from_millis(20),
        || Ok(status(&mut redis.conn(0))?.as_deref() == Some("started")),
    )
    .unwrap();
    // The work horse is the worker's one child.
    let pid = worker.child.id();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let horse: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(unsafe { libc::kill(horse, libc::SIGKILL) }, 0);

    launch::wait_for(
        "the job to fail",
        DEADLINE,
        Duration::from_millis(20),
        || Ok(status(&mut redis.conn(0))?.as_deref() == Some("failed")),
    )
    .unwrap();
    let failed: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("rq:failed:{QUEUE}"))
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert_eq!(failed, std::slice::from_ref(&job.id));
    let waiting: usize = redis::cmd("LLEN")
        .arg(&keys.queue)
        .query(&mut conn)
        .unwrap();
    assert_eq!(waiting, 0, "not queued again");
    assert!(ran(&out).is_empty(), "the killed run recorded nothing");
}
