//! Whether Redis may evict what the bridge pushed.
//!
//! With any `maxmemory-policy` but `noeviction`, a Redis under memory pressure deletes keys to make
//! room — a whole list of messages whose offsets were already committed, gone without an error. With
//! `noeviction` it refuses the push instead, and the lane retries: Kafka keeps the backlog. This is
//! the server's setting, not the bridge's, so it is a warning (`check`, and the daemon at start),
//! never a refusal to run.

use std::collections::HashMap;

use ::redis::aio::ConnectionLike;
use ::redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use ::redis::{Cmd, RedisResult, Value};
use tracing::{debug, warn};

use super::cluster::ClusterConn;
use super::{RedisConnection, RedisSink};

/// The policy that never drops data.
const SAFE: &str = "noeviction";

/// One node's `maxmemory-policy`, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePolicy {
    /// Which node, as a report names it ("the server", "the master 10.0.0.1:6379", …).
    pub node: String,
    pub policy: Result<String, String>,
}

impl NodePolicy {
    /// The warning for a node that may evict; `None` for `noeviction` or an unknown policy.
    pub fn warning(&self) -> Option<String> {
        match &self.policy {
            Ok(policy) if policy != SAFE => Some(format!(
                "{} may evict keys (maxmemory-policy {policy}): under memory pressure Redis would \
                 silently delete lists of messages already committed in Kafka; set maxmemory-policy \
                 {SAFE}, so that a full Redis refuses pushes and the bridge retries them",
                self.node
            )),
            _ => None,
        }
    }
}

impl RedisSink {
    /// Logs a warning for every node that may evict the lists (see the module docs); for the daemon,
    /// once connected.
    pub async fn warn_if_evicting(&self) {
        for node in policies(&self.connection()).await {
            match (&node.policy, node.warning()) {
                (_, Some(warning)) => warn!("{warning}"),
                (Err(why), None) => {
                    debug!(node = %node.node, %why, "could not read maxmemory-policy")
                }
                (Ok(_), None) => {}
            }
        }
    }
}

/// The `maxmemory-policy` of every node that takes pushes: the standalone server, Sentinel's
/// master, each Cluster master.
pub async fn policies(conn: &RedisConnection) -> Vec<NodePolicy> {
    match conn.clone() {
        RedisConnection::Standalone(mut c) => vec![NodePolicy {
            node: "the server".into(),
            policy: node_policy(&mut c).await,
        }],
        RedisConnection::Sentinel(mut c) => {
            let policy = node_policy(&mut c).await;
            let node = match c.master_address() {
                Some(address) => format!("the master {address}"),
                None => "the master".into(),
            };
            vec![NodePolicy { node, policy }]
        }
        RedisConnection::Cluster(mut c) => cluster_policies(&mut c).await,
    }
}

fn config_get() -> Cmd {
    let mut cmd = ::redis::cmd("CONFIG");
    cmd.arg("GET").arg("maxmemory-policy");
    cmd
}

fn info_memory() -> Cmd {
    let mut cmd = ::redis::cmd("INFO");
    cmd.arg("memory");
    cmd
}

/// `CONFIG GET`, else `INFO memory`: managed services often rename `CONFIG` away or deny it to
/// the bridge's ACL user, and `INFO` reports the same setting.
async fn node_policy<C: ConnectionLike>(conn: &mut C) -> Result<String, String> {
    let config: RedisResult<Value> = config_get().query_async(conn).await;
    if let Some(policy) = config.ok().and_then(from_config) {
        return Ok(policy);
    }
    let info: Value = info_memory()
        .query_async(conn)
        .await
        .map_err(|e| format!("neither CONFIG GET nor INFO memory answered ({e})"))?;
    from_info(info).ok_or_else(|| "INFO memory does not report maxmemory_policy".into())
}

/// Each master's answer, in one round per command.
async fn cluster_policies(conn: &mut ClusterConn) -> Vec<NodePolicy> {
    let all_masters = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    // Every master's CONFIG GET, or none (any master refusing it sends all to INFO).
    let configured: Option<Vec<(String, String)>> = conn
        .route_command(config_get(), all_masters.clone())
        .await
        .ok()
        .map(per_node)
        .filter(|answers| !answers.is_empty())
        .and_then(|answers| {
            answers
                .into_iter()
                .map(|(node, reply)| Some((node, from_config(reply)?)))
                .collect()
        });
    let mut found: Vec<NodePolicy> = match configured {
        Some(answers) => answers
            .into_iter()
            .map(|(node, policy)| NodePolicy {
                node: format!("master {node}"),
                policy: Ok(policy),
            })
            .collect(),
        None => match conn.route_command(info_memory(), all_masters).await {
            Ok(answers) => per_node(answers)
                .into_iter()
                .map(|(node, reply)| NodePolicy {
                    node: format!("master {node}"),
                    policy: from_info(reply)
                        .ok_or_else(|| "neither CONFIG GET nor INFO memory answered".into()),
                })
                .collect(),
            Err(e) => vec![NodePolicy {
                node: "the cluster's masters".into(),
                policy: Err(format!("INFO memory failed: {e}")),
            }],
        },
    };
    found.sort_by(|a, b| a.node.cmp(&b.node));
    found
}

/// A multi-node answer (a map of node address to that node's reply) as pairs.
fn per_node(answers: Value) -> Vec<(String, Value)> {
    match answers {
        Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(node, value)| {
                let node: String = ::redis::from_redis_value(node).ok()?;
                Some((node, value))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The policy from a `CONFIG GET` reply: a map (RESP3) or a flat name/value array (RESP2).
fn from_config(reply: Value) -> Option<String> {
    let mut settings: HashMap<String, String> = ::redis::from_redis_value(reply).ok()?;
    settings.remove("maxmemory-policy")
}

/// The policy from an `INFO memory` reply (`maxmemory_policy:allkeys-lru`).
fn from_info(reply: Value) -> Option<String> {
    let text: String = ::redis::from_redis_value(reply).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("maxmemory_policy:"))
        .map(|policy| policy.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn reads_both_reply_shapes() {
        let resp2 = Value::Array(vec![bulk("maxmemory-policy"), bulk("allkeys-lru")]);
        assert_eq!(from_config(resp2).as_deref(), Some("allkeys-lru"));
        let resp3 = Value::Map(vec![(bulk("maxmemory-policy"), bulk("noeviction"))]);
        assert_eq!(from_config(resp3).as_deref(), Some("noeviction"));
        assert_eq!(from_config(Value::Array(Vec::new())), None);
        let info = bulk("# Memory\r\nused_memory:1\r\nmaxmemory_policy:volatile-lru\r\n");
        assert_eq!(from_info(info).as_deref(), Some("volatile-lru"));
    }

    #[test]
    fn warns_for_every_policy_but_noeviction() {
        let node = |policy: Result<&str, &str>| NodePolicy {
            node: "the server".into(),
            policy: policy.map(String::from).map_err(String::from),
        };
        assert_eq!(node(Ok("noeviction")).warning(), None);
        assert_eq!(node(Err("denied")).warning(), None);
        let warning = node(Ok("allkeys-lru")).warning().unwrap();
        assert!(
            warning.starts_with("the server may evict keys (maxmemory-policy allkeys-lru)"),
            "{warning}"
        );
    }
}
