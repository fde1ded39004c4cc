//! The job envelopes: a record wrapped as a Laravel, Celery, Sidekiq, BullMQ, RQ or Symfony
//! Messenger job that the framework's stock worker runs, its handler receiving the record as its one
//! argument.
//!
//! Laravel, Celery and Sidekiq jobs are one list element each ([`JobTopic::encode`]). BullMQ and
//! RQ keep each job in a hash named by its id and push only the id ([`bullmq()`], [`rq()`] make a
//! [`HashJob`]); their ids are derived from the message's coordinates, so a replayed message finds
//! its job's hash and adds nothing. A Symfony Messenger message is a stream entry
//! ([`symfony_entry`]), byte for byte what Messenger's own sender writes, record and all.
//!
//! The formats, keys, push ends and companion writes are those of docs/workers-wire-format.md. The
//! record inside each job is the `json` envelope's bytes, spliced in as they are: every framework's
//! JSON reader decodes serde_json's bytes to the same value as its own client's (checked against the
//! stock workers), so the record is serialised once. The envelope around it is written in the same
//! style (compact, UTF-8 unescaped), which is what `tests/workers/enqueue_reference.py` writes with
//! `style="serde"`; the tests below compare against its bytes. Symfony's entry is the exception: its
//! body is the record as PHP's `json_encode` writes it (ASCII, `\/`), so that it is the stock
//! sender's bytes exactly (src/pipeline/jobs/symfony.rs).
//!
//! The encoders are pure: the ids ([`JobIds::derive`], [`bullmq_job_id`], [`rq_job_id`]) and the
//! clock reading a job carries are functions of their arguments, so the output is reproducible.
//! RQ's job data is its default serializer's, `zlib.compress(pickle.dumps(...))`, written by
//! [`pickle`] for the one tuple shape it needs.

mod bullmq;
mod celery;
mod ids;
mod laravel;
mod pickle;
mod rq;
mod sidekiq;
mod symfony;
#[cfg(test)]
mod tests;

use crate::config::{jobs as job_config, Envelope, TopicConfig};

pub use super::json::Quoted;
pub use super::record::Record;
pub use bullmq::{bullmq, BullmqKeys, BullmqOptions, KeepJobs, BULLMQ_FIELDS};
pub use celery::celery;
pub use ids::{bullmq_job_id, rq_job_id, JobIds, TopicIds};
pub use laravel::{laravel, laravel_display_name};
pub use rq::{rq, RqKeys, RqOptions, RQ_FIELDS};
pub use sidekiq::sidekiq;
pub use symfony::{symfony, symfony_entry, SYMFONY_FIELD};

/// A job that BullMQ or RQ keeps in a hash of its own, named by its id (the queue's list holds
/// only the id): the id and the hash's fields in the order the framework's client writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashJob {
    pub id: String,
    pub fields: Vec<(&'static str, Vec<u8>)>,
}

/// The job frameworks whose stock workers the bridge can feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    Laravel,
    Celery,
    Sidekiq,
}

/// The end of the list a job is pushed onto, chosen so that the workers' pops keep offset order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushEnd {
    /// `LPUSH`: the workers pop the tail (`BRPOP`). A variadic `LPUSH` in offset order leaves the
    /// first job first in line.
    Head,
    /// `RPUSH`: the workers pop the head (`LPOP`).
    Tail,
}

/// What a framework's own client writes besides the job itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Companion {
    /// Nothing (Celery: the worker declares its own bindings, and anonymous delivery needs none).
    None,
    /// `RPUSH <key> 1`, one `1` per job pushed (Laravel's `<list>:notify`): a worker blocking with
    /// `block_for` waits on it and takes one per job. A batch writes one variadic `RPUSH key 1 … 1`.
    /// On Redis Cluster the list and this key share a slot only if the list name has a hash tag.
    NotifyEachJob { key: String },
    /// `SADD <set> <member>` (Sidekiq's `queues` set, which its Web UI lists queues from). It is
    /// idempotent, so once per batch is enough; the set is in its own Cluster slot.
    AddToSet { set: String, member: String },
}

impl Framework {
    /// The framework a job envelope feeds; `None` for the other envelopes.
    pub fn of(envelope: Envelope) -> Option<Framework> {
        match envelope {
            Envelope::Laravel => Some(Framework::Laravel),
            Envelope::Celery => Some(Framework::Celery),
            Envelope::Sidekiq => Some(Framework::Sidekiq),
            // Their jobs are hashes, not list elements: [`HashJobTopic`].
            Envelope::Bullmq | Envelope::Rq => None,
            // A stream entry: [`symfony_entry`].
            Envelope::Symfony => None,
            Envelope::Legacy | Envelope::Raw | Envelope::Json => None,
        }
    }

    /// Which end of the list its workers expect new jobs at.
    pub fn push_end(self) -> PushEnd {
        match self {
            Framework::Laravel => PushEnd::Tail,
            Framework::Celery | Framework::Sidekiq => PushEnd::Head,
        }
    }

    /// The companion write for jobs pushed onto `list_key`, the list of the framework's queue
    /// `queue` (Laravel `<prefix>queues:<queue>`, Celery `<keyprefix><queue>`, Sidekiq
    /// `queue:<queue>`).
    pub fn companion(self, list_key: &str, queue: &str) -> Companion {
        match self {
            Framework::Laravel => Companion::NotifyEachJob {
                key: format!("{list_key}:notify"),
            },
            Framework::Celery => Companion::None,
            Framework::Sidekiq => Companion::AddToSet {
                set: "queues".into(),
                member: queue.into(),
            },
        }
    }
}

/// A topic's jobs, as its lane makes them: the framework, the handler each message runs and the
/// queue the job says it is on.
#[derive(Debug, Clone)]
pub struct JobTopic {
    framework: Framework,
    /// The job's handler (Laravel's `Class@method`, Celery's task, Sidekiq's class), quoted.
    handler: Quoted,
    /// Laravel's `displayName` (the handler's class), quoted.
    display_name: Quoted,
    /// Celery: the routing key, which is the list; Sidekiq: the list without `queue:`. Laravel's
    /// job does not name its queue.
    queue: String,
    /// `queue` as the jobs carry it.
    quoted_queue: Quoted,
    /// The topic's share of each job's ids.
    ids: TopicIds,
}

impl JobTopic {
    /// The jobs of a topic with a job envelope (validated config: it has a `job`, and a Sidekiq
    /// list is `queue:<name>`); `None` for the other envelopes.
    pub fn for_topic(topic: &TopicConfig) -> Option<JobTopic> {
        let framework = Framework::of(topic.envelope)?;
        let queue = match framework {
            Framework::Laravel => String::new(),
            Framework::Celery => topic.list_key.clone(),
            Framework::Sidekiq => job_config::sidekiq_queue(&topic.list_key)
                .unwrap_or(&topic.list_key)
                .to_string(),
        };
        let handler = topic.job.as_deref().unwrap_or_default();
        Some(JobTopic {
            framework,
            handler: Quoted::new(handler),
            display_name: Quoted::new(laravel_display_name(handler)),
            quoted_queue: Quoted::new(&queue),
            queue,
            ids: TopicIds::new(&topic.name),
        })
    }

    pub fn framework(&self) -> Framework {
        self.framework
    }

    /// The queue name the companion write uses (Sidekiq's `queues` set member).
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Appends the job for `record`, with the ids its framework uses derived from its
    /// coordinates. `now` is read once per batch by the caller (only Sidekiq's jobs carry it).
    pub fn encode(&self, record: &Record<'_>, now: &PushTime, out: &mut Vec<u8>) {
        let ids = self
            .ids
            .derive(record.topic, record.partition, record.offset);
        match self.framework {
            Framework::Laravel => laravel(
                &self.display_name,
                &self.handler,
                record,
                &ids.uuid(),
                &ids.laravel_id(),
                out,
            ),
            Framework::Celery => celery(
                &self.handler,
                &self.quoted_queue,
                record,
                &ids.uuid(),
                &ids.delivery_tag(),
                &ORIGIN,
                out,
            ),
            Framework::Sidekiq => sidekiq(
                &self.handler,
                &self.quoted_queue,
                record,
                &ids.jid(),
                now,
                out,
            ),
        }
    }
}

/// A BullMQ or RQ topic's jobs, as its lane makes them: each a [`HashJob`] written into the batch
/// as its id followed by its field values ([`crate::pipeline::batch::write_part`]), in the order
/// of [`HashJobTopic::field_names`].
#[derive(Debug, Clone)]
pub enum HashJobTopic {
    Bullmq {
        /// The job name the worker sees (`job.name`).
        name: String,
        options: BullmqOptions,
    },
    Rq {
        /// The `module.function` the worker calls.
        function: String,
        queue: String,
        options: RqOptions,
    },
}

impl HashJobTopic {
    /// The jobs of a BullMQ or RQ topic (validated config: it has a `job` and a `queue`); `None`
    /// for the other envelopes.
    pub fn for_topic(topic: &TopicConfig) -> Option<HashJobTopic> {
        let handler = topic.job.clone().unwrap_or_default();
        match topic.envelope {
            Envelope::Bullmq => Some(HashJobTopic::Bullmq {
                name: handler,
                options: BullmqOptions::with(&topic.job_options),
            }),
            Envelope::Rq => Some(HashJobTopic::Rq {
                function: handler,
                queue: topic.queue.clone().unwrap_or_default(),
                options: RqOptions::with(&topic.job_options),
            }),
            _ => None,
        }
    }

    /// The names of the hash's fields, in the order [`HashJobTopic::encode`] writes their values.
    pub fn field_names(&self) -> &'static [&'static str] {
        match self {
            HashJobTopic::Bullmq { .. } => &BULLMQ_FIELDS,
            HashJobTopic::Rq { .. } => &RQ_FIELDS,
        }
    }

    /// Appends the job for `record`: its id, then its field values, each a part.
    pub fn encode(&self, record: &Record<'_>, now: &PushTime, out: &mut Vec<u8>) {
        let now_seconds = now.seconds();
        let job = match self {
            HashJobTopic::Bullmq { name, options } => bullmq(name, record, options, now_seconds),
            HashJobTopic::Rq {
                function,
                queue,
                options,
            } => rq(function, queue, record, options, now_seconds),
        };
        crate::pipeline::batch::write_part(out, job.id.as_bytes());
        for (_, value) in &job.fields {
            crate::pipeline::batch::write_part(out, value);
        }
    }
}

/// Seconds since the epoch, as Sidekiq's jobs carry their push time.
pub fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The push time a batch's jobs carry: the clock is read once per batch, and Sidekiq's written
/// form of the reading is made once, when the first job asks for it, because every Sidekiq job
/// writes it twice and formatting a float costs more than the rest of the job's fixed text.
#[derive(Debug)]
pub struct PushTime {
    seconds: f64,
    ruby_float: std::cell::OnceCell<String>,
}

impl PushTime {
    pub fn now() -> PushTime {
        PushTime::at(now_seconds())
    }

    /// `seconds` since the epoch.
    pub fn at(seconds: f64) -> PushTime {
        PushTime {
            seconds,
            ruby_float: std::cell::OnceCell::new(),
        }
    }

    pub fn seconds(&self) -> f64 {
        self.seconds
    }

    /// Shortest round-trip digits with a fraction (`1700000000.0`), as Ruby's `Float#to_s` writes
    /// times; Sidekiq 8 still reads these float seconds.
    pub(super) fn ruby_float(&self) -> &[u8] {
        self.ruby_float
            .get_or_init(|| {
                serde_json::to_string(&self.seconds).expect("a clock reading is finite")
            })
            .as_bytes()
    }
}

/// Celery's `origin` for a sender that is not a worker: `gen<pid>@<hostname>`. Informational (logs,
/// events), so it is read once per process.
static ORIGIN: std::sync::LazyLock<Quoted> = std::sync::LazyLock::new(|| {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    Quoted::new(&format!("gen{}@{host}", std::process::id()))
});

/// The record as the `json` envelope writes it.
fn write_record(record: &Record<'_>, out: &mut Vec<u8>) {
    record.write_json(None, out);
}
