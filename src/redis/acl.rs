//! The Redis commands the bridge sends, and a probe that tells which of them its user may not run.
//!
//! The probe queues each command inside `MULTI` and then `DISCARD`s the lot: Redis checks a
//! command's ACL when it is queued and answers `NOPERM` right then, while nothing queued ever runs.
//! So it needs no admin rights (`ACL DRYRUN` does) and changes no data. Commands that scripts run
//! are probed too: a script's `redis.call` is checked against the same user.

use ::redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{Cmd, Value};

use super::RedisConnection;

/// One command the bridge needs on the data nodes, and what for.
pub struct Needed {
    /// As an ACL rule names it (`info`, `cluster|nodes`).
    pub rule: &'static str,
    pub what: &'static str,
    /// Only in Cluster mode.
    pub cluster_only: bool,
    /// Only when a topic goes to a stream (`structure = "stream"`).
    pub streams_only: bool,
    args: &'static [&'static str],
}

/// `KEY` stands for a list key (the probe uses the first configured list).
const KEY: &str = "KEY";

/// Every command the bridge sends to the data nodes (docs/topologies.md lists the same).
pub const NEEDED: &[Needed] = &[
    needed("rpush", "pushes", &["RPUSH", KEY, "x"]),
    needed(
        "lpush",
        "pushes to lists workers pop from the tail",
        &["LPUSH", KEY, "x"],
    ),
    needed(
        "evalsha",
        "the push, exactly-once, lease and lag scripts",
        &[
            "EVALSHA",
            "0000000000000000000000000000000000000000",
            "1",
            KEY,
        ],
    ),
    needed(
        "eval",
        "the checks that follow a push in its transaction (not on Cluster)",
        &["EVAL", "return 1", "1", KEY],
    ),
    needed(
        "script|load",
        "loading the scripts",
        &["SCRIPT", "LOAD", "return 1"],
    ),
    needed("wait", "the WAIT guard", &["WAIT", "0", "0"]),
    needed("llen", "caps, pausing and lag", &["LLEN", KEY]),
    needed(
        "ltrim",
        "taking back a push its checks refused (script)",
        &["LTRIM", KEY, "0", "-1"],
    ),
    needed(
        "type",
        "the scripts' checks of each key's type",
        &["TYPE", KEY],
    ),
    needed("get", "the lease, fences (scripts)", &["GET", KEY]),
    needed("set", "the lease and its fences", &["SET", KEY, "x"]),
    needed(
        "pexpire",
        "lease renewal (script)",
        &["PEXPIRE", KEY, "1000"],
    ),
    needed("pttl", "status: the lease's time left", &["PTTL", KEY]),
    needed("del", "lease release (script)", &["DEL", KEY]),
    needed(
        "hset",
        "offset records, lag hashes (scripts)",
        &["HSET", KEY, "f", "v"],
    ),
    needed("hget", "offset records (scripts)", &["HGET", KEY, "f"]),
    needed(
        "hmget",
        "exactly-once: reading offset records",
        &["HMGET", KEY, "f"],
    ),
    needed("hgetall", "lag hashes (script)", &["HGETALL", KEY]),
    needed("hdel", "lag hashes (script)", &["HDEL", KEY, "f"]),
    needed("sadd", "Sidekiq's queues set", &["SADD", KEY, "m"]),
    needed("ping", "start-up and check", &["PING"]),
    needed(
        "info",
        "the WAIT guard: does the master have a replica",
        &["INFO", "replication"],
    ),
    needed("role", "Sentinel: confirming the master", &["ROLE"]),
    Needed {
        rule: "cluster|nodes",
        what: "the WAIT guard per master, following failovers",
        cluster_only: true,
        streams_only: false,
        args: &["CLUSTER", "NODES"],
    },
    Needed {
        rule: "cluster|slots",
        what: "the slot map",
        cluster_only: true,
        streams_only: false,
        args: &["CLUSTER", "SLOTS"],
    },
    streams(
        "xadd",
        "stream entries (script)",
        &["XADD", KEY, "*", "f", "v"],
    ),
    streams(
        "xinfo|groups",
        "streams: the groups' unfinished work for caps, pausing and lag (scripts)",
        &["XINFO", "GROUPS", KEY],
    ),
    streams(
        "xlen",
        "streams: the length of a stream without groups (scripts)",
        &["XLEN", KEY],
    ),
    streams(
        "xrange",
        "streams: entries after a group's position when Redis cannot tell its lag (scripts)",
        &["XRANGE", KEY, "-", "+", "COUNT", "1"],
    ),
    streams(
        "xpending",
        "streams: a group's oldest pending entry, where trimming stops (scripts)",
        &["XPENDING", KEY, "g"],
    ),
    streams(
        "xtrim",
        "streams: trimming what every group finished (script)",
        &["XTRIM", KEY, "MINID", "0-1"],
    ),
    streams(
        "exists",
        "streams: whether the stream exists yet (scripts)",
        &["EXISTS", KEY],
    ),
];

const fn needed(rule: &'static str, what: &'static str, args: &'static [&'static str]) -> Needed {
    Needed {
        rule,
        what,
        cluster_only: false,
        streams_only: false,
        args,
    }
}

const fn streams(rule: &'static str, what: &'static str, args: &'static [&'static str]) -> Needed {
    Needed {
        streams_only: true,
        ..needed(rule, what, args)
    }
}

/// `EXEC`, which the checked pushes need outside Cluster ([`crate::pipeline`]'s transactions). It
/// cannot be queued like the others: the probe runs an empty transaction instead.
pub const EXEC: Needed = needed(
    "exec",
    "a push and its checks as one transaction (not on Cluster)",
    &[],
);

/// What the probe found.
pub enum Probed {
    Checked {
        /// The commands the user may not run (empty: all allowed).
        commands: Vec<&'static Needed>,
        /// Whether the user may not touch the list key the probe used (its key patterns).
        key_denied: bool,
    },
    /// The probe itself could not run (the user may not run `MULTI`, …).
    Unknown(String),
}

/// Queues every needed command inside `MULTI` for the node that serves `key`, discards it, and
/// returns those answered with `NOPERM` (and `EXEC`, outside Cluster, when an empty transaction
/// is refused). `streams`: some topic goes to a stream.
pub async fn probe(conn: &RedisConnection, key: &str, streams: bool) -> Probed {
    let cluster = matches!(conn, RedisConnection::Cluster(_));
    let needed: Vec<&'static Needed> = NEEDED
        .iter()
        .filter(|n| cluster || !n.cluster_only)
        .filter(|n| streams || !n.streams_only)
        .collect();
    let mut pipe = ::redis::pipe();
    pipe.ignore_errors();
    pipe.cmd("MULTI");
    for n in &needed {
        let mut cmd = Cmd::new();
        for arg in n.args {
            cmd.arg(if *arg == KEY { key } else { arg });
        }
        pipe.add_command(cmd);
    }
    pipe.cmd("DISCARD");
    let count = needed.len() + 2;
    let replies = match conn.clone() {
        RedisConnection::Cluster(mut cluster) => {
            let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
            cluster.route_pipeline(pipe, 0, count, route).await
        }
        mut other => pipe.query_async::<Vec<Value>>(&mut other).await,
    };
    let replies = match replies {
        Ok(replies) => replies,
        Err(e) => return Probed::Unknown(e.to_string()),
    };
    if let Some(Value::ServerError(e)) = replies.first() {
        return Probed::Unknown(format!("MULTI: {}", e.details().unwrap_or(e.code())));
    }
    let mut commands = Vec::new();
    let mut key_denied = false;
    for (n, reply) in needed.into_iter().zip(&replies[1..]) {
        if let Value::ServerError(e) = reply {
            if e.code() == "NOPERM" {
                // "… no permissions to access one of the keys …" (older: "… access a key") vs
                // "… no permissions to run the 'x' command".
                if e.details()
                    .is_some_and(|d| d.contains("access") && d.contains("key"))
                {
                    key_denied = true;
                } else {
                    commands.push(n);
                }
            }
        }
    }
    if !cluster && exec_denied(conn).await {
        commands.push(&EXEC);
    }
    Probed::Checked {
        commands,
        key_denied,
    }
}

/// Whether the user may not run `EXEC`: an empty transaction, which changes nothing. Redis
/// answers a refused `EXEC` with `EXECABORT … NOPERM …`.
async fn exec_denied(conn: &RedisConnection) -> bool {
    let mut pipe = ::redis::pipe();
    pipe.ignore_errors().cmd("MULTI").cmd("EXEC");
    match pipe.query_async::<Vec<Value>>(&mut conn.clone()).await {
        Ok(replies) => matches!(replies.get(1), Some(Value::ServerError(e))
            if e.code() == "NOPERM" || e.details().is_some_and(|d| d.contains("NOPERM"))),
        Err(e) => e.to_string().contains("NOPERM"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::services::RedisService;
    use crate::config::RedisConfig;
    use crate::redis::RedisSink;

    /// A user without the transaction's commands is told which ones a checked push needs: `EXEC`
    /// by its empty transaction, `EVAL` and the scripts' `LTRIM` and `TYPE` by the queued probe.
    #[tokio::test]
    async fn names_the_commands_of_a_checked_push_the_user_lacks() {
        let redis = RedisService::start(None).unwrap();
        let admin = RedisSink::connect(&RedisConfig::standalone(redis.address.clone()))
            .await
            .unwrap();
        let mut conn = admin.connection();
        ::redis::cmd("ACL")
            .arg(&["SETUSER", "k2r", "on", ">pw", "~*", "&*", "+@all"][..])
            .arg(&["-exec", "-eval", "-ltrim", "-type"][..])
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        let mut config = RedisConfig::standalone(redis.address.clone());
        config.username = Some("k2r".into());
        config.password = Some("pw".into());
        let sink = RedisSink::connect(&config).await.unwrap();
        let Probed::Checked { commands, .. } = probe(&sink.connection(), "queue:q", false).await
        else {
            panic!("the probe ran");
        };
        let mut rules: Vec<&str> = commands.iter().map(|n| n.rule).collect();
        rules.sort_unstable();
        assert_eq!(rules, ["eval", "exec", "ltrim", "type"]);

        ::redis::cmd("ACL")
            .arg(&["SETUSER", "k2r", "+@all"][..])
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        let Probed::Checked { commands, .. } = probe(&sink.connection(), "queue:q", false).await
        else {
            panic!("the probe ran");
        };
        assert!(commands.is_empty());
    }
}
