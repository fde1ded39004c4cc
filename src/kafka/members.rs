//! The group's members agree on how each topic is delivered.
//!
//! Two members of one group that deliver a topic differently (one exactly-once, one at-least-once
//! during a rolling deploy; another list, envelope or cap) would share its partitions and undo each
//! other's guarantees: at-least-once pushes leave the exactly-once record stale, two lists each
//! get a part of the stream. So each live member publishes, per topic, a fingerprint of those
//! settings in a hash of the group ([`crate::keys::members_key`]), one field per member, with an
//! expiry it renews; a member that starts while a live one disagrees refuses to start. A member
//! that stops cleanly removes its field, and a dead one's expires, so a deliberate change after a
//! full stop passes. Times are Redis's own (`TIME`), so members' clocks do not matter.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::Context;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::config::{Config, Delivery, Structure, TopicConfig};
use crate::keys::members_key;
use crate::logging::RateLimit;
use crate::redis::RedisConnection;

/// How long a member's fingerprints live without renewal.
const TTL: Duration = Duration::from_secs(30);
/// How often a live member renews them.
const RENEW_EVERY: Duration = Duration::from_secs(10);

static DISAGREEMENTS: RateLimit = RateLimit::new(Duration::from_secs(60));

/// A live member of the group delivers a topic differently: the newcomer refuses to start.
#[derive(Debug)]
pub struct Disagreement(String);

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Disagreement {}

/// What a member publishes: when its entry expires (Redis time, ms) and how it delivers each topic.
#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    expires_ms: u64,
    topics: BTreeMap<String, String>,
}

/// This instance's entry in its group's members hash.
#[derive(Clone)]
pub struct Membership {
    conn: RedisConnection,
    key: String,
    id: String,
    group: String,
    topics: BTreeMap<String, String>,
}

/// The settings that members delivering one topic must share, as one readable line.
pub fn fingerprint(topic: &TopicConfig) -> String {
    let delivery = match topic.delivery {
        Delivery::ExactlyOnce => "exactly-once",
        Delivery::AtLeastOnce => "at-least-once",
    };
    let envelope = serde_json::to_value(topic.envelope)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let cap = topic
        .cap
        .map_or_else(|| "none".to_string(), |c| c.max.to_string());
    let structure = match topic.structure {
        // A list says nothing, as before streams existed, so older members agree.
        Structure::List => "",
        Structure::Stream => " structure=stream",
    };
    format!(
        "delivery={delivery} list={} envelope={envelope} cap={cap}{structure}",
        topic.list_key
    )
}

impl Membership {
    pub fn new(config: &Config, conn: RedisConnection) -> Membership {
        Membership {
            conn,
            key: members_key(&config.kafka.group),
            id: crate::lease::Lease::token(),
            group: config.kafka.group.clone(),
            topics: config
                .topics
                .iter()
                .map(|t| (t.name.clone(), fingerprint(t)))
                .collect(),
        }
    }

    /// Publishes this member's fingerprints, unless a live member disagrees. Redis errors are
    /// retried until `stop` (then `Ok(false)`): a member that cannot tell must not start.
    pub async fn join(&self, stop: &CancellationToken) -> anyhow::Result<bool> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.check_and_publish().await {
                Ok(None) => return Ok(true),
                Ok(Some(disagreement)) => return Err(disagreement.into()),
                Err(e) => {
                    warn!(key = %self.key, error = %e, "cannot compare this instance's settings with the group's live members; asking again");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return Ok(false),
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Renews this member's fingerprints until `stop`; a disagreeing member that appeared anyway
    /// (both started at once) is reported.
    pub async fn keep(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RENEW_EVERY) => {}
                _ = stop.cancelled() => return,
            }
            match self.check_and_publish().await {
                Ok(None) => {}
                Ok(Some(disagreement)) => {
                    if let Some(held) = DISAGREEMENTS.check() {
                        error!(suppressed = held, "{disagreement}");
                    }
                }
                Err(e) => debug!(error = %e, "renewing this member's settings fingerprint failed"),
            }
        }
    }

    /// Removes this member's fingerprints (a clean stop).
    pub async fn leave(&self) {
        let mut conn = self.conn.clone();
        let removed: Result<(), _> = conn.hdel(&self.key, &self.id).await;
        if let Err(e) = removed {
            debug!(error = %e, "removing this member's settings fingerprint failed; it expires");
        }
    }

    /// Compares with the live members, then (when they agree) publishes this member's entry.
    async fn check_and_publish(&self) -> anyhow::Result<Option<Disagreement>> {
        let mut conn = self.conn.clone();
        let (seconds, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut conn)
            .await
            .context("TIME")?;
        let now_ms = seconds * 1000 + micros / 1000;
        let members: BTreeMap<String, String> = conn.hgetall(&self.key).await?;
        let mut expired = Vec::new();
        for (id, value) in &members {
            if *id == self.id {
                continue;
            }
            let Ok(entry) = serde_json::from_str::<Entry>(value) else {
                continue;
            };
            if entry.expires_ms <= now_ms {
                expired.push(id.clone());
                continue;
            }
            for (topic, mine) in &self.topics {
                match entry.topics.get(topic) {
                    Some(theirs) if theirs != mine => {
                        return Ok(Some(Disagreement(format!(
                            "a live member of consumer group {:?} delivers topic {topic:?} with {theirs}, but this \
                             instance is configured with {mine}: stop every member before changing these settings, or \
                             give this instance the same ones",
                            self.group
                        ))));
                    }
                    _ => {}
                }
            }
        }
        let entry = Entry {
            expires_ms: now_ms + TTL.as_millis() as u64,
            topics: self.topics.clone(),
        };
        let mut pipe = redis::pipe();
        pipe.hset(&self.key, &self.id, serde_json::to_string(&entry)?)
            .ignore()
            .pexpire(&self.key, TTL.as_millis() as i64)
            .ignore();
        if !expired.is_empty() {
            pipe.hdel(&self.key, expired).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cap, Envelope, Structure};

    #[test]
    fn the_fingerprint_names_each_setting() {
        let mut topic = TopicConfig {
            name: "orders".into(),
            list_key: "queues:orders".into(),
            structure: Structure::List,
            envelope: Envelope::Raw,
            job: None,
            queue: None,
            queue_prefix: None,
            job_options: Default::default(),
            cap: Some(Cap::new(1000, None)),
            delivery: Delivery::ExactlyOnce,
        };
        assert_eq!(
            fingerprint(&topic),
            "delivery=exactly-once list=queues:orders envelope=raw cap=1000"
        );
        topic.delivery = Delivery::AtLeastOnce;
        topic.cap = None;
        assert_eq!(
            fingerprint(&topic),
            "delivery=at-least-once list=queues:orders envelope=raw cap=none"
        );
        topic.structure = Structure::Stream;
        assert_eq!(
            fingerprint(&topic),
            "delivery=at-least-once list=queues:orders envelope=raw cap=none structure=stream"
        );
    }
}
