//! `kafka2redis check`: is this config ready to run? Validates it, reaches Kafka and Redis, and says
//! plainly what is wrong. Prints a report on stdout; the caller exits 0 only when all is well.

use std::fmt::Write as _;

use crate::config::Config;
use crate::pipeline::key_types;
use crate::redact::{redact_url, scrub};
use crate::redis::{acl, cluster, eviction, ConnectError, RedisConnection, RedisSink};

use super::{Report, KAFKA_TIMEOUT};

pub async fn run(config: &Config) -> Report {
    let mut text = String::new();
    let mut problems = 0;
    let _ = writeln!(
        text,
        "config: ok ({:?} format, {} topic(s), group {:?})",
        config.format,
        config.topics.len(),
        config.kafka.group
    );
    for note in &config.warnings {
        let _ = writeln!(text, "  note: {note}");
    }

    // Kafka: metadata for every topic, from a client that joins no group.
    let kafka_config = crate::kafka::client_config(config);
    let brokers = config.kafka.brokers.join(",");
    let metadata = tokio::task::spawn_blocking(move || {
        crate::kafka::probe::metadata(&kafka_config, KAFKA_TIMEOUT)
    })
    .await
    .expect("metadata task panicked");
    match metadata {
        Err(failure) => {
            problems += 1;
            let why = scrub(&failure.to_string(), &config.secrets());
            let _ = writeln!(text, "kafka: FAILED to reach brokers {brokers}: {why}");
        }
        Ok(metadata) => {
            let _ = writeln!(
                text,
                "kafka: ok ({} broker(s) at {brokers})",
                metadata.brokers().len()
            );
            for topic in &config.topics {
                match metadata.topics().iter().find(|t| t.name() == topic.name) {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                        let _ = writeln!(
                            text,
                            "  topic {:?}: {} partition(s) -> list {:?} (envelope {:?}, dead letters {:?})",
                            topic.name,
                            t.partitions().len(),
                            topic.list_key,
                            topic.envelope,
                            topic.dead_letter_key()
                        );
                    }
                    Some(t) => {
                        problems += 1;
                        let _ =
                            writeln!(text, "  topic {:?}: PROBLEM: {:?}", topic.name, t.error());
                    }
                    None => {
                        problems += 1;
                        let _ = writeln!(
                            text,
                            "  topic {:?}: MISSING: the broker does not know this topic",
                            topic.name
                        );
                    }
                }
            }
        }
    }

    // Redis: connect (with the credentials), PING, and show what the topology looks like.
    problems += check_redis(config, &mut text).await;
    let _ = writeln!(
        text,
        "{}",
        if problems == 0 {
            "all good".to_string()
        } else {
            format!("{problems} problem(s)")
        }
    );
    Report { text, problems }
}

/// Connects to Redis as the bridge would and reports the topology: Sentinel's master and what each
/// sentinel said, or the cluster's nodes and which master owns each list. Returns the problem count.
async fn check_redis(config: &Config, text: &mut String) -> usize {
    let redis = &config.redis;
    let mut problems = 0;
    let mode = &redis.topology;
    let security = format!(
        "{}{}",
        match &redis.username {
            Some(user) => format!("user {user:?}"),
            None if !redis.secrets().is_empty() => "password".to_string(),
            None => "no auth".to_string(),
        },
        match &redis.tls {
            _ if !redis.tls_enabled() => ", plain TCP".to_string(),
            Some(tls) if tls.insecure_skip_verify => {
                ", TLS WITHOUT certificate verification".to_string()
            }
            Some(tls) if tls.ca_file.is_some() => ", TLS (CA file)".to_string(),
            _ => ", TLS (system CAs)".to_string(),
        }
    );
    let sink = match RedisSink::connect(redis).await {
        Ok(sink) => sink.ping().await.map(|()| sink).map_err(|e| e.to_string()),
        Err(ConnectError::Fatal(why)) => Err(why),
        Err(ConnectError::Retryable(e)) => Err(format!("unreachable: {e}")),
    };
    let sink = match sink {
        Ok(sink) => {
            let _ = writeln!(text, "redis: ok ({mode}; {security})");
            sink
        }
        Err(why) => {
            let _ = writeln!(text, "redis: FAILED ({mode}; {security}): {why}");
            return 1;
        }
    };
    let wait = sink.wait_replicas(None) as usize;
    if wait > 0 {
        let _ = writeln!(
            text,
            "  WAIT guard: each push must reach {wait} replica(s) within {} ms",
            redis.wait_timeout.as_millis()
        );
    }
    match sink.connection() {
        RedisConnection::Standalone(mut conn) => {
            if wait > 0 {
                problems += check_replicas(&mut conn, "the server", wait, text).await;
            }
        }
        RedisConnection::Sentinel(mut conn) => {
            let master = conn.master_address().unwrap_or_else(|| "?".into());
            let _ = writeln!(text, "  master: {master}");
            for answer in conn.survey().await {
                let sentinel = redact_url(&answer.sentinel);
                match answer.answer {
                    Ok(named) if named == master => {
                        let _ = writeln!(text, "  sentinel {sentinel}: reached, names {named}");
                    }
                    Ok(named) => {
                        // Normal for a moment during a failover; otherwise the sentinels disagree.
                        let _ = writeln!(
                            text,
                            "  sentinel {sentinel}: reached, names {named} (DIFFERENT master)"
                        );
                    }
                    Err(why) => {
                        problems += 1;
                        let why = scrub(&why, &redis.secrets());
                        let _ = writeln!(
                            text,
                            "  sentinel {sentinel}: UNREACHABLE or unusable: {why}"
                        );
                    }
                }
            }
            if wait > 0 {
                problems += check_replicas(&mut conn, "the master", wait, text).await;
            }
        }
        RedisConnection::Cluster(mut conn) => {
            problems += check_cluster(config, &mut conn, &sink, text).await;
        }
    }
    problems += check_permissions(config, &sink, text).await;
    // A server that may evict is the operator's choice, so a warning rather than a problem.
    for node in eviction::policies(&sink.connection()).await {
        let _ = match (&node.policy, node.warning()) {
            (_, Some(warning)) => writeln!(text, "  WARNING: {warning}"),
            (Ok(policy), None) => writeln!(text, "  {}: maxmemory-policy {policy}", node.node),
            (Err(why), None) => writeln!(
                text,
                "  note: could not read maxmemory-policy from {} ({why}); make sure it is noeviction",
                node.node
            ),
        };
    }
    problems += check_key_types(config, &sink.connection(), text).await;
    problems
}

/// Which of the commands the bridge sends its Redis user may not run, in one line.
async fn check_permissions(config: &Config, sink: &RedisSink, text: &mut String) -> usize {
    let Some(list) = config.topics.first().map(|t| t.list_key.clone()) else {
        return 0;
    };
    let streams = config
        .topics
        .iter()
        .any(|t| t.structure == crate::config::Structure::Stream);
    match acl::probe(&sink.connection(), &list, streams).await {
        acl::Probed::Checked {
            commands,
            key_denied,
        } => {
            let mut problems = 0;
            if commands.is_empty() {
                let _ = writeln!(
                    text,
                    "  permissions: every command the bridge sends is allowed"
                );
            } else {
                problems += 1;
                let rules: Vec<String> = commands.iter().map(|n| format!("+{}", n.rule)).collect();
                let uses: Vec<String> = commands
                    .iter()
                    .map(|n| format!("{} ({})", n.rule.to_uppercase(), n.what))
                    .collect();
                let _ = writeln!(
                    text,
                    "  PROBLEM: the Redis user may not run {} — allow them with ACL SETUSER <user> {} (docs/topologies.md lists every command)",
                    uses.join(", "),
                    rules.join(" ")
                );
            }
            if key_denied {
                problems += 1;
                let _ = writeln!(
                    text,
                    "  PROBLEM: the Redis user may not access the key {list:?}: its key patterns (~…) must cover the lists, their companion keys, the lease key and the lag hashes"
                );
            }
            problems
        }
        acl::Probed::Unknown(why) => {
            let why = scrub(&why, &config.redis.secrets());
            let _ = writeln!(
                text,
                "  note: could not check the Redis user's permissions ({why})"
            );
            0
        }
    }
}

/// Every key the bridge writes that exists with another type (another application's key): each
/// push to it would be refused. Returns the problem count.
async fn check_key_types(config: &Config, conn: &RedisConnection, text: &mut String) -> usize {
    let keys = key_types::keys_written(config);
    match key_types::wrong_types(conn, &keys).await {
        Ok(wrong) if wrong.is_empty() => {
            let _ = writeln!(
                text,
                "  keys: none of the {} keys the bridge writes holds another type",
                keys.len()
            );
            0
        }
        Ok(wrong) => {
            for key in &wrong {
                let _ = writeln!(
                    text,
                    "  key {:?}: PROBLEM: it is a {}, but the bridge writes a {} there: every push to it would be \
                     refused; delete or rename it (or point the topic elsewhere)",
                    key.key, key.found, key.wanted
                );
            }
            wrong.len()
        }
        Err(e) => {
            let _ = writeln!(
                text,
                "  PROBLEM: could not read the types of the keys the bridge writes: {e}"
            );
            1
        }
    }
}

/// `INFO replication` on a standalone server or Sentinel's master: enough replicas for the WAIT guard?
async fn check_replicas<C: ::redis::aio::ConnectionLike>(
    conn: &mut C,
    what: &str,
    wanted: usize,
    text: &mut String,
) -> usize {
    let info: Result<String, _> = ::redis::cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await;
    let connected = info.ok().and_then(|info| {
        info.lines()
            .find_map(|l| l.strip_prefix("connected_slaves:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
    });
    match connected {
        Some(n) if n >= wanted => {
            let _ = writeln!(text, "  {what} has {n} connected replica(s)");
            0
        }
        Some(n) => {
            let _ = writeln!(
                text,
                "  PROBLEM: {what} has {n} connected replica(s), fewer than redis.wait_replicas = {wanted}: every push would fail"
            );
            1
        }
        None => {
            let _ = writeln!(
                text,
                "  PROBLEM: could not read INFO replication from {what}"
            );
            1
        }
    }
}

async fn check_cluster(
    config: &Config,
    conn: &mut cluster::ClusterConn,
    sink: &RedisSink,
    text: &mut String,
) -> usize {
    let mut problems = 0;
    let nodes = match cluster::nodes(conn).await {
        Ok(nodes) => nodes,
        Err(e) => {
            let _ = writeln!(text, "  PROBLEM: CLUSTER NODES failed: {e}");
            return 1;
        }
    };
    for node in &nodes {
        let role = if node.master {
            format!(
                "master, slots {}, {} replica(s)",
                node.slots.join(" "),
                cluster::replicas_of(&nodes, &node.id)
            )
        } else {
            let of = node
                .replica_of
                .as_ref()
                .and_then(|id| nodes.iter().find(|n| &n.id == id))
                .map(|m| m.address.as_str())
                .unwrap_or("?");
            format!("replica of {of}")
        };
        if node.failed {
            problems += 1;
            let _ = writeln!(text, "  node {}: FAILED ({role})", node.address);
        } else {
            let _ = writeln!(text, "  node {}: {role}", node.address);
        }
    }
    for topic in &config.topics {
        for key in [topic.list_key.clone(), topic.dead_letter_key()] {
            let slot = match cluster::slot(conn, &key).await {
                Ok(slot) => slot,
                Err(e) => {
                    problems += 1;
                    let _ = writeln!(text, "  list {key:?}: PROBLEM: CLUSTER KEYSLOT failed: {e}");
                    continue;
                }
            };
            match cluster::owner(&nodes, slot) {
                Some(owner) => {
                    let replicas = cluster::replicas_of(&nodes, &owner.id);
                    let _ = writeln!(
                        text,
                        "  list {key:?}: slot {slot} on {} ({replicas} replica(s))",
                        owner.address
                    );
                    // The guard is kept per master (its slots), when the topology decides it.
                    let wait = sink.wait_replicas(Some(&key)) as usize;
                    if replicas < wait {
                        problems += 1;
                        let _ = writeln!(
                            text,
                            "    PROBLEM: fewer replicas than redis.wait_replicas = {wait}: pushes to it would fail"
                        );
                    }
                }
                None => {
                    problems += 1;
                    let _ = writeln!(text, "  list {key:?}: slot {slot} is served by NO master");
                }
            }
        }
    }
    problems
}
