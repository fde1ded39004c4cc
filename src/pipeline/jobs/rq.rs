//! RQ's job, as `Queue("orders").enqueue("tasks.record", record, job_id=…)` of RQ 3 writes it with
//! its default serializer: a hash `<prefix>:job:<id>`, the id pushed onto `<prefix>:queue:<queue>`,
//! and the queue's key added to the `<prefix>:queues` set (docs/workers-wire-format.md).

use std::cell::RefCell;

use flate2::{Compress, Compression, FlushCompress, Status};

use super::ids::rq_job_id;
use super::{pickle, write_record, HashJob};
use crate::config::JobOptions;
use crate::pipeline::record::Record;

/// What the bridge sets on every RQ job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RqOptions {
    /// Seconds a run may take before the worker kills it (`timeout`; RQ's queue default 180).
    pub timeout_seconds: u64,
    /// Seconds a finished job's hash (and result) is kept (`result_ttl`; RQ's default, when the
    /// job does not say, is 500). While a job's hash exists, a second push of its message adds
    /// nothing.
    pub result_ttl_seconds: u64,
}

impl RqOptions {
    /// The defaults, with what a topic's `job_options` sets instead.
    pub fn with(set: &JobOptions) -> RqOptions {
        let d = RqOptions::default();
        RqOptions {
            timeout_seconds: set.timeout_seconds.unwrap_or(d.timeout_seconds),
            result_ttl_seconds: set.result_ttl_seconds.unwrap_or(d.result_ttl_seconds),
        }
    }
}

impl Default for RqOptions {
    /// RQ's 180 s timeout; finished jobs kept for an hour, long enough for a bridge's replay after
    /// a restart to find them. Failed jobs keep RQ's own `failure_ttl` (a year).
    fn default() -> RqOptions {
        RqOptions {
            timeout_seconds: 180,
            result_ttl_seconds: 3600,
        }
    }
}

/// The keys of one RQ queue. RQ names them `rq:…`; the prefix replaces `rq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RqKeys {
    /// `<prefix>:job:`, followed by a job id: the job's hash.
    pub job_prefix: String,
    /// `<prefix>:queue:<queue>`: the list of waiting job ids, `RPUSH`ed, workers take the head.
    pub queue: String,
    /// `<prefix>:queues`: the set of queue keys (`Queue.all()`, `rq info`); [`RqKeys::queue`] is
    /// its member.
    pub queues: String,
}

impl RqKeys {
    pub fn new(prefix: &str, queue: &str) -> RqKeys {
        RqKeys {
            job_prefix: format!("{prefix}:job:"),
            queue: format!("{prefix}:queue:{queue}"),
            queues: format!("{prefix}:queues"),
        }
    }

    pub fn job(&self, id: &str) -> String {
        format!("{}{id}", self.job_prefix)
    }
}

/// The fields of the job hash, in the order RQ's `Job.to_dict` makes them.
pub const RQ_FIELDS: [&str; 16] = [
    "created_at",
    "data",
    "success_callback_name",
    "failure_callback_name",
    "stopped_callback_name",
    "started_at",
    "ended_at",
    "last_heartbeat",
    "worker_name",
    "group_id",
    "origin",
    "description",
    "enqueued_at",
    "timeout",
    "result_ttl",
    "status",
];

/// The RQ job calling `function` (`module.function`) with the record as its one argument, a dict
/// as `json.loads` makes it, on queue `queue`; its id derived from the record's coordinates.
/// `now_seconds` is the push time (`created_at`, `enqueued_at`).
pub fn rq(
    function: &str,
    queue: &str,
    record: &Record<'_>,
    options: &RqOptions,
    now_seconds: f64,
) -> HashJob {
    let id = rq_job_id(record.topic, record.partition, record.offset);
    let mut json = Vec::with_capacity(160 + record.value.map_or(0, <[u8]>::len));
    write_record(record, &mut json);
    let mut call = Vec::with_capacity(json.len() + 64);
    pickle::write_call(function, &json, &mut call);
    let data = zlib(&call);

    let now = utc_timestamp(now_seconds);
    // Shown by `rq info` and in logs only. RQ's default is the call's repr, a second copy of the
    // record; the client lets the caller set it, as here, to a short summary. Kafka topic names are
    // `[A-Za-z0-9._-]`, so quoting the topic is Python's repr.
    let description = format!(
        "{function}({{'topic': '{}', 'partition': {}, 'offset': {}, ...}})",
        record.topic, record.partition, record.offset
    );
    let values: [Vec<u8>; 16] = [
        now.clone().into_bytes(),
        data,
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        queue.as_bytes().to_vec(),
        description.into_bytes(),
        now.into_bytes(),
        options.timeout_seconds.to_string().into_bytes(),
        options.result_ttl_seconds.to_string().into_bytes(),
        b"queued".to_vec(),
    ];
    HashJob {
        id,
        fields: RQ_FIELDS.into_iter().zip(values).collect(),
    }
}

thread_local! {
    /// One compressor per thread, reset between jobs: a new one allocates and clears its tables
    /// (hundreds of KiB), which costs more than compressing a job.
    static ZLIB: RefCell<Compress> = RefCell::new(Compress::new(Compression::new(6), true));
}

/// `zlib.compress(input)`, as RQ stores its job data: a zlib stream at zlib's default level.
fn zlib(input: &[u8]) -> Vec<u8> {
    ZLIB.with(|zlib| {
        let mut zlib = zlib.borrow_mut();
        zlib.reset();
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        loop {
            let read = zlib.total_in() as usize;
            let status = zlib
                .compress_vec(&input[read..], &mut out, FlushCompress::Finish)
                .expect("compressing into a Vec cannot fail");
            if status == Status::StreamEnd {
                return out;
            }
            out.reserve(out.capacity().max(64));
        }
    })
}

/// A time as RQ writes it (`utcformat`: `%Y-%m-%dT%H:%M:%S.%fZ`), e.g.
/// `2023-11-14T22:13:20.123456Z`.
fn utc_timestamp(seconds: f64) -> String {
    let micros = (seconds * 1e6).round() as i64;
    let (secs, micro) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micro:06}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_streams_decompress_to_their_input_job_after_job() {
        use std::io::Read;
        for input in [b"".as_slice(), b"x", &[7u8; 100_000], b"another job"] {
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&zlib(input)[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, input);
        }
    }

    #[test]
    fn timestamps_as_rq_writes_them() {
        assert_eq!(utc_timestamp(0.0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            utc_timestamp(1_700_000_000.123456),
            "2023-11-14T22:13:20.123456Z"
        );
        // A leap day, and the last microsecond of a year.
        assert_eq!(utc_timestamp(951_782_400.5), "2000-02-29T00:00:00.500000Z");
        assert_eq!(
            utc_timestamp(1_735_689_599.999999),
            "2024-12-31T23:59:59.999999Z"
        );
    }
}
