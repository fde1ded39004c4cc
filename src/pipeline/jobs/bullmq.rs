//! BullMQ's job, as `queue.add(name, record, opts)` of BullMQ 6 writes it: a hash
//! `<prefix>:<queue>:<id>` and the id pushed onto `<prefix>:<queue>:wait`, with the companion
//! writes of its `addStandardJob` script (docs/workers-wire-format.md lists them in order).

use super::ids::bullmq_job_id;
use super::{write_record, HashJob};
use crate::config::JobOptions;
use crate::pipeline::record::Record;

/// How long BullMQ keeps a finished job's hash (`removeOnComplete` / `removeOnFail`): until it is
/// older than `age_seconds` or more than `count` newer ones finished, whichever comes first; a
/// field left out does not limit (both left out: kept forever). While a job's hash exists, a
/// second push of its message adds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepJobs {
    pub age_seconds: Option<u64>,
    pub count: Option<u64>,
}

/// The job options the bridge writes into every job (BullMQ's `JobsOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BullmqOptions {
    /// Runs a failing job gets in all (`attempts`; BullMQ's own default is 1).
    pub attempts: u32,
    /// The first retry's wait; each later one doubles it (`backoff: {type: "exponential"}`).
    pub backoff_delay_ms: u64,
    pub remove_on_complete: KeepJobs,
    pub remove_on_fail: KeepJobs,
}

impl BullmqOptions {
    /// The defaults, with what a topic's `job_options` sets instead.
    pub fn with(set: &JobOptions) -> BullmqOptions {
        let d = BullmqOptions::default();
        BullmqOptions {
            attempts: set.attempts.unwrap_or(d.attempts),
            backoff_delay_ms: set.backoff_ms.unwrap_or(d.backoff_delay_ms),
            remove_on_complete: KeepJobs {
                age_seconds: set
                    .keep_completed_seconds
                    .or(d.remove_on_complete.age_seconds),
                count: set.keep_completed_count.or(d.remove_on_complete.count),
            },
            remove_on_fail: KeepJobs {
                age_seconds: set.keep_failed_seconds.or(d.remove_on_fail.age_seconds),
                count: set.keep_failed_count.or(d.remove_on_fail.count),
            },
        }
    }
}

impl Default for BullmqOptions {
    /// Three runs, retried after 1 s and 2 s. Completed jobs kept for an hour and at most 10,000
    /// (long enough for a bridge's replay after a restart to find them), failed ones a week and at
    /// most 10,000 (for inspection): bounded, unlike BullMQ's keep-everything default.
    fn default() -> BullmqOptions {
        BullmqOptions {
            attempts: 3,
            backoff_delay_ms: 1000,
            remove_on_complete: KeepJobs {
                age_seconds: Some(3600),
                count: Some(10_000),
            },
            remove_on_fail: KeepJobs {
                age_seconds: Some(7 * 24 * 3600),
                count: Some(10_000),
            },
        }
    }
}

/// The keys of one BullMQ queue: `<prefix>:<queue>:<suffix>`. A hash tag in the prefix
/// (`{bull}`) puts them all in one Redis Cluster slot, as BullMQ requires there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BullmqKeys {
    /// `<prefix>:<queue>:`, which every key of the queue and each job's hash start with.
    pub base: String,
}

impl BullmqKeys {
    pub fn new(prefix: &str, queue: &str) -> BullmqKeys {
        BullmqKeys {
            base: format!("{prefix}:{queue}:"),
        }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.base)
    }

    /// The list of waiting job ids: `LPUSH`ed, workers take the tail (`RPOPLPUSH` to `active`).
    pub fn wait(&self) -> String {
        self.key("wait")
    }
    /// Jobs being run; its length counts against a global concurrency in `meta`.
    pub fn active(&self) -> String {
        self.key("active")
    }
    /// The queue's settings: `paused`, `concurrency`, `opts.maxLenEvents`, `version`.
    pub fn meta(&self) -> String {
        self.key("meta")
    }
    /// The counter of generated ids, `INCR`ed by every add.
    pub fn id(&self) -> String {
        self.key("id")
    }
    /// The events stream (`added`, `waiting`, `duplicated`, …).
    pub fn events(&self) -> String {
        self.key("events")
    }
    /// The sorted set workers block on (`BZPOPMIN`); member `0` means "jobs are waiting".
    pub fn marker(&self) -> String {
        self.key("marker")
    }
    /// The job's hash.
    pub fn job(&self, id: &str) -> String {
        self.key(id)
    }
}

/// The fields of the job hash, in the order `storeJob` writes them.
pub const BULLMQ_FIELDS: [&str; 6] = ["name", "data", "opts", "timestamp", "delay", "priority"];

/// The BullMQ job `name` with the record as its data, its id derived from the record's
/// coordinates. `now_seconds` is the push time (the job's `timestamp`, in milliseconds).
pub fn bullmq(
    name: &str,
    record: &Record<'_>,
    options: &BullmqOptions,
    now_seconds: f64,
) -> HashJob {
    let id = bullmq_job_id(record.topic, record.partition, record.offset);
    let mut data = Vec::with_capacity(160 + record.value.map_or(0, <[u8]>::len));
    write_record(record, &mut data);
    let opts = opts_json(options, &id);
    let timestamp = (now_seconds * 1000.0).floor() as i64;
    let fields = [
        name.as_bytes().to_vec(),
        data,
        opts,
        timestamp.to_string().into_bytes(),
        b"0".to_vec(),
        b"0".to_vec(),
    ];
    HashJob {
        id,
        fields: BULLMQ_FIELDS.into_iter().zip(fields).collect(),
    }
}

/// The job's `opts` with the keys the client gives them (`jobId` included). BullMQ's own script
/// stores them re-encoded by Redis's cjson, in a Lua table's key order, so no reader depends on
/// the order or the bytes: they compare the decoded object.
fn opts_json(options: &BullmqOptions, id: &str) -> Vec<u8> {
    let keep = |k: KeepJobs| {
        let mut m = serde_json::Map::new();
        if let Some(age) = k.age_seconds {
            m.insert("age".into(), age.into());
        }
        if let Some(count) = k.count {
            m.insert("count".into(), count.into());
        }
        serde_json::Value::Object(m)
    };
    let opts = serde_json::json!({
        "attempts": options.attempts,
        "backoff": {"type": "exponential", "delay": options.backoff_delay_ms},
        "removeOnComplete": keep(options.remove_on_complete),
        "removeOnFail": keep(options.remove_on_fail),
        "jobId": id,
    });
    serde_json::to_vec(&opts).expect("writing JSON to a Vec cannot fail")
}
