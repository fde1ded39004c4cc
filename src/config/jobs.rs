//! The job envelopes' settings: each topic with a job envelope names its handler in `job`, and its
//! list is where that framework's stock worker pops (docs/workers-wire-format.md). BullMQ and RQ
//! topics name a `queue` (and optionally a `queue_prefix`) instead of a list: every key follows
//! from those two. Checked here so that a job no worker would ever pop, or a push Redis Cluster
//! would refuse, is a config error before anything connects.

use super::{ConfigError, Envelope, RedisTopology, TopicConfig};

/// Whether `envelope` wraps each message as a framework's job.
pub fn is_job(envelope: Envelope) -> bool {
    matches!(
        envelope,
        Envelope::Laravel
            | Envelope::Celery
            | Envelope::Sidekiq
            | Envelope::Bullmq
            | Envelope::Rq
            | Envelope::Symfony
    )
}

/// Whether `envelope` keeps each job in a hash of its own and names its keys by `queue` and
/// `queue_prefix` (BullMQ, RQ) rather than by `list`.
pub fn has_queue(envelope: Envelope) -> bool {
    matches!(envelope, Envelope::Bullmq | Envelope::Rq)
}

/// The framework's own key prefix: BullMQ's `bull`, RQ's `rq`.
pub fn default_queue_prefix(envelope: Envelope) -> Option<&'static str> {
    match envelope {
        Envelope::Bullmq => Some("bull"),
        Envelope::Rq => Some("rq"),
        _ => None,
    }
}

/// A BullMQ or RQ topic's key prefix: its `queue_prefix`, else the framework's default.
pub fn queue_prefix(topic: &TopicConfig) -> &str {
    topic
        .queue_prefix
        .as_deref()
        .or(default_queue_prefix(topic.envelope))
        .unwrap_or_default()
}

/// The list of waiting jobs of a BullMQ or RQ queue, which the cap counts and the lag and status
/// show: BullMQ's `<prefix>:<queue>:wait`, RQ's `<prefix>:queue:<queue>`. `None` for the other
/// envelopes, or without a queue.
pub fn queue_list(envelope: Envelope, queue: Option<&str>, prefix: Option<&str>) -> Option<String> {
    let prefix = prefix.or(default_queue_prefix(envelope))?;
    let queue = queue?;
    match envelope {
        Envelope::Bullmq => Some(format!("{prefix}:{queue}:wait")),
        Envelope::Rq => Some(format!("{prefix}:queue:{queue}")),
        _ => None,
    }
}

fn envelope_name(envelope: Envelope) -> String {
    serde_json::to_string(&envelope).expect("an envelope name")
}

/// `list` set on a BullMQ or RQ topic.
pub fn list_refused(topic: &str, envelope: Envelope) -> ConfigError {
    ConfigError::in_topic(
        topic,
        "list",
        format!(
            "does not apply with envelope = {}: the keys follow from `queue` and `queue_prefix`, \
             so set those instead",
            envelope_name(envelope)
        ),
    )
}

/// Checks a topic's `queue` and `queue_prefix` against its envelope and the Redis topology.
/// Runs before the list checks: a BullMQ or RQ topic without a queue has no list to check.
pub fn validate_queue(topic: &TopicConfig, topology: &RedisTopology) -> Result<(), ConfigError> {
    let envelope = envelope_name(topic.envelope);
    if !has_queue(topic.envelope) {
        for (key, given) in [
            ("queue", &topic.queue),
            ("queue_prefix", &topic.queue_prefix),
        ] {
            if given.is_some() {
                return Err(ConfigError::in_topic(
                    &topic.name,
                    key,
                    format!(
                        "only applies to the bullmq and rq envelopes; topic {:?} uses {envelope}",
                        topic.name
                    ),
                ));
            }
        }
        return Ok(());
    }
    let Some(queue) = &topic.queue else {
        return Err(ConfigError::in_topic(
            &topic.name,
            "queue",
            format!(
                "is required with envelope = {envelope}: the queue its workers take jobs from, e.g. {:?}",
                topic.name.replace([':', '.'], "_")
            ),
        ));
    };
    if queue.is_empty() {
        return Err(ConfigError::in_topic(
            &topic.name,
            "queue",
            "must not be empty",
        ));
    }
    if queue.contains(':') {
        return Err(ConfigError::in_topic(
            &topic.name,
            "queue",
            format!("{queue:?} contains ':', which {envelope} uses between the parts of its key names; pick a name without it"),
        ));
    }
    let prefix = queue_prefix(topic);
    if prefix.is_empty() {
        return Err(ConfigError::in_topic(
            &topic.name,
            "queue_prefix",
            "must not be empty",
        ));
    }
    if let RedisTopology::Cluster { .. } = topology {
        if topic.envelope == Envelope::Rq {
            return Err(ConfigError::in_topic(
                &topic.name,
                "envelope",
                "= \"rq\" cannot run on Redis Cluster: RQ's keys (the job hashes, the queue list and \
                 the queues set) lie in different slots, and RQ itself does not support Cluster",
            ));
        }
        if crate::keys::hash_tag(prefix) == prefix {
            return Err(ConfigError::in_topic(
                &topic.name,
                "queue_prefix",
                format!(
                    "{prefix:?} has no {{hash tag}}: on Redis Cluster all of a BullMQ queue's keys must \
                     share one slot, so use e.g. \"{{{prefix}}}\" (and the same prefix in the workers)"
                ),
            ));
        }
    }
    Ok(())
}

/// The list a job envelope's topic goes to when the config names none: where that framework's
/// worker pops by default for a queue named after the topic (Celery: its default queue).
pub fn default_list(envelope: Envelope, topic: &str) -> Option<String> {
    match envelope {
        Envelope::Laravel => Some(format!("{LARAVEL_QUEUES}{topic}")),
        Envelope::Celery => Some("celery".into()),
        Envelope::Sidekiq => Some(format!("{SIDEKIQ_QUEUE}{topic}")),
        Envelope::Bullmq | Envelope::Rq | Envelope::Symfony => None,
        Envelope::Legacy | Envelope::Raw | Envelope::Json => None,
    }
}

/// Laravel's list for queue Q is `<connection prefix>queues:Q`.
const LARAVEL_QUEUES: &str = "queues:";
/// Sidekiq's list for queue Q is `queue:Q`.
const SIDEKIQ_QUEUE: &str = "queue:";

/// The Sidekiq queue a list belongs to (`queue:Q` → `Q`), written into each job.
pub fn sidekiq_queue(list: &str) -> Option<&str> {
    list.strip_prefix(SIDEKIQ_QUEUE).filter(|q| !q.is_empty())
}

/// Laravel's companion list, which a worker blocking with `block_for` waits on: `<list>:notify`.
pub fn laravel_notify_key(list: &str) -> String {
    format!("{list}:notify")
}

/// Checks a topic's `job` against its envelope, and that its list is one the framework's worker
/// pops.
/// `job_options` on a topic whose envelope has no per-job settings of the bridge's.
pub fn job_options_refused(topic: &str, envelope: Envelope) -> ConfigError {
    ConfigError::in_topic(
        topic,
        "job_options",
        format!(
            "only applies to the bullmq and rq envelopes; topic {topic:?} uses {}",
            envelope_name(envelope)
        ),
    )
}

/// Each `job_options` key belongs to one framework, and BullMQ runs a job at least once.
fn validate_job_options(topic: &TopicConfig) -> Result<(), ConfigError> {
    let options = &topic.job_options;
    let bullmq = match topic.envelope {
        Envelope::Bullmq => true,
        Envelope::Rq => false,
        _ => return Ok(()),
    };
    if let Some((key, _)) = options.set_keys().into_iter().find(|(_, b)| *b != bullmq) {
        let (owner, other) = if bullmq {
            ("rq", "bullmq")
        } else {
            ("bullmq", "rq")
        };
        return Err(ConfigError::in_topic(
            &topic.name,
            &format!("job_options.{key}"),
            format!("is a setting of {owner} jobs; this topic's envelope is {other}"),
        ));
    }
    if options.attempts == Some(0) {
        return Err(ConfigError::in_topic(
            &topic.name,
            "job_options.attempts",
            "must be at least 1 (the first run counts)",
        ));
    }
    Ok(())
}

pub fn validate(topic: &TopicConfig, topology: &RedisTopology) -> Result<(), ConfigError> {
    validate_job_options(topic)?;
    let envelope = envelope_name(topic.envelope);
    match (&topic.job, is_job(topic.envelope)) {
        (None, true) => {
            let example = match topic.envelope {
                Envelope::Laravel => r"'App\Jobs\HandleOrder@handle'",
                Envelope::Celery => "'tasks.handle_order'",
                Envelope::Bullmq => "'order' (the job name the worker sees)",
                Envelope::Rq => "'tasks.handle_order' (a module.function the worker imports)",
                Envelope::Symfony => r"'App\Message\KafkaRecord' (the message class)",
                _ => "'HandleOrderWorker'",
            };
            return Err(ConfigError::in_topic(
                &topic.name,
                "job",
                format!(
                    "is required with envelope = {envelope}: the handler each message runs, e.g. {example}"
                ),
            ));
        }
        (Some(_), false) => {
            return Err(ConfigError::in_topic(
                &topic.name,
                "job",
                format!(
                    "only applies to the laravel, celery, sidekiq, bullmq, rq and symfony envelopes; topic {:?} uses {envelope}",
                    topic.name
                ),
            ))
        }
        (Some(job), true) if job.trim().is_empty() => {
            return Err(ConfigError::in_topic(&topic.name, "job", "must not be empty"))
        }
        _ => {}
    }
    let list = &topic.list_key;
    match topic.envelope {
        Envelope::Laravel => {
            if !list.contains(LARAVEL_QUEUES) {
                return Err(ConfigError::in_topic(
                    &topic.name,
                    "list",
                    format!(
                        "{list:?} is not a Laravel queue list: a Laravel worker pops \
                         `<redis prefix>queues:<queue>` (e.g. \"queues:orders\", or \
                         \"laravel_database_queues:orders\" with a stock app's Redis prefix)"
                    ),
                ));
            }
            let notify = laravel_notify_key(list);
            if matches!(topology, RedisTopology::Cluster { .. })
                && crate::keys::hash_tag(&notify) != crate::keys::hash_tag(list)
            {
                return Err(ConfigError::in_topic(
                    &topic.name,
                    "list",
                    format!(
                        "{list:?} and Laravel's {notify:?} are in different Redis Cluster slots, so one \
                         atomic push cannot write both; give the queue a {{hash tag}}, e.g. \
                         \"queues:{{{}}}\" (Laravel needs such names on a cluster too)",
                        topic.name
                    ),
                ));
            }
        }
        Envelope::Sidekiq => {
            if sidekiq_queue(list).is_none() {
                return Err(ConfigError::in_topic(
                    &topic.name,
                    "list",
                    format!(
                        "{list:?} is not a Sidekiq queue list: Sidekiq pops `queue:<queue>`, e.g. \"queue:{}\"",
                        topic.name
                    ),
                ));
            }
        }
        Envelope::Symfony => {
            let class = topic.job.as_deref().unwrap_or_default();
            if !is_php_class_name(class) {
                return Err(ConfigError::in_topic(
                    &topic.name,
                    "job",
                    format!(
                        "'{class}' is not a PHP class name: with envelope = \"symfony\" it names \
                         the message class, identifiers of letters, digits and _ joined by \\ and \
                         without a leading \\, written as a TOML literal string so that the \\ stay, \
                         e.g. 'App\\Message\\KafkaRecord'"
                    ),
                ));
            }
        }
        Envelope::Celery
        | Envelope::Bullmq
        | Envelope::Rq
        | Envelope::Legacy
        | Envelope::Raw
        | Envelope::Json => {}
    }
    Ok(())
}

/// A fully qualified PHP class name as `get_class` gives it (the type Messenger writes): ASCII
/// identifiers (a letter or `_`, then letters, digits, `_`) joined by `\`, no leading `\`.
fn is_php_class_name(name: &str) -> bool {
    name.split('\\').all(|part| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::env::Vars;
    use super::super::{native, Config, ConfigError, Envelope};

    fn load(topics: &str, redis: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "topics = {topics}\n[kafka]\nbrokers = [\"127.0.0.1:9092\"]\ngroup = \"g\"\n[redis]\n{redis}\n"
        );
        let config = native::parse(
            &text,
            Path::new("k2r.toml"),
            &Vars::from_pairs(std::iter::empty::<(&str, &str)>()),
        )?;
        config.validate()?;
        Ok(config)
    }

    const STANDALONE: &str = r#"addresses = ["127.0.0.1:6379"]"#;
    const CLUSTER: &str = r#"mode = "cluster"
addresses = ["127.0.0.1:7000"]"#;

    #[test]
    fn job_options_are_the_frameworks_own() {
        let c = load(
            r#"[{ name = "b", envelope = "bullmq", queue = "b", job = "record",
                  job_options = { attempts = 5, keep_completed_count = 100 } },
                { name = "r", envelope = "rq", queue = "r", job = "tasks.record",
                  job_options = { result_ttl_seconds = 60 } }]"#,
            STANDALONE,
        )
        .unwrap();
        assert_eq!(c.topics[0].job_options.attempts, Some(5));
        assert_eq!(c.topics[0].job_options.keep_completed_count, Some(100));
        assert_eq!(c.topics[1].job_options.result_ttl_seconds, Some(60));
        let refused = |topics: &str| load(topics, STANDALONE).unwrap_err().to_string();
        let wrong_framework = refused(
            r#"[{ name = "r", envelope = "rq", queue = "r", job = "f", job_options = { attempts = 2 } }]"#,
        );
        assert!(
            wrong_framework.contains("topics.r.job_options.attempts")
                && wrong_framework.contains("bullmq"),
            "{wrong_framework}"
        );
        let none = refused(
            r#"[{ name = "b", envelope = "bullmq", queue = "b", job = "f", job_options = { attempts = 0 } }]"#,
        );
        assert!(none.contains("topics.b.job_options.attempts"), "{none}");
        let raw = refused(r#"[{ name = "t", job_options = { attempts = 2 } }]"#);
        assert!(raw.contains("topics.t.job_options"), "{raw}");
        let unknown = refused(
            r#"[{ name = "b", envelope = "bullmq", queue = "b", job = "f", job_options = { retries = 2 } }]"#,
        );
        assert!(unknown.contains("retries"), "{unknown}");
    }

    #[test]
    fn symfony_is_a_stream_of_a_php_message_class() {
        use super::super::Structure;
        let c = load(
            r#"[{ name = "orders", envelope = "symfony", job = 'App\Message\KafkaRecord' },
                { name = "bills", envelope = "symfony", job = "_Bill2", structure = "stream", list = "messages" }]"#,
            STANDALONE,
        )
        .unwrap();
        assert_eq!(c.topics[0].structure, Structure::Stream);
        assert_eq!(c.topics[0].list_key, "queues:orders");
        assert_eq!(c.topics[0].job.as_deref(), Some(r"App\Message\KafkaRecord"));
        assert_eq!(c.topics[1].list_key, "messages");
        let refused = |topics: &str| load(topics, STANDALONE).unwrap_err().to_string();
        for class in [
            r"\App\Message",
            r"App\\Message",
            "App.Message",
            "2App",
            r"App\",
            "App Message",
        ] {
            let e = refused(&format!(
                r#"[{{ name = "t", envelope = "symfony", job = '{class}' }}]"#
            ));
            assert!(
                e.contains("topics.t.job") && e.contains("not a PHP class name"),
                "{e}"
            );
        }
        let e = refused(r#"[{ name = "t", envelope = "symfony" }]"#);
        assert!(
            e.contains("topics.t.job") && e.contains("message class"),
            "{e}"
        );
        let e = refused(r#"[{ name = "t", envelope = "symfony", job = "A", structure = "list" }]"#);
        assert!(
            e.contains("topics.t.structure") && e.contains("stream"),
            "{e}"
        );
    }

    #[test]
    fn job_envelopes_default_to_the_frameworks_lists() {
        let c = load(
            r#"[{ name = "orders", envelope = "laravel", job = 'App\Jobs\HandleOrder@handle' },
                { name = "mails", envelope = "celery", job = "tasks.send" },
                { name = "bills", envelope = "sidekiq", job = "BillWorker" },
                { name = "pays", envelope = "laravel", job = "PayJob", list = "laravel_database_queues:pays" }]"#,
            STANDALONE,
        )
        .unwrap();
        let lists: Vec<_> = c.topics.iter().map(|t| t.list_key.as_str()).collect();
        assert_eq!(
            lists,
            [
                "queues:orders",
                "celery",
                "queue:bills",
                "laravel_database_queues:pays"
            ]
        );
        assert_eq!(c.topics[0].envelope, Envelope::Laravel);
        assert_eq!(
            c.topics[0].job.as_deref(),
            Some(r"App\Jobs\HandleOrder@handle")
        );
    }

    #[test]
    fn job_and_envelope_must_go_together() {
        let err = |topics: &str| load(topics, STANDALONE).unwrap_err().to_string();
        assert!(
            err(r#"[{ name = "orders", envelope = "sidekiq" }]"#)
                .contains("`topics.orders.job` is required with envelope = \"sidekiq\""),
            "{}",
            err(r#"[{ name = "orders", envelope = "sidekiq" }]"#)
        );
        assert!(
            err(r#"[{ name = "orders", envelope = "json", job = "X" }]"#).contains(
                "`topics.orders.job` only applies to the laravel, celery, sidekiq, bullmq, rq and symfony"
            )
        );
        assert!(
            err(r#"[{ name = "orders", envelope = "celery", job = " " }]"#)
                .contains("`topics.orders.job` must not be empty")
        );
    }

    #[test]
    fn lists_must_be_where_the_workers_pop() {
        let err = |topics: &str| load(topics, STANDALONE).unwrap_err().to_string();
        assert!(
            err(r#"[{ name = "o", envelope = "sidekiq", job = "W", list = "jobs:o" }]"#)
                .contains("`topics.o.list` \"jobs:o\" is not a Sidekiq queue list")
        );
        assert!(
            err(r#"[{ name = "o", envelope = "laravel", job = "J", list = "jobs:o" }]"#)
                .contains("`topics.o.list` \"jobs:o\" is not a Laravel queue list")
        );
    }

    #[test]
    fn laravel_on_a_cluster_needs_a_hash_tag() {
        let err = load(
            r#"[{ name = "o", envelope = "laravel", job = "J" }]"#,
            CLUSTER,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("different Redis Cluster slots"), "{err}");
        load(
            r#"[{ name = "o", envelope = "laravel", job = "J", list = "queues:{o}" }]"#,
            CLUSTER,
        )
        .unwrap();
        // Sidekiq's `queues` set is written after the push there, so any queue list will do.
        load(
            r#"[{ name = "o", envelope = "sidekiq", job = "W" }]"#,
            CLUSTER,
        )
        .unwrap();
    }

    #[test]
    fn bullmq_and_rq_lists_follow_from_queue_and_prefix() {
        let c = load(
            r#"[{ name = "orders", envelope = "bullmq", job = "record", queue = "orders" },
                { name = "mails", envelope = "rq", job = "tasks.send", queue = "mails", queue_prefix = "app" }]"#,
            STANDALONE,
        )
        .unwrap();
        let lists: Vec<_> = c.topics.iter().map(|t| t.list_key.as_str()).collect();
        assert_eq!(lists, ["bull:orders:wait", "app:queue:mails"]);
        let c = load(
            r#"[{ name = "o", envelope = "bullmq", job = "record", queue = "o", queue_prefix = "{bull}",
                  delivery = "exactly-once" }]"#,
            CLUSTER,
        )
        .unwrap();
        assert_eq!(c.topics[0].list_key, "{bull}:o:wait");
        assert_eq!(
            crate::keys::offsets_key(&c.topics[0].list_key).as_deref(),
            Some("{bull}:o:wait:offsets"),
            "the offset record in the queue's slot"
        );
    }
}
