//! The job envelopes' settings: each topic with `envelope = "laravel" | "celery" | "sidekiq"` names
//! its handler in `job`, and its list is where that framework's stock worker pops
//! (docs/workers-wire-format.md). Checked here so that a job no worker would ever pop, or a push
//! Redis Cluster would refuse, is a config error before anything connects.

use super::{ConfigError, Envelope, RedisTopology, TopicConfig};

/// Whether `envelope` wraps each message as a framework's job.
pub fn is_job(envelope: Envelope) -> bool {
    matches!(
        envelope,
        Envelope::Laravel | Envelope::Celery | Envelope::Sidekiq
    )
}

/// The list a job envelope's topic goes to when the config names none: where that framework's
/// worker pops by default for a queue named after the topic (Celery: its default queue).
pub fn default_list(envelope: Envelope, topic: &str) -> Option<String> {
    match envelope {
        Envelope::Laravel => Some(format!("{LARAVEL_QUEUES}{topic}")),
        Envelope::Celery => Some("celery".into()),
        Envelope::Sidekiq => Some(format!("{SIDEKIQ_QUEUE}{topic}")),
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
pub fn validate(topic: &TopicConfig, topology: &RedisTopology) -> Result<(), ConfigError> {
    let envelope = serde_json::to_string(&topic.envelope).expect("an envelope name");
    match (&topic.job, is_job(topic.envelope)) {
        (None, true) => {
            let example = match topic.envelope {
                Envelope::Laravel => r"'App\Jobs\HandleOrder@handle'",
                Envelope::Celery => "'tasks.handle_order'",
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
                    "only applies to the laravel, celery and sidekiq envelopes; topic {:?} uses {envelope}",
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
        Envelope::Celery | Envelope::Legacy | Envelope::Raw | Envelope::Json => {}
    }
    Ok(())
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
            err(r#"[{ name = "orders", envelope = "json", job = "X" }]"#)
                .contains("`topics.orders.job` only applies to the laravel, celery and sidekiq")
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
}
