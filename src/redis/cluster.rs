//! Redis Cluster through the crate's async cluster connection, which keeps the slot map, sends each
//! command to the node owning its key's slot, follows `MOVED`/`ASK` and refreshes the map when a
//! master fails over.
//!
//! A batch for one list is one command with one key (or a script whose keys share the list's slot),
//! so it goes to one node in one round trip. The only addition here is how node connections are
//! opened: the crate applies a custom CA or client certificate only under rustls, so
//! [`ClusterNode`] attaches them itself (native-tls, see [`super::node`]).

use std::sync::RwLock;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::{ClusterConnection, Connect};
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult,
    Value,
};

use super::guard::{parse_ranges, MasterView};
use super::node::NodeSettings;

/// The connection type of a cluster sink.
pub type ClusterConn = ClusterConnection<ClusterNode>;

/// Node settings for [`ClusterNode`]. `Connect` is called without any state of ours, so the one
/// cluster a process talks to keeps its settings here (set before the first node is connected).
static NODE_SETTINGS: RwLock<Option<NodeSettings>> = RwLock::new(None);

/// A connection to one cluster node, opened with the configured certificates.
#[derive(Clone)]
pub struct ClusterNode(MultiplexedConnection);

impl Connect for ClusterNode {
    fn connect_with_config<'a, T>(info: T, config: AsyncConnectionConfig) -> RedisFuture<'a, Self>
    where
        T: IntoConnectionInfo + Send + 'a,
    {
        Box::pin(async move {
            // The crate built `info` from the seed's credentials and TLS mode; only certificates
            // are missing from it.
            let info = info.into_connection_info()?;
            let settings = NODE_SETTINGS
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            let client = match settings {
                Some(settings) => settings.client_for_info(info)?,
                None => ::redis::Client::open(info)?,
            };
            Ok(ClusterNode(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            ))
        })
    }
}

impl ConnectionLike for ClusterNode {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// Connects to the cluster through any of the seed `addresses` and loads the slot map.
pub(crate) async fn connect(
    addresses: &[String],
    settings: &NodeSettings,
) -> RedisResult<ClusterConn> {
    *NODE_SETTINGS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(settings.clone());
    let seeds = addresses
        .iter()
        .map(|a| settings.info(a))
        .collect::<RedisResult<Vec<_>>>()?;
    // Credentials and the TLS mode are taken from the seeds (all built from the same settings).
    let client = ClusterClientBuilder::new(seeds)
        .connection_timeout(settings.connect_timeout)
        .response_timeout(settings.response_timeout)
        // A failover takes the cluster a few seconds; the crate retries MOVED/TRYAGAIN/refreshes
        // within the response timeout, and the lane retries the batch after that.
        .retries(3)
        .build()?;
    // `get_async_generic_connection` is the crate's entry point for a custom node connection type.
    client.get_async_generic_connection::<ClusterNode>().await
}

/// One node as `CLUSTER NODES` describes it, for `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub address: String,
    /// The master's id, for a replica.
    pub replica_of: Option<String>,
    pub master: bool,
    pub failed: bool,
    /// Slot ranges served (masters only), as `CLUSTER NODES` prints them.
    pub slots: Vec<String>,
}

/// `CLUSTER NODES` from any node, parsed.
pub async fn nodes(conn: &mut ClusterConn) -> RedisResult<Vec<NodeInfo>> {
    let text = conn
        .route_command(
            ::redis::cmd("CLUSTER").arg("NODES").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await?
        // A refusal (an ACL) comes back as a value; as an error, callers can tell it apart.
        .extract_error()?;
    let text: String = ::redis::from_redis_value(text)?;
    Ok(parse_nodes(&text))
}

fn parse_nodes(text: &str) -> Vec<NodeInfo> {
    let mut nodes: Vec<NodeInfo> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            // `ip:port@cport[,hostname]`
            let address = fields[1]
                .split(['@', ','])
                .next()
                .unwrap_or_default()
                .to_string();
            let flags = fields[2];
            Some(NodeInfo {
                id: fields[0].to_string(),
                address,
                replica_of: Some(fields[3]).filter(|m| *m != "-").map(String::from),
                master: flags.split(',').any(|f| f == "master"),
                failed: flags.split(',').any(|f| f == "fail" || f == "fail?"),
                slots: fields[8..].iter().map(|s| s.to_string()).collect(),
            })
        })
        .collect();
    nodes.sort_by(|a, b| (!a.master, &a.address).cmp(&(!b.master, &b.address)));
    nodes
}

/// The masters that serve slots, with their healthy replicas, from `CLUSTER NODES`. The error
/// names the command.
pub(crate) async fn masters(
    conn: &mut ClusterConn,
) -> Result<Vec<MasterView>, (&'static str, RedisError)> {
    let nodes = nodes(conn).await.map_err(|e| ("CLUSTER NODES", e))?;
    let mut masters: Vec<MasterView> = nodes
        .iter()
        .filter(|n| n.master && !n.failed && !n.slots.is_empty())
        .map(|m| MasterView {
            id: m.id.clone(),
            address: m.address.clone(),
            slots: parse_ranges(&m.slots),
            replicas: replicas_of(&nodes, &m.id),
        })
        .collect();
    masters.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(masters)
}

/// The masters that serve slots from `CLUSTER SLOTS`, which the client needs anyway: for following
/// failovers when `CLUSTER NODES` is refused. Its replica counts leave out replicas whose
/// replication offset the node has not yet heard of, so they are no ground for the WAIT guard.
pub(crate) async fn masters_from_slots(conn: &mut ClusterConn) -> RedisResult<Vec<MasterView>> {
    let reply = conn
        .route_command(
            ::redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await?
        .extract_error()?;
    parse_slots(reply).ok_or_else(|| {
        RedisError::from((
            ::redis::ErrorKind::UnexpectedReturnType,
            "CLUSTER SLOTS: unexpected reply",
        ))
    })
}

/// `CLUSTER SLOTS`: `[[start, end, [ip, port, id, …], replica…], …]`, grouped by master.
fn parse_slots(reply: Value) -> Option<Vec<MasterView>> {
    let ranges: Vec<Vec<Value>> = ::redis::from_redis_value(reply).ok()?;
    let mut masters: Vec<MasterView> = Vec::new();
    for range in ranges {
        let [start, end, master, replicas @ ..] = range.as_slice() else {
            continue;
        };
        let start: u16 = ::redis::from_redis_value_ref(start).ok()?;
        let end: u16 = ::redis::from_redis_value_ref(end).ok()?;
        let node: Vec<Value> = ::redis::from_redis_value_ref(master).ok()?;
        let host: String = ::redis::from_redis_value_ref(node.first()?).ok()?;
        let port: u16 = ::redis::from_redis_value_ref(node.get(1)?).ok()?;
        let id: String = node
            .get(2)
            .and_then(|id| ::redis::from_redis_value_ref(id).ok())
            .unwrap_or_else(|| format!("{host}:{port}"));
        match masters.iter_mut().find(|m| m.id == id) {
            Some(m) => {
                m.slots.push((start, end));
                m.replicas = m.replicas.min(replicas.len());
            }
            None => masters.push(MasterView {
                id,
                address: format!("{host}:{port}"),
                slots: vec![(start, end)],
                replicas: replicas.len(),
            }),
        }
    }
    for master in &mut masters {
        master.slots.sort();
    }
    masters.sort_by(|a, b| a.id.cmp(&b.id));
    Some(masters)
}

/// How many healthy replicas follow the master `id`.
pub fn replicas_of(nodes: &[NodeInfo], id: &str) -> usize {
    nodes
        .iter()
        .filter(|n| !n.failed && n.replica_of.as_deref() == Some(id))
        .count()
}

/// The slot of `key`, as the cluster computes it (`CLUSTER KEYSLOT`).
pub async fn slot(conn: &mut ClusterConn, key: &str) -> RedisResult<u16> {
    let value = conn
        .route_command(
            ::redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await?;
    Ok(::redis::from_redis_value(value)?)
}

/// The master that serves `slot`.
pub fn owner(nodes: &[NodeInfo], slot: u16) -> Option<&NodeInfo> {
    nodes.iter().find(|n| {
        n.master
            && parse_ranges(&n.slots)
                .iter()
                .any(|&(lo, hi)| (lo..=hi).contains(&slot))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes_and_finds_owners() {
        let text = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003,host3 master - 0 1426238318243 3 connected 10923-16383 [93->-e7d1]
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
6ec2 127.0.0.1:30005@40005 master,fail - 1426238316232 1426238316232 5 connected
";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 5);
        assert_eq!(nodes[0].address, "127.0.0.1:30001");
        assert!(nodes.iter().any(|n| n.address == "127.0.0.1:30003"));
        assert!(
            nodes
                .iter()
                .find(|n| n.address.ends_with("30005"))
                .unwrap()
                .failed
        );
        assert!(
            !nodes
                .iter()
                .find(|n| n.address.ends_with("30004"))
                .unwrap()
                .master
        );
        assert_eq!(owner(&nodes, 0).unwrap().address, "127.0.0.1:30001");
        assert_eq!(owner(&nodes, 5461).unwrap().address, "127.0.0.1:30002");
        assert_eq!(owner(&nodes, 16383).unwrap().address, "127.0.0.1:30003");
        assert_eq!(replicas_of(&nodes, "e7d1"), 1);
        assert_eq!(replicas_of(&nodes, "67ed"), 0);
    }
}
