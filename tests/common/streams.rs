//! Redis Streams from the worker's side: a consumer-group worker (`tests/workers/streams/worker.py`,
//! redis-py: `XREADGROUP`, `XACK`, `XAUTOCLAIM`) as a child process, what it recorded, and a
//! stream's entries read directly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use serde_json::Value;

use super::die_with_parent;

/// The workers' virtualenv (redis-py): `K2R_WORKERS_VENV`, else `.venv-workers` in the checkout.
pub fn workers_python() -> PathBuf {
    std::env::var_os("K2R_WORKERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-workers"))
        .join("bin/python")
}

/// One entry as the worker recorded it, or as `XRANGE` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    /// The consumer group that handled it ("" when read with `XRANGE`).
    pub group: String,
    pub consumer: String,
    /// Taken over from a dead peer with `XAUTOCLAIM`.
    pub claimed: bool,
    pub fields: BTreeMap<String, Vec<u8>>,
}

impl Entry {
    pub fn text(&self, name: &str) -> Option<String> {
        self.fields
            .get(name)
            .map(|v| String::from_utf8(v.clone()).expect("a text field"))
    }

    /// `(partition, offset)` from its fields.
    pub fn position(&self) -> (i32, i64) {
        (
            self.text("partition").unwrap().parse().unwrap(),
            self.text("offset").unwrap().parse().unwrap(),
        )
    }

    /// `ms-seq` as numbers, for ordering.
    pub fn id_order(&self) -> (u64, u64) {
        let (ms, seq) = self.id.split_once('-').unwrap();
        (ms.parse().unwrap(), seq.parse().unwrap())
    }
}

/// A running consumer-group worker; killed (SIGKILL) when dropped.
pub struct StreamWorker {
    child: Child,
    pub out: PathBuf,
}

impl StreamWorker {
    /// A worker of `group` named `consumer` on `stream` at `port`, recording into `out`; `extra`
    /// adds options (`--sleep 0.001`, `--claim-idle-ms 500`).
    pub fn start(
        port: u16,
        stream: &str,
        group: &str,
        consumer: &str,
        out: &Path,
        extra: &[&str],
    ) -> StreamWorker {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workers/streams/worker.py");
        let mut cmd = Command::new(workers_python());
        cmd.arg(script)
            .args(["--port", &port.to_string(), "--stream", stream])
            .args(["--group", group, "--consumer", consumer])
            .arg("--out")
            .arg(out)
            .args(extra)
            .stdin(Stdio::null());
        die_with_parent(&mut cmd);
        StreamWorker {
            child: cmd.spawn().expect("start the stream worker"),
            out: out.to_path_buf(),
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it still runs (a worker that failed to start exits at once).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    pub fn handled(&self) -> Vec<Entry> {
        handled(&self.out)
    }
}

impl Drop for StreamWorker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What the workers writing to `out` handled, in the order they recorded it.
pub fn handled(out: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .filter(|l| l.ends_with('}'))
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("a worker's JSON line");
            let fields = v["fields"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, b64)| {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64.as_str().unwrap())
                        .unwrap();
                    (k.clone(), bytes)
                })
                .collect();
            Entry {
                id: v["id"].as_str().unwrap().to_string(),
                group: v["group"].as_str().unwrap().to_string(),
                consumer: v["consumer"].as_str().unwrap().to_string(),
                claimed: v["claimed"].as_bool().unwrap(),
                fields,
            }
        })
        .collect()
}

/// Every entry of `stream`, in stream order (`XRANGE - +`).
pub fn stream_entries(conn: &mut redis::Connection, stream: &str) -> Vec<Entry> {
    let range: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(conn)
        .unwrap();
    range
        .into_iter()
        .map(|(id, flat)| Entry {
            id,
            group: String::new(),
            consumer: String::new(),
            claimed: false,
            fields: flat
                .chunks(2)
                .map(|kv| (String::from_utf8(kv[0].clone()).unwrap(), kv[1].clone()))
                .collect(),
        })
        .collect()
}

/// Whether the workers' virtualenv has redis-py; a missing one skips (fails in CI).
pub fn redis_py_available() -> bool {
    let ok = Command::new(workers_python())
        .args(["-c", "import redis"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let what =
            "redis-py is not installed in the workers' virtualenv (run scripts/install-workers.sh)";
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{what}");
        eprintln!("skipped: {what}");
    }
    ok
}

/// Each position once, and per partition in offset order by entry id.
pub fn assert_once_in_order(entries: &[Entry], expected: usize, who: &str) {
    let mut seen = BTreeSet::new();
    for e in entries {
        assert!(seen.insert(e.position()), "{who}: {:?} twice", e.position());
    }
    assert_eq!(seen.len(), expected, "{who}: every message");
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.id_order());
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for e in sorted {
        let (partition, offset) = e.position();
        if let Some(before) = last.insert(partition, offset) {
            assert!(
                before < offset,
                "{who}: partition {partition} went back from {before} to {offset}"
            );
        }
    }
}
